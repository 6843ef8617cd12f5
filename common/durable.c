/*
 * SPDX-License-Identifier: ISC
 *
 * Durable file operations (see durable.h).
 *
 * Invariants: a file reaches its final name only after its data is on
 * disk, and a call reports success only after the directory entry that
 * names it is on disk too; a failed replace leaves no temporary behind.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "durable.h"

int
write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
durable_fsync_dir(int dirfd)
{
	return fsync(dirfd);
}

int
durable_commit(int fd, int fromdir, const char *from, int todir,
    const char *to)
{
	if (fsync(fd) == -1)
		return -1;
	if (renameat(fromdir, from, todir, to) == -1)
		return -1;
	return durable_fsync_dir(todir);
}

int
durable_replace(int dirfd, const char *name, const void *buf, size_t len)
{
	char tmp[256];
	int fd, saved;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (write_full(fd, buf, len) == 0 &&
	    durable_commit(fd, dirfd, tmp, dirfd, name) == 0)
		return close(fd);
	saved = errno;
	close(fd);
	unlinkat(dirfd, tmp, 0);
	errno = saved;
	return -1;
}

int
durable_replace_with(int dirfd, const char *name,
    void (*emit)(FILE *, const void *), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc, saved;

	if ((f = open_memstream(&buf, &len)) == NULL)
		return -1;
	emit(f, arg);
	rc = fclose(f) == 0 ? durable_replace(dirfd, name, buf, len) : -1;
	saved = errno;
	free(buf);
	errno = saved;
	return rc;
}
