/*
 * SPDX-License-Identifier: ISC
 *
 * Messages listqd sends of its own accord (notify.c): DSNs to senders,
 * notices to a list's owners and to members, queued through the spool.
 */
#ifndef LISTQ_NOTIFY_H
#define LISTQ_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "dsn.h"
#include "entry.h"
#include "state.h"
#include "worker.h"

/*
 * Queues one DSN of kind about entry h (message at offset body of fd) to
 * st->sender: for DSN_FAILED the recipients failed in this attempt
 * (fresh), for DSN_DELAYED those still deferred.  Returns 0 (id set), 1
 * when no DSN may be sent (null sender, or the entry is itself a
 * report), -1 with errno on failure.
 */
int	notify_dsn(struct worker *w, enum dsn_kind kind,
	    const struct entry_header *h, int fd, size_t body,
	    const struct state *st, const char *relay, char id[QID_SIZE]);

/* May entry h (state st, header section headers) get a DSN at all? */
bool	notify_dsn_allowed(const struct entry_header *h,
	    const struct state *st, const char *headers);

/* Queues a notice to the owners of list (an owner entry). */
int	notify_owners(struct worker *w, const char *list, const char *from,
	    const char *subject, const char *text);

/*
 * Queues a notice to one member of list from the envelope sender sender
 * (a send entry).  -1 with errno on failure.
 */
int	notify_member(struct worker *w, const char *list, const char *sender,
	    const char *member, const char *from, const char *subject,
	    const char *text);

#endif
