/*
 * Delivery state of a queue entry: queue/<bucket>/<id>.state beside the
 * immutable message file.  Only the worker owning the bucket rewrites it,
 * always whole (durable_replace), after every SMTP transaction, so that a
 * retry never goes to a recipient who already has the message.
 *
 *	listq-state: 1
 *	attempts: 2			delivery attempts made
 *	crashes: 0			attempts that never finished
 *	warned: 0			1 once a delay warning went out
 *	eightbit: 0			1 if the message has 8-bit bytes
 *	first: 1764374400		first attempt (seconds)
 *	next: 1764374700		next attempt
 *	sender: list-bounces@example.org	envelope sender ("" = <>)
 *	rcpt: deferred 451 4.3.0 alice@example.org try again later
 *	...				one line per recipient
 */
#ifndef LISTQ_STATE_H
#define LISTQ_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "list.h"

#define STATE_SUFFIX	".state"
#define REPLY_MAX	256

enum rcpt_state { RCPT_PENDING, RCPT_SENT, RCPT_DEFERRED, RCPT_FAILED };

struct rcpt_status {
	char		*addr;
	enum rcpt_state	 st;
	int		 code;		/* last reply code, 0: none */
	char		 dsn[16];	/* enhanced status, "" if none */
	char		*reply;		/* last reply text, never NULL */
	int		 fresh;		/* failed in this attempt (not saved) */
};

struct state {
	unsigned int	 attempts;
	unsigned int	 crashes;
	unsigned int	 warned;
	unsigned int	 eightbit;
	int64_t		 first_attempt;
	int64_t		 next_attempt;
	char		 sender[ADDR_MAX + 1];
	struct rcpt_status *r;
	size_t		 n;
};

const char *rcpt_state_name(enum rcpt_state st);

/* Appends a pending recipient; -1 on allocation failure. */
int	state_add_rcpt(struct state *s, const char *addr);

/* Records an outcome; reply is sanitized to one printable line. */
void	state_set_rcpt(struct rcpt_status *r, enum rcpt_state st, int code,
	    const char *dsn, const char *reply);

/*
 * Loads <id>.state from an open bucket.  Returns 0, or -1 with errno
 * ENOENT (no state yet) or EINVAL (malformed: *why says how).
 */
int	state_load(int bucketfd, const char *id, struct state *s,
	    const char **why);

/* Rewrites <id>.state durably. */
int	state_save(int bucketfd, const char *id, const struct state *s);

void	state_free(struct state *s);

#endif
