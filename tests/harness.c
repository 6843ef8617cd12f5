/*
 * Test harness (see harness.h).  Children are started with fork+exec and
 * always reaped; a child that outlives its time limit is killed by pid.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "durable.h"
#include "harness.h"
#include "qid.h"
#include "spool.h"

#define RUN_LIMIT_MS	30000

struct target T;

static const char *
env_str(const char *name)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		cr_assert_fail("%s is not set: run the tests through "
		    "tests/run.sh (make check)", name);
	return v;
}

static long long
env_num(const char *name)
{
	return strtoll(env_str(name), NULL, 10);
}

void
target_load(void)
{
	signal(SIGPIPE, SIG_IGN);
	T.wrapper = env_str("LISTQ_TEST_WRAPPER");
	T.spool = env_str("LISTQ_TEST_SPOOL");
	T.lists = env_str("LISTQ_TEST_LISTS");
	T.svc_uid = (uid_t)env_num("LISTQ_TEST_SVC_UID");
	T.svc_gid = (gid_t)env_num("LISTQ_TEST_SVC_GID");
	T.max_size = env_num("LISTQ_TEST_MAX_SIZE");
	T.root = getuid() == 0;
	T.caller_uid = getuid();
	T.caller_gid = getgid();
	if (!T.root)
		return;
	T.setuid_wrapper = env_str("LISTQ_TEST_SETUID_WRAPPER");
	T.caller_uid = (uid_t)env_num("LISTQ_TEST_MTA_UID");
	T.caller_gid = (gid_t)env_num("LISTQ_TEST_MTA_GID");
	T.stranger_uid = (uid_t)env_num("LISTQ_TEST_STRANGER_UID");
	T.stranger_gid = (gid_t)env_num("LISTQ_TEST_STRANGER_GID");
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(path);
}

void
rm_tree(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == -1 &&
	    errno != ENOENT)
		cr_assert_fail("removing %s: %s", path, strerror(errno));
}

/* A fresh empty spool and list directory, owned by the service. */
void
spool_reset(void)
{
	char why[512];

	target_load();
	rm_tree(T.spool);
	rm_tree(T.lists);
	cr_assert_eq(spool_create(T.spool, T.svc_uid, T.svc_gid, why,
	    sizeof(why)), 0, "spool_create: %s", why);
	cr_assert_eq(mkdir(T.lists, 0700), 0, "mkdir %s: %s", T.lists,
	    strerror(errno));
	if (T.root)
		cr_assert_eq(chown(T.lists, T.svc_uid, T.svc_gid), 0);
}

void
list_create(const char *name)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", T.lists, name);
	cr_assert_eq(mkdir(path, 0700), 0, "mkdir %s: %s", path,
	    strerror(errno));
	if (T.root)
		cr_assert_eq(chown(path, T.svc_uid, T.svc_gid), 0);
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * As root, become the caller the way an MTA's delivery agent does before
 * it runs a pipe: its groups, then real, effective and saved ids.  The
 * kernel then clears every capability, so whatever privilege the wrapper
 * has comes from its own install.  setpriv(1) is not used for this: it
 * keeps its root caller's permitted capabilities across the switch, and
 * with those an exec of the wrapper is not a privilege gain (no glibc
 * secure mode, and no_new_privs still lets the file capabilities in).
 */
static void
become_caller(const struct run *r)
{
	uid_t uid = r->stranger ? T.stranger_uid : T.caller_uid;
	gid_t gid = r->stranger ? T.stranger_gid : T.caller_gid;
	struct passwd *pw = getpwuid(uid);

	if (pw == NULL || initgroups(pw->pw_name, gid) == -1 ||
	    setresgid(gid, gid, gid) == -1 || setresuid(uid, uid, uid) == -1)
		_exit(126);
	if (r->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		_exit(126);
}

static void __attribute__((noreturn))
child(const struct run *r, int in, int err)
{
	static const char *const empty[] = { NULL };
	const char *argv[5] = { r->wrapper != NULL ? r->wrapper : T.wrapper,
	    r->argv[0], r->argv[1], r->argv[2], NULL };
	struct rlimit rl;
	int fd;

	umask(r->umask_000 ? 0 : 022);
	if (r->fsize_limit > 0) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)r->fsize_limit;
		setrlimit(RLIMIT_FSIZE, &rl);
	}
	if (r->leak_fd > 2 && (fd = open("/dev/null", O_RDONLY)) != -1)
		dup2(fd, r->leak_fd);
	dup2(in, 0);
	dup2(err, 1);
	dup2(err, 2);
	if (T.root)
		become_caller(r);
	if (r->close_std) {
		close(0);
		close(1);
		close(2);
	}
	execve(argv[0], (char *const *)argv,
	    (char *const *)(r->env != NULL ? r->env : empty));
	_exit(127);
}

