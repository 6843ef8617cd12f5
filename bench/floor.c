/*
 * SPDX-License-Identifier: ISC
 *
 * floor: the least a durable enqueue can cost, for bench/enqueue to
 * measure the wrapper against.  It reads stdin and does only what
 * invariant 1 requires -- write tmp file, fsync, rename, fsync directory --
 * with no checks, no header and no privilege switch.
 *
 *	floor SPOOLDIR < message	(SPOOLDIR holds tmp/ and queue/)
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int
main(int argc, char *argv[])
{
	static char buf[1 << 20];
	char name[64], dst[80];
	ssize_t n, len = 0;
	int dir, tmp, q, fd;

	if (argc != 2 || (dir = open(argv[1], O_RDONLY | O_DIRECTORY)) == -1 ||
	    (tmp = openat(dir, "tmp", O_RDONLY | O_DIRECTORY)) == -1 ||
	    (q = openat(dir, "queue", O_RDONLY | O_DIRECTORY)) == -1)
		return 75;
	while (len < (ssize_t)sizeof(buf) &&
	    (n = read(0, buf + len, sizeof(buf) - (size_t)len)) > 0)
		len += n;
	snprintf(name, sizeof(name), "%ld", (long)getpid());
	snprintf(dst, sizeof(dst), "f%s", name);
	if ((fd = openat(tmp, name, O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1 ||
	    write(fd, buf, (size_t)len) != len || fsync(fd) == -1 ||
	    renameat(tmp, name, q, dst) == -1 || fsync(q) == -1)
		return 75;
	return 0;
}
