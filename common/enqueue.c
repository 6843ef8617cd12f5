/*
 * SPDX-License-Identifier: ISC
 *
 * Writing a new spool entry (see enqueue.h).
 *
 * Invariants: an entry is invisible to workers until its rename into a
 * bucket (invariant 2), and the caller is told it is queued only after
 * the file and the bucket directory are on disk (invariant 1); once
 * renamed into its bucket the entry is never touched again, even when
 * the bucket's fsync fails (invariant 3); the tmp/
 * file is created O_CREAT|O_EXCL|O_NOFOLLOW with mode 0600, so it never
 * follows or replaces anything (invariant 6).
 */
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "durable.h"
#include "enqueue.h"
#include "spool.h"

#define CREATE_TRIES	3

int
enqueue_open(struct enqueue *q, int tmpfd, const struct entry_header *h)
{
	char buf[ENTRY_HEADER_MAX];
	int tries, n;

	memset(q, 0, sizeof(*q));
	q->tmpfd = tmpfd;
	q->fd = -1;
	q->h = *h;
	for (tries = 0; q->fd == -1 && tries < CREATE_TRIES; tries++) {
		qid_new(q->h.id);
		q->fd = openat(tmpfd, q->h.id, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0600);
		if (q->fd == -1 && errno != EEXIST)
			return -1;
	}
	if (q->fd == -1)
		return -1;
	if ((n = entry_header_format(&q->h, buf, sizeof(buf))) < 0) {
		enqueue_abort(q);
		errno = EINVAL;
		return -1;
	}
	if (write_full(q->fd, buf, (size_t)n) == -1) {
		n = errno;
		enqueue_abort(q);
		errno = n;
		return -1;
	}
	return 0;
}

int
enqueue_write(struct enqueue *q, const void *buf, size_t len)
{
	if (write_full(q->fd, buf, len) == -1)
		return -1;
	q->size += len;
	return 0;
}

int
enqueue_commit(struct enqueue *q, int spoolfd, uid_t uid, gid_t gid)
{
	int bucketfd, rc, saved;

	bucketfd = spool_open_bucket(spoolfd, qid_bucket(q->h.id), uid, gid);
	if (bucketfd == -1) {
		saved = errno;
		enqueue_abort(q);
		errno = saved;
		return -1;
	}
	/*
	 * Once renamed, the entry belongs to the worker owning the bucket
	 * (invariant 3) and is never touched here again: when the bucket
	 * cannot be fsync'd the rename may not survive a crash, so the
	 * caller is told it failed (the MTA retries) and the entry stays --
	 * a possible duplicate on an I/O error, never a loss.  The abort
	 * then finds no tmp/ file to remove.
	 */
	rc = durable_commit(q->fd, q->tmpfd, q->h.id, bucketfd, q->h.id);
	saved = errno;
	close(bucketfd);
	if (rc == -1)
		enqueue_abort(q);
	else {
		close(q->fd);
		q->fd = -1;
	}
	errno = saved;
	return rc;
}

void
enqueue_abort(struct enqueue *q)
{
	if (q->fd == -1)
		return;
	close(q->fd);
	q->fd = -1;
	unlinkat(q->tmpfd, q->h.id, 0);
}

int
enqueue_message(int spoolfd, int tmpfd, struct entry_header *h,
    const void *msg, size_t len, uid_t uid, gid_t gid, char id[QID_SIZE])
{
	struct enqueue q;
	struct timeval tv;
	int saved;

	gettimeofday(&tv, NULL);
	h->arrival_sec = tv.tv_sec;
	h->arrival_usec = tv.tv_usec;
	h->uid = uid;
	h->gid = gid;
	if (enqueue_open(&q, tmpfd, h) == -1)
		return -1;
	if (enqueue_write(&q, msg, len) == -1) {
		saved = errno;
		enqueue_abort(&q);
		errno = saved;
		return -1;
	}
	if (enqueue_commit(&q, spoolfd, uid, gid) == -1)
		return -1;
	memcpy(id, q.h.id, QID_SIZE);
	return 0;
}