/* Waits (bounded) until the wrapper has created its tmp/ file. */
static void
wait_for_tmp(pid_t pid)
{
	long end = now_ms() + 10000;
	siginfo_t si;

	for (;;) {
		memset(&si, 0, sizeof(si));
		if (tmp_count() > 0 || now_ms() > end ||
		    waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG |
		    WNOWAIT) == -1 || si.si_pid != 0)
			return;
		usleep(2000);
	}
}

/* Feeds the input and collects stderr until both are done or time runs out. */
static void
exchange(const struct run *r, int in, int err, struct result *res)
{
	const char *p = r->input;
	size_t off = 0, got = 0;
	long end = now_ms() + RUN_LIMIT_MS;
	struct pollfd pf[2];
	ssize_t n;

	fcntl(in, F_SETFL, O_NONBLOCK);
	while (err != -1 && now_ms() < end) {
		if (in != -1 && off >= r->len) {
			close(in);
			in = -1;
		}
		pf[0] = (struct pollfd){ .fd = in, .events = POLLOUT };
		pf[1] = (struct pollfd){ .fd = err, .events = POLLIN };
		if (poll(pf, 2, 100) <= 0)
			continue;
		if (in != -1 && (pf[0].revents & (POLLOUT | POLLERR))) {
			n = write(in, p + off, r->len - off > 65536 ?
			    65536 : r->len - off);
			if (n > 0)
				off += (size_t)n;
			else if (n == -1 && errno != EAGAIN)
				off = r->len;
		}
		if (pf[1].revents & (POLLIN | POLLHUP)) {
			n = read(err, res->err + got, sizeof(res->err) - 1 - got);
			if (n <= 0) {
				close(err);
				err = -1;
			} else
				got += (size_t)n;
		}
	}
	res->err[got] = '\0';
	if (in != -1)
		close(in);
	if (err != -1)
		close(err);
}

int
reap_bounded(pid_t pid, int ms)
{
	long end = now_ms() + ms;
	int st;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		usleep(1000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void
run_wrapper(const struct run *r, struct result *res)
{
	int in[2], err[2];
	pid_t pid;

	memset(res, 0, sizeof(*res));
	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		child(r, in[0], err[1]);
	close(in[0]);
	close(err[1]);
	if (r->while_running != NULL) {
		wait_for_tmp(pid);
		r->while_running(pid);
	}
	exchange(r, in[1], err[0], res);
	res->status = reap_bounded(pid, RUN_LIMIT_MS);
}

int
run_simple(const char *cmd, const char *list, const void *msg, size_t len,
    struct result *res)
{
	struct run r = { .argv = { cmd, list }, .input = msg, .len = len };

	run_wrapper(&r, res);
	return res->status;
}

/* Files in path (with entries_only, queue entries: not state files). */
static size_t
count_dir(const char *path, bool entries_only, char *first, size_t len)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || (entries_only &&
		    !qid_valid(de->d_name)))
			continue;
		if (n++ == 0 && first != NULL)
			snprintf(first, len, "%s/%s", path, de->d_name);
	}
	closedir(d);
	return n;
}

size_t
queue_count(char *first, size_t len)
{
	char path[1024], b[3];
	unsigned int i;
	size_t n = 0;

	for (i = 0; i < QID_BUCKETS; i++) {
		qid_bucket_name(i, b);
		snprintf(path, sizeof(path), "%s/%s/%s", T.spool, SPOOL_QUEUE,
		    b);
		n += count_dir(path, true, n == 0 ? first : NULL, len);
	}
	return n;
}

size_t
tmp_count(void)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", T.spool, SPOOL_TMP);
	return count_dir(path, false, NULL, 0);
}

char *
read_file(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd;

	cr_assert_neq(fd = open(path, O_RDONLY), -1, "open %s: %s", path,
	    strerror(errno));
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_not_null(buf = malloc((size_t)st.st_size + 1));
	cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	buf[st.st_size] = '\0';
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

char *
entry_load(const char *path, struct entry_header *h, size_t *blen)
{
	const char *why = NULL;
	size_t len, body;
	char *buf = read_file(path, &len);

	cr_assert_eq(entry_header_parse(buf, len, h, &body, &why), 0,
	    "%s: %s", path, why);
	*blen = len - body;
	memmove(buf, buf + body, *blen);
	return buf;
}
