/*
 * SPDX-License-Identifier: ISC
 *
 * faultfs.so: an LD_PRELOAD shim for the disk torture test that fails
 * one chosen file-system call, so that every error path of the wrapper
 * and of listqd runs at least once.  Test-only; never installed, and
 * never loaded by the privileged wrapper (glibc's secure mode).
 *
 *	FAULTFS_CALL	fsync (also fdatasync), rename (rename, renameat,
 *			renameat2), write or open (open, openat with
 *			O_CREAT)
 *	FAULTFS_NTH	fail the Nth matching call of that kind (1-based)
 *			in each process; a forked child goes on counting
 *			from its parent's count
 *	FAULTFS_ERRNO	the errno it fails with (default EIO)
 *	FAULTFS_PATH	only calls on files below these directories
 *			(colon-separated) count
 *	FAULTFS_LOG	one line per matching call is appended here:
 *			"PID CALL N PATH hit|pass FRAME..." where the frames
 *			are return addresses as offsets into the object
 *			that holds them ("exe+0x1234"), innermost first
 *
 * The settings are read once, when the shim is loaded: the wrapper
 * clears its environment before it writes anything.
 *
 * Invariants: a call that does not match (another file, another kind)
 * goes straight to libc untouched; exactly one call is failed per
 * process, the Nth; the failed call has no effect at all (it is never
 * passed on to libc).
 */
#include <sys/stat.h>
#include <sys/syscall.h>

#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRAMES	8

static unsigned long counter, nth;
static int fail_errno = EIO;
static char want[16], root[PATH_MAX], log_path[PATH_MAX], exe[PATH_MAX];
static const void *exe_base;

/* The first object dl_iterate_phdr() reports is the program itself. */
static int
first_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	exe_base = (const void *)info->dlpi_addr;
	return 1;
}

static void
copy_env(const char *name, char *out, size_t len)
{
	const char *v = getenv(name);

	snprintf(out, len, "%s", v != NULL ? v : "");
}

/* v as a decimal number of at most max (digits only), or dflt. */
static unsigned long
env_number(const char *v, unsigned long max, unsigned long dflt)
{
	unsigned long n;
	char *end;

	if (*v < '0' || *v > '9')
		return dflt;
	errno = 0;
	n = strtoul(v, &end, 10);
	return errno != 0 || *end != '\0' || n > max ? dflt : n;
}

__attribute__((constructor)) static void
load_settings(void)
{
	char v[32];
	ssize_t n;

	/* Its name by /proc: setproctitle() may overwrite argv[0]. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	dl_iterate_phdr(first_object, NULL);
	copy_env("FAULTFS_CALL", want, sizeof(want));
	copy_env("FAULTFS_PATH", root, sizeof(root));
	copy_env("FAULTFS_LOG", log_path, sizeof(log_path));
	copy_env("FAULTFS_NTH", v, sizeof(v));
	nth = env_number(v, ULONG_MAX, 0);
	copy_env("FAULTFS_ERRNO", v, sizeof(v));
	fail_errno = (int)env_number(v, 4095, EIO);
	if (fail_errno == 0)
		fail_errno = EIO;
}

/* Does this process count calls of kind? */
static int
armed(const char *kind)
{
	return strcmp(want, kind) == 0;
}

/* Is path at or below one of the directories of FAULTFS_PATH? */
static int
below_root(const char *path)
{
	const char *p = root, *end;
	size_t n;

	if (root[0] == '\0')
		return 1;
	for (; *p != '\0'; p = *end == ':' ? end + 1 : end) {
		end = strchrnul(p, ':');
		n = (size_t)(end - p);
		if (n > 0 && strncmp(path, p, n) == 0 && (path[n] == '/' ||
		    path[n] == '\0'))
			return 1;
	}
	return 0;
}

/* The absolute path of dirfd/name (name NULL: of the fd itself). */
static void
resolve(int dirfd, const char *name, char *out, size_t len)
{
	char link[64], dir[PATH_MAX];
	ssize_t n;

	if (name != NULL && name[0] == '/') {
		snprintf(out, len, "%s", name);
		return;
	}
	if (dirfd == AT_FDCWD)
		n = getcwd(dir, sizeof(dir)) != NULL ? (ssize_t)strlen(dir) : -1;
	else {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		n = readlink(link, dir, sizeof(dir) - 1);
	}
	if (n < 0)
		n = 0;
	dir[n] = '\0';
	if (name == NULL)
		snprintf(out, len, "%s", dir);
	else
		snprintf(out, len, "%s/%s", dir, name);
}

/*
 * Appends the record of one matching call to FAULTFS_LOG, with the
 * system calls themselves: the shim must not count its own writes.
 */
static void
record(const char *kind, unsigned long n, const char *path, int hit)
{
	void *frames[FRAMES];
	char line[2048];
	size_t off;
	Dl_info di;
	int fd, got, i;

	if (log_path[0] == '\0')
		return;
	off = (size_t)snprintf(line, sizeof(line), "%ld %s %lu %s %s",
	    (long)getpid(), kind, n, path, hit ? "hit" : "pass");
	got = backtrace(frames, FRAMES);
	for (i = 2; i < got && off < sizeof(line) - 64; i++) {
		if (dladdr(frames[i], &di) == 0 || di.dli_fname == NULL)
			continue;
		if (di.dli_fbase == exe_base)
			di.dli_fname = exe;
		off += (size_t)snprintf(line + off, sizeof(line) - off,
		    " %s+0x%lx", strrchr(di.dli_fname, '/') != NULL ?
		    strrchr(di.dli_fname, '/') + 1 : di.dli_fname,
		    (unsigned long)((char *)frames[i] - (char *)di.dli_fbase));
	}
	line[off++] = '\n';
	if ((fd = (int)syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY |
	    O_APPEND | O_CREAT | O_CLOEXEC, 0666)) == -1)
		return;
	if (syscall(SYS_write, fd, line, off) < 0)
		errno = 0;
	close(fd);
}

