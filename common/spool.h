/*
 * SPDX-License-Identifier: ISC
 *
 * The spool layout (see the design):
 *
 *	SPOOLDIR/		0700 service uid:gid
 *	  tmp/			entries being written
 *	  queue/00 ... ff	256 buckets, the only place workers read
 *	  hold/ corrupt/	held entries; entries that could not be parsed
 *	  moderation/		posts awaiting a moderator, each with its
 *				record <id>.mod (see worker/moderation.h)
 *	  pid			the master's pidfile (flock'd)
 *	  control		the master's control socket
 *
 * Every directory belongs to the service uid:gid with mode 0700.  Opening
 * refuses a spool or subdirectory that is a symbolic link, is owned by
 * anyone else or is open to group or others (errno EPERM).
 */
#ifndef LISTQ_SPOOL_H
#define LISTQ_SPOOL_H

#include <sys/types.h>

#include <stddef.h>

#define SPOOL_TMP	"tmp"
#define SPOOL_QUEUE	"queue"
#define SPOOL_HOLD	"hold"
#define SPOOL_CORRUPT	"corrupt"
#define SPOOL_MODERATION "moderation"
#define SPOOL_PIDFILE	"pid"
#define SPOOL_CONTROL	"control"

/*
 * Creates whatever part of the layout is missing under path (its parent
 * must exist) and, when run as root, gives it to uid:gid.  Then checks
 * the whole layout as spool_check() does.
 */
int	spool_create(const char *path, uid_t uid, gid_t gid, char *why,
	    size_t whylen);

/* Checks every directory of the layout; on failure says which in why. */
int	spool_check(const char *path, uid_t uid, gid_t gid, char *why,
	    size_t whylen);

/* Opens the spool directory itself, checked; returns a directory fd. */
int	spool_open(const char *path, uid_t uid, gid_t gid);

/* Opens a checked subdirectory ("tmp", "hold", ...) of an open spool. */
int	spool_open_dir(int spoolfd, const char *sub, uid_t uid, gid_t gid);

/*
 * The bytes an unprivileged writer may still use on the file system of
 * the open spool (statvfs: f_bavail blocks of f_frsize); -1 with errno.
 */
int	spool_free_bytes(int spoolfd, unsigned long long *out);

/* Opens queue/<bucket> of an open spool, checked. */
int	spool_open_bucket(int spoolfd, unsigned int bucket, uid_t uid,
	    gid_t gid);

#endif
