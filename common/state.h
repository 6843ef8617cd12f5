/*
 * SPDX-License-Identifier: ISC
 *
 * Delivery state of a queue entry: queue/<bucket>/<id>.state beside the
 * immutable message file.  Only the worker owning the bucket writes it,
 * after every SMTP transaction, so that a retry never goes to a recipient
 * who already has the message.  The file is a base, written whole
 * (durable_replace), then zero or more appended progress records:
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
 *	outcome: 0-499 sent 250 2.0.0 250 2.0.0 Ok	recipients 0..499
 *	outcome: 500 deferred 451 4.3.0 451 try again later
 *	end: 95 3cf2d922651ca5e6	bytes and FNV-1a 64 of the lines above
 *
 * A record (outcome lines, then its end line) is written by one write(2)
 * and one fdatasync after a transaction; the reader applies it, in order,
 * over the base only if its end line is whole and matches.  A record that
 * does not is an append cut short by a crash: it is the last thing in the
 * file (the owner rewrites the file whole before it appends to one that
 * ends so) and is ignored, so its transaction counts as not done.
 * Anything after such a record is damage (EINVAL).  When the records
 * would outgrow the base, the file is rewritten whole (compacted).
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
	/* The file as last read or written (not saved in it). */
	size_t		 disk_base;	/* bytes of the base; 0: no file */
	size_t		 disk_tail;	/* bytes of whole records after it */
	int		 disk_torn;	/* it ends with a record cut short */
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

/* Rewrites <id>.state durably, whole (a base with no record). */
int	state_save(int bucketfd, const char *id, struct state *s);

/*
 * Makes the outcomes of recipients [lo, hi) durable when nothing else in
 * s changed since it was loaded or saved: one record appended (one write,
 * one fdatasync), or the file rewritten whole when there is none yet, it
 * ends with a record cut short, or the records would outgrow the base.
 */
int	state_record(int bucketfd, const char *id, struct state *s,
	    size_t lo, size_t hi);

void	state_free(struct state *s);

#endif