/*
 * Counts a call of kind on path; true when it is the one to fail (errno
 * is then set).
 */
static int
inject(const char *kind, const char *path)
{
	int saved = errno, hit;

	if (!armed(kind) || !below_root(path))
		return 0;
	counter++;
	hit = nth == counter;
	record(kind, counter, path, hit);
	errno = hit ? fail_errno : saved;
	return hit;
}

static int
inject_fd(const char *kind, int fd, int regular_only)
{
	char path[PATH_MAX];
	struct stat st;

	if (!armed(kind))
		return 0;
	if (regular_only && (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)))
		return 0;
	resolve(fd, NULL, path, sizeof(path));
	return inject(kind, path);
}

static int
inject_at(const char *kind, int dirfd, const char *name)
{
	char path[PATH_MAX];

	if (!armed(kind))
		return 0;
	resolve(dirfd, name, path, sizeof(path));
	return inject(kind, path);
}

/* The next definition of name (libc's), typed as libc declares it. */
#define REAL(name)							\
	static __typeof__(name) *real_##name;				\
	if (real_##name == NULL)					\
		real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int
fsync(int fd)
{
	REAL(fsync);
	return inject_fd("fsync", fd, 0) ? -1 : real_fsync(fd);
}

int
fdatasync(int fd)
{
	REAL(fdatasync);
	return inject_fd("fsync", fd, 0) ? -1 : real_fdatasync(fd);
}

int
rename(const char *from, const char *to)
{
	REAL(rename);
	return inject_at("rename", AT_FDCWD, to) ? -1 : real_rename(from, to);
}

int
renameat(int fromdir, const char *from, int todir, const char *to)
{
	REAL(renameat);
	return inject_at("rename", todir, to) ? -1 :
	    real_renameat(fromdir, from, todir, to);
}

int
renameat2(int fromdir, const char *from, int todir, const char *to,
    unsigned int flags)
{
	REAL(renameat2);
	return inject_at("rename", todir, to) ? -1 :
	    real_renameat2(fromdir, from, todir, to, flags);
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	REAL(write);
	return inject_fd("write", fd, 1) ? -1 : real_write(fd, buf, len);
}

int
openat(int dirfd, const char *name, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	REAL(openat);
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
		if (inject_at("open", dirfd, name))
			return -1;
	}
	return real_openat(dirfd, name, flags, mode);
}

int
open(const char *name, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	REAL(open);
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
		if (inject_at("open", AT_FDCWD, name))
			return -1;
	}
	return real_open(name, flags, mode);
}
