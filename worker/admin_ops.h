/*
 * SPDX-License-Identifier: ISC
 *
 * Admin operations on queue entries, done by their owner (admin_ops.c).
 */
#ifndef LISTQ_ADMIN_OPS_H
#define LISTQ_ADMIN_OPS_H

#include <sys/types.h>

#include <stddef.h>

#include "entry.h"
#include "qid.h"

enum adm_area { ADM_QUEUE = 1, ADM_HOLD = 2, ADM_CORRUPT = 4 };
enum adm_change { ADM_GONE, ADM_DUE };

/* The owner's view: the directories it may change, and who asks. */
struct adm {
	int	 spoolfd, holdfd, corruptfd, modfd;	/* modfd: moderation/ */
	int	*bucketfd;		/* [QID_BUCKETS]; -1: not ours */
	uid_t	 who;			/* the admin, for the log */
	const char *text;		/* reject's reason, or NULL */
	/*
	 * A running worker's schedule, told of each change (listqd); NULL
	 * in listq, whose changes the pool reads from the state files.
	 */
	void	(*changed)(void *arg, unsigned int bucket, const char *id,
		    enum adm_change what);
	void	*arg;
};

/* One outcome: code 0 (done) or a sysexits code; msg says what. */
typedef void (*adm_report)(void *arg, int code, const char *id,
	    const char *msg);

/*
 * Runs "VERB [ARG]" (hold ID, hold-list LIST, release ID, release-all,
 * delete ID, delete-list LIST, requeue ID, flush [ID], approve ID,
 * reject ID [REASON], discard ID) on the entries
 * of this owner, reporting each.  Returns how many entries were acted
 * on, or -1 for an unknown verb or a missing argument.
 */
long	adm_request(struct adm *a, const char *verb, const char *arg,
	    adm_report report, void *rarg);

/*
 * How the master routes a request: to the owner of the entry ARG names
 * (ADM_ONE), or to every worker (ADM_ALL); -1 if it is not a request.
 */
enum { ADM_ONE = 1, ADM_ALL };
int	adm_route(const char *verb, const char *arg);

/*
 * Reads the header of entry id in dirfd: fills h, the message size and
 * where the message starts.  -1 with *why (or errno when *why is NULL).
 */
int	adm_read_header(int dirfd, const char *id, struct entry_header *h,
	    off_t *size, const char **why);

#endif
