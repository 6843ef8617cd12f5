/*
 * SPDX-License-Identifier: ISC
 *
 * Notices listq composes (notice.c, with GMime): to the moderators about
 * a held post, to a poster about a rejection.  Each goes out as a send
 * entry from the null sender, with Auto-Submitted: auto-replied and the
 * list's X-Loop.
 */
#ifndef LISTQ_NOTICE_H
#define LISTQ_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "list.h"
#include "moderation.h"
#include "token.h"

/*
 * Queues one notice per moderator about post id (the message at offset
 * body of fd), held with record r: the reasons, the first lines of its
 * text, how to decide by command or by a reply (tokens made with key),
 * and the post attached as message/rfc822.  Returns how many were
 * queued, -1 with errno if none could be.
 */
int	notice_held(int spoolfd, const struct list_conf *lc, const char *id,
	    int fd, size_t body, const struct held *r,
	    const unsigned char key[TOKEN_KEY_LEN],
	    const struct addr_list *moderators);

/*
 * Queues one notice of rejection to the sender of held post id with the
 * reason; none to the null sender, a -bounces, -owner or MAILER-DAEMON
 * address, for an auto-submitted post (its record has no sender), or to
 * a sender already told within the hour.  0 queued, 1 not sent, -1 on
 * error.
 */
int	notice_rejected(int spoolfd, const char *id, const struct held *r,
	    const char *reason);

/* May a notice go to addr at all (not a robot's or a list's role)? */
bool	notice_addr_answerable(const char *addr);

/* The address of the first mailbox of a From:-like value into out. */
int	notice_first_address(const char *value, char *out, size_t len);

/* Queues a plain-text notice from the list to one address; -1 errno. */
int	notice_plain(int spoolfd, const struct list_conf *lc, const char *to,
	    const char *subject, const char *text, char nid[QID_SIZE]);

/*
 * A ledger of who was mailed when (SPOOLDIR-relative path, lines "time
 * address", rewritten whole under flock, keeping per_addr_window): 0 and
 * now recorded if addr has fewer than per_addr lines in it and all have
 * fewer than total within total_window; 1 addr's limit, 2 the total's;
 * -1 with errno.
 */
struct ledger_limit {
	unsigned int	per_addr;
	unsigned int	per_addr_window;	/* seconds */
	unsigned int	total;
	unsigned int	total_window;		/* seconds, <= the above */
};
int	notice_ledger(int spoolfd, const char *path, const char *addr,
	    time_t now, const struct ledger_limit *lim);

#endif
