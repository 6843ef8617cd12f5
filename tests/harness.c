/*
 * SPDX-License-Identifier: ISC
 *
 * Test harness (see harness.h).  Children are started with fork+exec and
 * always reaped; a child that outlives its time limit is killed by pid.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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
#include <criterion/hooks.h>
#include <criterion/internal/ordered-set.h>

#include "durable.h"
#include "harness.h"
#include "number.h"
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
	T.caller2_uid = (uid_t)env_num("LISTQ_TEST_MTA2_UID");
	T.caller2_gid = (gid_t)env_num("LISTQ_TEST_MTA2_GID");
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

static long now_ms(void);

size_t
text_read(const char *path, char *buf, size_t len)
{
	ssize_t n = -1;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, buf, len - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

long
spool_pid(void)
{
	char path[PATH_MAX], text[64];
	uint64_t pid;

	snprintf(path, sizeof(path), "%s/%s", T.spool, SPOOL_PIDFILE);
	text_read(path, text, sizeof(text));
	return text_scan(text, INT32_MAX, &pid, "") != NULL ? (long)pid : 0;
}

/* Gone: no such process, or a zombie its new parent has yet to reap. */
static bool
proc_gone(long pid)
{
	char buf[1024];
	const char *p = proc_stat_fields(pid, buf, sizeof(buf));

	return p == NULL || *p == 'Z' || *p == 'X';
}

/*
 * A listqd still holding the test spool was left by a test that
 * Criterion killed at its timeout: no .fini ran, and listqd's change of
 * credentials cleared any parent-death signal.  Before the next test
 * makes a fresh spool it is stopped, by the pid in its pidfile (its
 * workers follow it: PR_SET_PDEATHSIG), within a bounded wait.
 */
static void
stop_leftover_daemon(void)
{
	char path[PATH_MAX], cmd[PATH_MAX];
	long pid = spool_pid(), end;

	if (pid < 2 || proc_gone(pid))
		return;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	text_read(path, cmd, sizeof(cmd));	/* argv[0], up to its NUL */
	if (strstr(cmd, "listqd") == NULL && strstr(cmd, "valgrind") == NULL)
		return;
	fprintf(stderr, "harness: stopping listqd pid %ld, left running on "
	    "%s by an earlier test\n", pid, T.spool);
	kill((pid_t)pid, SIGKILL);
	end = now_ms() + 5000L * time_factor();
	while (!proc_gone(pid) && now_ms() < end)
		usleep(1000);
	cr_assert(proc_gone(pid), "listqd pid %ld left by an earlier test "
	    "does not stop", pid);
}

