/*
 * SPDX-License-Identifier: ISC
 *
 * Writing a new entry into the spool (enqueue.c): the wrapper does it for
 * what the MTA submits, listqd for its own messages (DSNs, notices).
 */
#ifndef LISTQ_ENQUEUE_H
#define LISTQ_ENQUEUE_H

#include <sys/types.h>

#include <stddef.h>

#include "entry.h"

struct enqueue {
	int			tmpfd;	/* the spool's tmp/ */
	int			fd;	/* tmp/<id> being written, or -1 */
	struct entry_header	h;	/* with the id chosen */
	size_t			size;	/* message bytes written */
};

/*
 * Creates tmp/<id> (O_EXCL, mode 0600, a fresh id on a collision) and
 * writes the header h (its id is chosen here).  -1 with errno set.
 */
int	enqueue_open(struct enqueue *q, int tmpfd,
	    const struct entry_header *h);
int	enqueue_write(struct enqueue *q, const void *buf, size_t len);
/*
 * The commit point (invariant 1): fsync, rename into queue/<bucket>/ of
 * spoolfd, fsync the bucket.  On a failure before the rename the tmp/
 * file is removed; after it the entry is left where it is, owned by its
 * bucket's worker, and -1 still says that it is not durable.
 */
int	enqueue_commit(struct enqueue *q, int spoolfd, uid_t uid, gid_t gid);
/*
 * All of the above for a message held in memory: h's command, list and
 * envelope are the caller's, the arrival time and uid:gid are stamped
 * here.  id gets the new entry's queue id.  -1 with errno set.
 */
int	enqueue_message(int spoolfd, int tmpfd, struct entry_header *h,
	    const void *msg, size_t len, uid_t uid, gid_t gid,
	    char id[QID_SIZE]);

/* Removes the tmp/ file; for every error path before the commit. */
void	enqueue_abort(struct enqueue *q);

#endif
