/*
 * SPDX-License-Identifier: ISC
 *
 * Creating, checking and opening the spool (layout in spool.h).
 *
 * Invariants: every directory is opened with O_NOFOLLOW and checked on
 * the open descriptor (fstat), so that what was checked is what is used;
 * nothing here ever removes or renames an entry.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qid.h"
#include "spool.h"

#define DIR_FLAGS	(O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

static const char *const subdirs[] = {
	SPOOL_TMP, SPOOL_QUEUE, SPOOL_HOLD, SPOOL_CORRUPT, SPOOL_MODERATION
};
#define NSUBDIRS	(sizeof(subdirs) / sizeof(subdirs[0]))
#define NLAYOUT		(NSUBDIRS + QID_BUCKETS)
#define BUCKET_PATH_SIZE	(sizeof(SPOOL_QUEUE) + 3)

/* Opens dirfd/name as a directory and checks owner and mode. */
static int
open_checked(int dirfd, const char *name, uid_t uid, gid_t gid)
{
	struct stat st;
	int fd;

	if ((fd = openat(dirfd, name, DIR_FLAGS)) == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		close(fd);
		return -1;
	}
	if (st.st_uid != uid || st.st_gid != gid ||
	    (st.st_mode & 07777) != 0700) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

int
spool_open(const char *path, uid_t uid, gid_t gid)
{
	return open_checked(AT_FDCWD, path, uid, gid);
}

int
spool_open_dir(int spoolfd, const char *sub, uid_t uid, gid_t gid)
{
	return open_checked(spoolfd, sub, uid, gid);
}

/* Writes "queue/xx" for a bucket into name. */
static void
bucket_path(unsigned int bucket, char name[BUCKET_PATH_SIZE])
{
	memcpy(name, SPOOL_QUEUE "/", sizeof(SPOOL_QUEUE));
	qid_bucket_name(bucket, name + sizeof(SPOOL_QUEUE));
}

/* The i-th directory of the layout below the spool, 0 <= i < NLAYOUT. */
static const char *
layout_dir(size_t i, char name[BUCKET_PATH_SIZE])
{
	if (i < NSUBDIRS)
		return subdirs[i];
	bucket_path((unsigned int)(i - NSUBDIRS), name);
	return name;
}

int
spool_open_bucket(int spoolfd, unsigned int bucket, uid_t uid, gid_t gid)
{
	char name[BUCKET_PATH_SIZE];

	bucket_path(bucket, name);
	return open_checked(spoolfd, name, uid, gid);
}

/* mkdir dirfd/name 0700 unless it exists; as root, chown it. */
static int
make_dir(int dirfd, const char *name, uid_t uid, gid_t gid)
{
	if (mkdirat(dirfd, name, 0700) == -1 && errno != EEXIST)
		return -1;
	if (geteuid() == 0 &&
	    fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) == -1)
		return -1;
	return fchmodat(dirfd, name, 0700, 0);
}

static int
say(char *why, size_t whylen, const char *path, const char *sub)
{
	int saved = errno;

	snprintf(why, whylen, "%s%s%s: %s", path, *sub ? "/" : "", sub,
	    saved == EPERM ? "wrong owner or mode (want the service "
	    "uid:gid, 0700, not a symbolic link)" : strerror(saved));
	errno = saved;
	return -1;
}

/* Opens and closes one directory of the layout: the check itself. */
static int
check_dir(int spoolfd, const char *sub, uid_t uid, gid_t gid)
{
	int fd = open_checked(spoolfd, sub, uid, gid);

	return fd == -1 ? -1 : close(fd);
}

/* Applies fn to every directory of the layout below an open spool. */
static int
walk_layout(const char *path, uid_t uid, gid_t gid,
    int (*fn)(int, const char *, uid_t, gid_t), char *why, size_t whylen)
{
	char name[BUCKET_PATH_SIZE];
	const char *sub;
	size_t i;
	int fd;

	if ((fd = spool_open(path, uid, gid)) == -1)
		return say(why, whylen, path, "");
	for (i = 0; i < NLAYOUT; i++) {
		sub = layout_dir(i, name);
		if (fn(fd, sub, uid, gid) == -1) {
			say(why, whylen, path, sub);
			close(fd);
			return -1;
		}
	}
	return close(fd);
}

int
spool_create(const char *path, uid_t uid, gid_t gid, char *why,
    size_t whylen)
{
	if (make_dir(AT_FDCWD, path, uid, gid) == -1)
		return say(why, whylen, path, "");
	if (walk_layout(path, uid, gid, make_dir, why, whylen) == -1)
		return -1;
	return spool_check(path, uid, gid, why, whylen);
}

int
spool_check(const char *path, uid_t uid, gid_t gid, char *why,
    size_t whylen)
{
	return walk_layout(path, uid, gid, check_dir, why, whylen);
}

int
spool_free_bytes(int spoolfd, unsigned long long *out)
{
	struct statvfs sv;

	if (fstatvfs(spoolfd, &sv) == -1)
		return -1;
	*out = (unsigned long long)sv.f_bavail * sv.f_frsize;
	return 0;
}