/* A fresh empty spool and list directory, owned by the service. */
void
spool_reset(void)
{
	char why[512];

	target_load();
	stop_leftover_daemon();
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
	uid_t uid = r->as_service ? T.svc_uid : r->stranger ?
	    T.stranger_uid : r->second_mta ? T.caller2_uid : T.caller_uid;
	gid_t gid = r->as_service ? T.svc_gid : r->stranger ?
	    T.stranger_gid : r->second_mta ? T.caller2_gid : T.caller_gid;
	struct passwd *pw = getpwuid(uid);

	if (pw == NULL || initgroups(pw->pw_name, gid) == -1 ||
	    setresgid(gid, gid, gid) == -1 || setresuid(uid, uid, uid) == -1)
		_exit(126);
	if (r->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		_exit(126);
}

/*
 * A set-id or file-capability install of the wrapper: it cannot run
 * under valgrind, which loads it as an ordinary program (no privilege:
 * it would fail to become the service user), so those runs -- all the
 * wrapper runs as root -- are exempt from make valgrind-check; the
 * development wrapper of an unprivileged run is checked.
 */
static bool
installed_privileged(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && ((st.st_mode & (S_ISUID | S_ISGID)) ||
	    getxattr(path, "security.capability", NULL, 0) > 0);
}

static void __attribute__((noreturn))
child(const struct run *r, int in, int err)
{
	static const char *const empty[] = { NULL };
	const char *argv[5] = { r->wrapper != NULL ? r->wrapper : T.wrapper,
	    r->argv[0], r->argv[1], r->argv[2], NULL }, *vg[VALGRIND_ARGS + 5];
	const char *const *run = installed_privileged(argv[0]) ? argv :
	    under_valgrind(argv, vg, VALGRIND_ARGS + 5);
	struct itimerval it = { .it_interval = { 0, 0 } };
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
	/* An interval timer survives execve: the caller's, in the wrapper. */
	it.it_value.tv_sec = r->itimer_ms / 1000;
	it.it_value.tv_usec = r->itimer_ms % 1000 * 1000;
	if (r->itimer_ms > 0 && setitimer(ITIMER_REAL, &it, NULL) == -1)
		_exit(126);
	execve(run[0], (char *const *)run,
	    (char *const *)(r->env != NULL ? r->env : empty));
	_exit(127);
}

/*
 * Waits (bounded) until the wrapper has created its tmp/ file; fails the
 * test when it ends, or 10 s pass, first.
 */
static void
wait_for_tmp(pid_t pid)
{
	long end = now_ms() + 10000L * time_factor();
	siginfo_t si;

	for (;;) {
		if (tmp_count() > 0)
			return;
		memset(&si, 0, sizeof(si));
		if (now_ms() > end || waitid(P_PID, (id_t)pid, &si, WEXITED |
		    WNOHANG | WNOWAIT) == -1 || si.si_pid != 0) {
			kill(pid, SIGKILL);
			reap_bounded(pid, RUN_LIMIT_MS);
			cr_assert_fail("the wrapper (pid %ld) %s before it "
			    "created its tmp/ file", (long)pid, si.si_pid != 0 ?
			    "ended" : "took 10 s");
		}
		usleep(2000);
	}
}

/* Feeds the input and collects stderr until both are done or time runs out. */
static void
exchange(const struct run *r, int in, int err, struct result *res)
{
	const char *p = r->input;
	size_t off = 0, got = 0;
	long end = now_ms() + (long)RUN_LIMIT_MS * time_factor();
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
			else if (n == -1 && errno != EAGAIN) {
				close(in);	/* the wrapper closed stdin */
				in = -1;
			}
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
	res->taken = off;
	if (in != -1)
		close(in);
	if (err != -1)
		close(err);
}

int
reap_bounded(pid_t pid, int ms)
{
	long end = now_ms() + (long)ms * time_factor();
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

/* A post whose Subject and body name it, so copies can be counted. */
void
post_numbered(const char *list, int i)
{
	char msg[512];
	struct result r;

	snprintf(msg, sizeof(msg), "From: sender@example.net\n"
	    "To: %s@example.org\nSubject: msg-%04d\n"
	    "Message-ID: <%d@example.net>\n\nbody of msg-%04d\n.leading dot\n",
	    list, i, i, i);
	cr_assert_eq(run_simple("post", list, msg, strlen(msg), &r), 0,
	    "enqueue %d: %s", i, r.err);
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

void
spool_sweep(void)
{
	const char *script = getenv("LISTQ_TEST_SWEEP");
	char uid[24], gid[24], out[4096];
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fds[2], status;
	pid_t pid;

	cr_assert_not_null(script, "LISTQ_TEST_SWEEP is not set");
	if (stat(T.spool, &st) == -1)
		return;
	snprintf(uid, sizeof(uid), "%lu", (unsigned long)T.svc_uid);
	snprintf(gid, sizeof(gid), "%lu", (unsigned long)T.svc_gid);
	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	if ((pid = fork()) == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		execl("/bin/sh", "sh", script, T.spool, uid, gid, (char *)NULL);
		_exit(127);
	}
	cr_assert_neq(pid, -1);
	close(fds[1]);
	while (got < sizeof(out) - 1 && (n = read(fds[0], out + got,
	    sizeof(out) - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fds[0]);
	status = reap_bounded(pid, RUN_LIMIT_MS);
	cr_assert_eq(status, 0, "%s", out);
}

size_t
area_count(const char *area, char *first, size_t len)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", T.spool, area);
	return count_dir(path, true, first, len);
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

int
time_factor(void)
{
	const char *v = getenv("LISTQ_TEST_TIME_FACTOR");
	uint64_t f;

	return v != NULL && number_parse(v, 1000, &f) == 0 && f > 0 ? (int)f :
	    1;
}

/* Runs in the runner before any test starts: Criterion's own limits. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	int f = time_factor();

	FOREACH_SET(struct criterion_suite_set *s, set->suites) {
		if (s->suite.data != NULL)
			s->suite.data->timeout *= f;
		FOREACH_SET(struct criterion_test *t, s->tests)
			t->data->timeout *= f;
	}
}

/*
 * Forked children (listqd's workers) are followed by valgrind whatever
 * the options; --trace-children=yes follows an exec as well.  Each log
 * is named by the time of the start and the pid (%p: a forked child gets
 * its own), so that a recycled pid does not overwrite an earlier log.
 * Only definite leaks count as errors: memory still reachable at exit
 * (a daemon ended by SIGTERM, its workers by PR_SET_PDEATHSIG) is not a
 * leak.
 */
const char *const *
under_valgrind(const char *const *argv, const char **buf, size_t max)
{
	static char log[1100];
	const char *vg = getenv("LISTQ_TEST_VALGRIND"),
	    *dir = getenv("LISTQ_TEST_VALGRIND_LOGS");
	struct timespec ts;
	size_t n = 0;

	if (vg == NULL || *vg == '\0' || dir == NULL || *dir == '\0')
		return argv;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(log, sizeof(log), "--log-file=%s/%lld.%09ld-%%p.log", dir,
	    (long long)ts.tv_sec, ts.tv_nsec);
	buf[n++] = vg;
	buf[n++] = "--tool=memcheck";
	buf[n++] = "--error-exitcode=99";
	buf[n++] = "--leak-check=full";
	buf[n++] = "--errors-for-leak-kinds=definite";
	buf[n++] = "--track-fds=no";
	buf[n++] = "--trace-children=yes";
	buf[n++] = "--num-callers=30";
	buf[n++] = "--vgdb=no";	/* no FIFOs left in /tmp */
	buf[n++] = log;
	while (*argv != NULL && n + 1 < max)
		buf[n++] = *argv++;
	buf[n] = NULL;
	return buf;
}

const char *
text_scan(const char *s, uint64_t max, uint64_t *out, const char *after)
{
	const char *end;
	size_t len = strlen(after);

	if (s == NULL || number_scan(s, max, out, &end) == -1 ||
	    strncmp(end, after, len) != 0)
		return NULL;
	return end + len;
}

const char *
text_field(const char *s, unsigned int k)
{
	s += strspn(s, " \t");
	while (k-- > 0 && *s != '\0') {
		s += strcspn(s, " \t\n");
		s += strspn(s, " \t");
	}
	return *s == '\0' || *s == '\n' ? NULL : s;
}

ssize_t
proc_children(pid_t pid, pid_t *out, size_t max)
{
	char path[64], line[4096];
	size_t n = 0;
	uint64_t child;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children",
	    (long)pid, (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	while (n < max && text_scan(text_field(line, (unsigned int)n),
	    INT32_MAX, &child, "") != NULL)
		out[n++] = (pid_t)child;
	return (ssize_t)n;
}

const char *
proc_stat_fields(long pid, char *buf, size_t len)
{
	char path[64], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	p = fgets(buf, (int)len, f);
	fclose(f);
	/* "(comm)" may hold blanks and parentheses: the last ')' ends it. */
	if (p == NULL || (p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return NULL;
	return p + 2;
}

/* The number of a /proc/pid/status line, followed by after; 0 if none. */
static uint64_t
status_number(long pid, const char *field, const char *after)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	uint64_t v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, flen) == 0 && line[flen] == ':' &&
		    text_scan(text_field(line, 1), UINT64_MAX, &v, after) !=
		    NULL)
			break;
	fclose(f);
	return v;
}

size_t
proc_status_kb(long pid, const char *field)
{
	return (size_t)status_number(pid, field, " kB");
}

uint64_t
proc_wakeups(long pid)
{
	return status_number(pid, "voluntary_ctxt_switches", "\n") +
	    status_number(pid, "nonvoluntary_ctxt_switches", "\n");
}

