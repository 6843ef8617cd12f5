/*
 * SPDX-License-Identifier: ISC
 *
 * Durable file operations: the write-fsync-rename-fsync(dir) sequence that
 * makes a file survive a crash or a power loss once a call returns 0.
 * All return 0, or -1 with errno set; nothing is logged here.
 */
#ifndef LISTQ_DURABLE_H
#define LISTQ_DURABLE_H

#include <stddef.h>
#include <stdio.h>

/* write(2) until len bytes are written (EINTR retried). */
int	write_full(int fd, const void *buf, size_t len);

/* fsync(2) a directory, so that a rename or unlink in it persists. */
int	durable_fsync_dir(int dirfd);

/*
 * Commits the open file fd, written as fromdir/from, as todir/to: fsync
 * fd, rename (the commit point: readers see all of it or nothing), fsync
 * todir.  fd stays open.
 */
int	durable_commit(int fd, int fromdir, const char *from, int todir,
	    const char *to);

/*
 * Replaces dirfd/name with buf[0..len) durably through "name.tmp" (mode
 * 0600); on failure the old file is left as it was.
 */
int	durable_replace(int dirfd, const char *name, const void *buf,
	    size_t len);

/*
 * durable_replace() of what emit writes to the stream it is given
 * (composed in memory first): for files rewritten line by line.
 */
int	durable_replace_with(int dirfd, const char *name,
	    void (*emit)(FILE *, const void *), const void *arg);

#endif
