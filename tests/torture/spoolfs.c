/*
 * SPDX-License-Identifier: ISC
 *
 * The spool on a tmpfs of a chosen size (see spoolfs.h).  The mount is
 * made in a private mount namespace (unshare(CLONE_NEWNS) and / made
 * private, recursively), so nothing of it is seen outside the test's
 * process and its children, and nothing outlives them.
 */
#include <sys/mount.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "spool.h"
#include "spoolfs.h"

#define FILLER	"filler"

static void
mount_tmpfs(size_t size, unsigned long flags)
{
	char opts[128];

	snprintf(opts, sizeof(opts), "size=%zu,mode=0700,uid=%lu,gid=%lu",
	    size, (unsigned long)T.svc_uid, (unsigned long)T.svc_gid);
	cr_assert_eq(mount("listq-torture", T.spool, "tmpfs", flags, opts), 0,
	    "mount tmpfs on %s (%s): %s", T.spool, opts, strerror(errno));
}

void
spoolfs_mount(size_t size)
{
	char why[512];

	spool_reset();
	cr_assert(T.root, "the spool on a tmpfs needs root");
	cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare: %s", strerror(errno));
	cr_assert_eq(mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL), 0,
	    "making / private: %s", strerror(errno));
	mount_tmpfs(size, 0);
	cr_assert_eq(spool_create(T.spool, T.svc_uid, T.svc_gid, why,
	    sizeof(why)), 0, "spool_create on the tmpfs: %s", why);
}

void
spoolfs_unmount(void)
{
	cr_assert_eq(umount2(T.spool, MNT_DETACH), 0, "umount %s: %s",
	    T.spool, strerror(errno));
}

void
spoolfs_resize(size_t size)
{
	mount_tmpfs(size, MS_REMOUNT);
}

static int
open_filler(int flags)
{
	char path[1024];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", T.spool, FILLER);
	fd = open(path, flags | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_neq(fd, -1, "%s: %s", path, strerror(errno));
	return fd;
}

size_t
spoolfs_fill(void)
{
	static const char block[65536];
	int fd = open_filler(O_CREAT | O_APPEND);
	size_t chunk = sizeof(block), total = 0;
	ssize_t n;
	struct stat st;

	cr_assert_eq(fchown(fd, T.svc_uid, T.svc_gid), 0);
	/* Bounded: the tmpfs is finite, each pass writes or shrinks. */
	while (chunk > 0) {
		n = write(fd, block, chunk);
		if (n > 0)
			continue;
		cr_assert(n == -1 && errno == ENOSPC, "filling: %s",
		    strerror(errno));
		chunk /= 2;
	}
	cr_assert_eq(fstat(fd, &st), 0);
	total = (size_t)st.st_size;
	close(fd);
	return total;
}

void
spoolfs_release(size_t bytes)
{
	int fd = open_filler(0);
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(ftruncate(fd, st.st_size > (off_t)bytes ?
	    st.st_size - (off_t)bytes : 0), 0);
	close(fd);
}
