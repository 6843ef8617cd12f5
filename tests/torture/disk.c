/*
 * SPDX-License-Identifier: ISC
 *
 * disk: the spool on a small tmpfs, and file-system faults injected
 * call by call.
 *
 *  - full: the wrapper exits 75 and leaves nothing in tmp/ or the queue
 *    when the spool is full (below its reserve) or the body does not
 *    fit (invariants 1, 2, 5);
 *  - reserve_kept_for_listqd: below SPOOL_RESERVE the wrapper writes
 *    nothing and says so, while listqd's state and DSN still fit;
 *  - worker: listqd starts on a full spool (its pidfile empty, the lock
 *    held); a worker that cannot write an entry's state defers it,
 *    retries at its backoff (no spin) without sending a recipient twice,
 *    and delivers the rest once space returns (invariants 4, 5);
 *  - wrapper_faults, worker_faults: tests/torture/faultfs.so fails the
 *    Nth open/write/fsync/rename of the spool, for N = 1, 2, ... until
 *    the program makes no Nth call: every such call, and so every error
 *    path behind one, fails once.  The wrapper must then exit 75 and
 *    leave nothing in tmp/; the queue stays empty, but for the fsync of
 *    the bucket after the rename: then the entry, already its worker's,
 *    stays queued, untouched (invariant 3: a possible duplicate, never
 *    a loss).  listqd must defer and end with every recipient served
 *    exactly once and one DSN (two when the DSN's own bucket fsync
 *    failed: the same rule).  The call sites hit are printed (kind,
 *    file, the functions on the stack).
 *
 * Root only (mounts, and the service uid for the unprivileged wrapper).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "qid.h"
#include "spool.h"
#include "spoolfs.h"
#include "torture.h"

#define SPOOL_SIZE	(4u << 20)
#define MAX_NTH		64
#define MAX_SITES	64
#define SETTLE_MS	30000

static void
setup(void)
{
	target_load();
}

static void
teardown(void)
{
	unsetenv("LD_PRELOAD");
	daemon_teardown();
}

TestSuite(disk, .init = setup, .fini = teardown, .timeout = 900);

static char *
message(size_t body)
{
	char *m;
	size_t off;

	cr_assert_not_null(m = malloc(body + 256));
	off = (size_t)snprintf(m, 256, "From: a@example.net\nSubject: disk\n"
	    "Message-ID: <%ld.%d@example.net>\n\n", (long)time(NULL),
	    getpid());
	memset(m + off, 'x', body);
	m[off + body - 1] = '\n';
	m[off + body] = '\0';
	return m;
}

/* The fsync of a bucket directory, after the rename into it? */
static bool
after_rename(const char *site)
{
	return strncmp(site, "fsync queue/xx ", 15) == 0;
}

static void
assert_nothing_left(const char *what)
{
	cr_assert_eq(tmp_count(), 0, "%s: a file is left in tmp/", what);
	cr_assert_eq(queue_count(NULL, 0), 0, "%s: an entry is in the queue",
	    what);
}

static int
post(size_t body, struct result *res)
{
	char *m = message(body);
	int st = run_simple("post", "t", m, strlen(m), res);

	free(m);
	return st;
}

/* SPOOL_RESERVE of the wrapper under test (tests/run.sh builds it). */
static size_t
reserve(void)
{
	const char *r = getenv("LISTQ_TEST_RESERVE");

	cr_assert_not_null(r, "LISTQ_TEST_RESERVE is not set");
	return (size_t)strtoull(r, NULL, 10);
}

Test(disk, full)
{
	struct result res;
	size_t filled;

	if (!T.root)
		cr_skip_test("the spool on a tmpfs needs root");
	spoolfs_mount(2u << 20);
	list_create("t");
	filled = spoolfs_fill();
	torture_report("disk/full", "tmpfs of 2 MiB, filler %zu bytes",
	    filled);
	cr_assert_eq(post(200000, &res), 75, "full, large: %d %s",
	    res.status, res.err);
	cr_assert(strstr(res.err, "below the reserve") != NULL, "%s", res.err);
	assert_nothing_left("full, large");
	cr_assert_eq(post(100, &res), 75, "full, small: %d %s", res.status,
	    res.err);
	assert_nothing_left("full, small");
	/* The reserve and a little: the body runs out midway. */
	spoolfs_release(reserve() + (64 << 10));
	cr_assert_eq(post(reserve() + 200000, &res), 75, "reserve + 64 KiB "
	    "free, large: %d %s", res.status, res.err);
	cr_assert(strstr(res.err, "No space left") != NULL, "%s", res.err);
	assert_nothing_left("reserve + 64 KiB free, large");
	cr_assert_eq(post(100, &res), 0, "reserve + 64 KiB free, small: %d %s",
	    res.status, res.err);
	cr_assert_eq(queue_count(NULL, 0), 1);
	cr_assert_eq(tmp_count(), 0);
	torture_report("disk/full", "full: 75 twice, nothing left; reserve + "
	    "64 KiB free: too large refused (75), 100 B queued");
}

/* Copies each recipient got, over the sinks given. */
static size_t
copies(struct sink *const *sinks, size_t nsinks, const char *rcpt)
{
	struct txn *t;
	size_t i, k, n, s, got = 0;
	char want[300];

	snprintf(want, sizeof(want), "<%s>", rcpt);
	for (s = 0; s < nsinks; s++) {
		n = sink_load(sinks[s], &t);
		for (i = 0; i < n; i++)
			for (k = 0; k < t[i].nrcpt; k++)
				got += strcmp(t[i].rcpt[k], want) == 0;
		txns_free(t, n);
	}
	return got;
}

static bool
spool_empty(void *arg)
{
	(void)arg;
	return queue_count(NULL, 0) == 0 && tmp_count() == 0;
}

static int
ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int)((t.tv_sec - t0->tv_sec) * 1000 +
	    (t.tv_nsec - t0->tv_nsec) / 1000000);
}

/*
 * m1 is refused for now (451) and m2 for good (550): the first attempt
 * sends m0, and must then record m1 as deferred and queue a DSN for m2
 * -- neither of which fits on the full spool.
 */
#define RULES_FULL	"rcpt m1@members.example 451 4.3.1 later\n" \
			"rcpt m2@members.example 550 5.1.1 no such user\n"
#define RULES_LATER	"rcpt m2@members.example 550 5.1.1 no such user\n"
#define DSN_RCPT	"t-bounces@example.org"

Test(disk, worker)
{
	struct sink s1, s2, *both[] = { &s1, &s2 };
	struct timespec t0;
	struct daemon d;
	struct result res;
	size_t attempts, m0;
	int waited, window = (int)torture_size(8000, 5000);

	if (!T.root)
		cr_skip_test("the spool on a tmpfs needs root");
	spoolfs_mount(SPOOL_SIZE);
	make_list("t", 3);
	cr_assert_eq(post(2000, &res), 0, "%s", res.err);
	spoolfs_fill();
	sink_start(&s1, RULES_FULL, 0, false);
	daemon_config(&d, s1.port, "");
	/* listqd starts on the full spool, its pidfile empty. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	daemon_start(&d, 1);
	spoolfs_fill();
	/* Deferred, again and again, at the backoff: no spin. */
	usleep((useconds_t)window * 1000);
	attempts = log_count(&d, "to=<m1@members.example>");
	m0 = copies(both, 1, "m0@members.example");
	waited = ms_since(&t0);
	torture_report("disk/worker", "full spool, %d ms: %zu attempts, "
	    "%zu \"saving state\" errors, %zu \"cannot queue a DSN\", m0 got "
	    "%zu cop%s", waited, attempts, log_count(&d, "saving state: No "
	    "space left"), log_count(&d, "cannot queue a DSN"), m0,
	    m0 == 1 ? "y" : "ies");
	cr_assert_eq(log_count(&d, "pidfile: No space left on device; running "
	    "with the spool locked"), 1, "%s", daemon_log(&d));
	cr_assert_geq(log_count(&d, "saving state: No space left"), 1,
	    "the state write did not fail?");
	cr_assert_geq(attempts, 2, "deferred entry not retried");
	cr_assert_leq(attempts, (size_t)(waited / 1000) + 2,
	    "retried faster than min_backoff (1 s): a spin");
	cr_assert_eq(m0, 1, "m0 sent again after a failed state write");
	cr_assert_eq(copies(both, 1, DSN_RCPT), 0);
	cr_assert_eq(queue_count(NULL, 0), 1, "entry lost");

	/* Space returns, and m1 is accepted now. */
	spoolfs_resize((size_t)SPOOL_SIZE * 4);
	sink_stop(&s1);
	sink_start(&s2, RULES_LATER, s1.port, false);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert(wait_until(spool_empty, NULL, SETTLE_MS), "not delivered "
	    "after space returned");
	daemon_stop(&d);
	torture_report("disk/worker", "space back: delivered in %d ms; "
	    "copies m0=%zu m1=%zu m2=%zu dsn=%zu", ms_since(&t0),
	    copies(both, 2, "m0@members.example"),
	    copies(both, 2, "m1@members.example"),
	    copies(both, 2, "m2@members.example"), copies(both, 2, DSN_RCPT));
	cr_assert_eq(copies(both, 2, "m0@members.example"), 1);
	cr_assert_eq(copies(both, 2, "m1@members.example"), 1);
	cr_assert_eq(copies(both, 2, "m2@members.example"), 0);
	cr_assert_eq(copies(both, 2, DSN_RCPT), 1);
}

static bool
dsn_sent(void *arg)
{
	struct txn *t;
	size_t n = sink_load(arg, &t), i, got = 0;

	for (i = 0; i < n; i++)
		got += t[i].nrcpt == 1 && strcmp(t[i].rcpt[0],
		    "<t-bounces@example.org>") == 0;
	txns_free(t, n);
	return got > 0 && queue_count(NULL, 0) == 0;
}

/*
 * The reserve (Postfix's queue_minfree): with less than SPOOL_RESERVE
 * free the wrapper answers 75 and writes nothing, saying why, while
 * listqd's own writes -- state files, a DSN entry -- still fit in what
 * is left; with the space back the wrapper takes mail again.
 */
Test(disk, reserve_kept_for_listqd)
{
	struct sink s;
	struct daemon d;
	struct result res;

	if (!T.root)
		cr_skip_test("the spool on a tmpfs needs root");
	memset(&s, 0, sizeof(s));
	memset(&d, 0, sizeof(d));
	spoolfs_mount(SPOOL_SIZE);
	make_list("t", 3);
	cr_assert_eq(post(2000, &res), 0, "%s", res.err);
	spoolfs_fill();
	spoolfs_release(reserve() / 2);
	cr_assert_eq(post(100, &res), 75, "half the reserve free: %d %s",
	    res.status, res.err);
	cr_assert(strstr(res.err, "bytes free, below the reserve of") != NULL,
	    "%s", res.err);
	cr_assert_eq(tmp_count(), 0, "a file was written in tmp/");
	cr_assert_eq(queue_count(NULL, 0), 1, "the refused post was queued");

	sink_start(&s, RULES_LATER, 0, false);
	daemon_config(&d, s.port, "");
	daemon_start(&d, 1);
	cr_assert(wait_until(dsn_sent, &s, SETTLE_MS), "listqd could not "
	    "write inside the reserve:\n%s", daemon_log(&d));
	cr_assert_eq(log_count(&d, "No space left"), 0, "%s", daemon_log(&d));
	cr_assert_eq(copies((struct sink *[]){ &s }, 1, "m0@members.example"),
	    1);
	daemon_stop(&d);

	spoolfs_release(reserve());
	cr_assert_eq(post(100, &res), 0, "reserve free again: %d %s",
	    res.status, res.err);
	torture_report("disk/reserve", "%zu bytes reserved: post refused "
	    "(75, nothing written), listqd's state and DSN written", reserve());
}

/* ---- faultfs ---- */

static const char *const kinds[] = { "open", "write", "fsync", "rename" };
#define NKINDS	(sizeof(kinds) / sizeof(kinds[0]))

struct sites {
	char	*v[MAX_SITES];
	size_t	 n;
};

/*
 * BUILD/check-root/listqd names the build the tests run: its name here
 * ("listq-wrapper": the unprivileged copy, never installed;
 * "../tests/faultfs.so").
 */
static void
beside_listqd(const char *name, char *out, size_t len)
{
	const char *listqd = getenv("LISTQ_TEST_LISTQD");
	char dir[1024];

	cr_assert_not_null(listqd, "LISTQ_TEST_LISTQD is not set");
	snprintf(dir, sizeof(dir), "%s", listqd);
	snprintf(out, len, "%s/%s", dirname(dir), name);
	cr_assert_eq(access(out, R_OK), 0, "%s: %s (make all)", out,
	    strerror(errno));
}

/* The function of the binary at offset off (nm), or "?". */
static void
symbol_at(const char *binary, unsigned long off, char *out, size_t len)
{
	char line[512], name[256], *end;
	unsigned long addr, best = 0;
	int p[2], null;
	pid_t pid;
	FILE *f;

	snprintf(out, len, "?");
	/* nm run directly, not through a shell: the path is not quoted. */
	if (pipe2(p, O_CLOEXEC) == -1)
		return;
	if ((pid = fork()) == 0) {
		null = open("/dev/null", O_WRONLY);
		dup2(p[1], STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execlp("nm", "nm", "--defined-only", binary, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (pid == -1 || (f = fdopen(p[0], "r")) == NULL) {
		close(p[0]);
		return;
	}
	/* "ADDR TYPE NAME", ADDR in hexadecimal. */
	while (fgets(line, sizeof(line), f) != NULL) {
		addr = strtoul(line, &end, 16);
		if (end == line || end[0] != ' ' || (end[1] != 't' &&
		    end[1] != 'T') || !torture_word(end, 1, name, sizeof(name)))
			continue;
		if (addr <= off && addr >= best) {
			best = addr;
			snprintf(out, len, "%s", name);
		}
	}
	fclose(f);
	waitpid(pid, NULL, 0);
}

/* "tmp/ID", "queue/xx/ID.state.tmp": the class of a spool path. */
static void
path_class(const char *path, char *out, size_t len)
{
	const char *p = path + strlen(T.spool);
	char seg[256];
	size_t n, o = 0;

	out[0] = '\0';
	while (*p == '/' && o < len) {
		p++;
		n = strcspn(p, "/");
		snprintf(seg, sizeof(seg), "%.*s", (int)n, p);
		if (strlen(seg) >= QID_LEN && (seg[QID_LEN] == '\0' ||
		    seg[QID_LEN] == '.'))
			o += (size_t)snprintf(out + o, len - o, "%sID%s",
			    o ? "/" : "", seg + QID_LEN);
		else if (n == 2 && strncmp(out, "queue", 5) == 0)
			o += (size_t)snprintf(out + o, len - o, "/xx");
		else
			o += (size_t)snprintf(out + o, len - o, "%s%s",
			    o ? "/" : "", seg);
		p += n;
	}
}

/*
 * The call failed in this run, as "KIND CLASS <- fn <- fn": NULL when
 * the shim failed nothing (the program made no Nth call).
 */
static char *
injected(const char *log, const char *binary)
{
	char line[2048], kind[16], path[1024], hit[8], *p, *tok, *site = NULL;
	char cls[256], fn[256], buf[1024];
	const char *base = strrchr(binary, '/') != NULL ?
	    strrchr(binary, '/') + 1 : binary;
	size_t o, blen = strlen(base);
	FILE *f;

	if ((f = fopen(log, "r")) == NULL)
		return NULL;
	while (site == NULL && fgets(line, sizeof(line), f) != NULL) {
		/* "PID KIND N PATH hit FRAMES" */
		if (!torture_word(line, 1, kind, sizeof(kind)) ||
		    !torture_word(line, 3, path, sizeof(path)) ||
		    !torture_word(line, 4, hit, sizeof(hit)) ||
		    strcmp(hit, "hit") != 0)
			continue;
		path_class(path, cls, sizeof(cls));
		o = (size_t)snprintf(buf, sizeof(buf), "%s %s", kind, cls);
		/* The frames in the program itself, not in libraries. */
		p = strstr(line, " hit ") + 5;
		while ((tok = strsep(&p, " \n")) != NULL && o < sizeof(buf) -
		    64) {
			if (strncmp(tok, base, blen) != 0 ||
			    strncmp(tok + blen, "+0x", 3) != 0)
				continue;
			symbol_at(binary, strtoul(tok + blen + 3, NULL, 16), fn,
			    sizeof(fn));
			o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			    " <- %s", fn);
		}
		site = strdup(buf);
	}
	fclose(f);
	return site;
}

static void
add_site(struct sites *s, char *site)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->v[i], site) == 0) {
			free(site);
			return;
		}
	cr_assert_lt(s->n, MAX_SITES);
	s->v[s->n++] = site;
}

/* Was a call of this kind on this class of file failed? */
static void
assert_site(const struct sites *s, const char *prog, const char *what)
{
	size_t i, len = strlen(what);

	for (i = 0; i < s->n; i++)
		if (strncmp(s->v[i], what, len) == 0 && (s->v[i][len] == ' ' ||
		    s->v[i][len] == '\0'))
			return;
	cr_assert_fail("%s: no failure injected into \"%s\"", prog, what);
}

/*
 * Prints the calls failed over the runs, then checks that every required
 * one (KIND CLASS) is among them.
 */
static void
conclude(const char *name, const char *outcome, size_t runs,
    struct sites *s, const char *const *required)
{
	size_t i;

	torture_report(name, "%zu runs, %zu distinct failed calls, each: %s",
	    runs, s->n, outcome);
	for (i = 0; i < s->n; i++)
		torture_report(name, "site %zu: %s", i + 1, s->v[i]);
	for (; *required != NULL; required++)
		assert_site(s, name, *required);
	for (i = 0; i < s->n; i++)
		free(s->v[i]);
}

/* The wrapper's writes: its entry, created, written, committed. */
static const char *const wrapper_sites[] = { "open tmp/ID", "write tmp/ID",
	"fsync tmp/ID", "rename queue/xx/ID", "fsync queue/xx", NULL };
/*
 * listqd's: a DSN entry like the wrapper's, a state file written whole,
 * and a record appended to one.
 */
static const char *const worker_sites[] = { "open tmp/ID", "write tmp/ID",
	"fsync tmp/ID", "rename queue/xx/ID", "fsync queue/xx",
	"open queue/xx/ID.state.tmp", "write queue/xx/ID.state.tmp",
	"fsync queue/xx/ID.state.tmp", "rename queue/xx/ID.state",
	"write queue/xx/ID.state", "fsync queue/xx/ID.state", NULL };

/* The shim's settings, as NAME=VALUE strings. */
static void
shim_env(char env[5][1100], const char *kind, int nth, const char *log,
    const char *paths)
{
	snprintf(env[0], sizeof(env[0]), "FAULTFS_CALL=%s", kind);
	snprintf(env[1], sizeof(env[1]), "FAULTFS_NTH=%d", nth);
	snprintf(env[2], sizeof(env[2]), "FAULTFS_LOG=%s", log);
	snprintf(env[3], sizeof(env[3]), "FAULTFS_PATH=%s", paths);
	snprintf(env[4], sizeof(env[4]), "FAULTFS_ERRNO=%d",
	    strcmp(kind, "write") == 0 || strcmp(kind, "open") == 0 ?
	    ENOSPC : EIO);
}

static void
fresh_log(char *log, size_t len)
{
	int fd;

	snprintf(log, len, "%s.faultfs", T.spool);
	unlink(log);
	cr_assert_neq(fd = open(log, O_WRONLY | O_CREAT, 0666), -1);
	fchmod(fd, 0666);
	close(fd);
}

Test(disk, wrapper_faults)
{
	char shim[1200], wrapper[1200], log[1100], env[5][1100], pre[1300];
	const char *envp[7];
	struct sites sites = { .n = 0 };
	struct result res;
	size_t k, runs = 0;
	char *m = message(100000), *site;
	int nth, i;

	if (!T.root)
		cr_skip_test("runs the wrapper as the service user: root only");
	beside_listqd("../tests/faultfs.so", shim, sizeof(shim));
	beside_listqd("listq-wrapper", wrapper, sizeof(wrapper));
	snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", shim);
	for (k = 0; k < NKINDS; k++)
		for (nth = 1; nth <= MAX_NTH; nth++) {
			struct run r = { .wrapper = wrapper, .argv = { "post",
			    "t" }, .input = m, .len = strlen(m),
			    .as_service = true, .env = envp };

			spool_reset();
			list_create("t");
			fresh_log(log, sizeof(log));
			shim_env(env, kinds[k], nth, log, T.spool);
			envp[0] = pre;
			for (i = 0; i < 5; i++)
				envp[i + 1] = env[i];
			envp[6] = NULL;
			run_wrapper(&r, &res);
			runs++;
			if ((site = injected(log, wrapper)) == NULL) {
				cr_assert_eq(res.status, 0, "%s #%d, nothing "
				    "injected: %d %s", kinds[k], nth,
				    res.status, res.err);
				cr_assert_eq(queue_count(NULL, 0), 1);
				break;
			}
			cr_assert_eq(res.status, 75, "%s: exit %d, not 75: %s",
			    site, res.status, res.err);
			if (after_rename(site)) {
				/* The worker's now: left where it is. */
				cr_assert_eq(tmp_count(), 0, "%s: tmp/", site);
				cr_assert_eq(queue_count(NULL, 0), 1, "%s: the "
				    "entry was taken out of its bucket", site);
			} else
				assert_nothing_left(site);
			spool_sweep();
			add_site(&sites, site);
		}
	free(m);
	conclude("disk/wrapper_faults", "exit 75, nothing left in tmp/, "
	    "the queue empty unless renamed into it", runs, &sites,
	    wrapper_sites);
}

static bool
settled(void *arg)
{
	struct sink *s = arg;

	return spool_empty(NULL) && copies(&s, 1, "m1@members.example") > 0 &&
	    copies(&s, 1, DSN_RCPT) > 0;
}

/* One listqd run with the Nth call of kind failed; returns the site. */
static char *
worker_run(const char *shim, const char *kind, int nth, const char *listqd)
{
	char log[1100], env[5][1100], paths[2400], *site, *eq;
	struct sink s, *one[] = { &s };
	struct daemon d;
	struct result res;
	int i;

	spool_reset();
	make_list("t", 3);
	cr_assert_eq(post(2000, &res), 0, "%s", res.err);
	fresh_log(log, sizeof(log));
	sink_start(&s, "rcpt-once m1@members.example 451 4.3.1 later\n"
	    RULES_LATER, 0, false);
	/* One recipient a transaction: the state is written between them. */
	daemon_config(&d, s.port, "max_rcpts_per_transaction = 1\n");
	snprintf(paths, sizeof(paths), "%s/%s:%s/%s", T.spool, SPOOL_QUEUE,
	    T.spool, SPOOL_TMP);
	shim_env(env, kind, nth, log, paths);
	/* listqd inherits the environment; the sink has started already. */
	for (i = 0; i < 5; i++) {
		eq = strchr(env[i], '=');
		*eq = '\0';
		setenv(env[i], eq + 1, 1);
	}
	setenv("LD_PRELOAD", shim, 1);
	daemon_start(&d, 1);
	unsetenv("LD_PRELOAD");
	for (i = 0; i < 5; i++)
		unsetenv(env[i]);
	cr_assert(wait_until(settled, &s, SETTLE_MS), "%s #%d: not settled",
	    kind, nth);
	daemon_stop(&d);
	sink_stop(&s);
	spool_sweep();
	site = injected(log, listqd);
	cr_assert_eq(copies(one, 1, "m0@members.example"), 1, "%s: m0",
	    site != NULL ? site : kind);
	cr_assert_eq(copies(one, 1, "m1@members.example"), 1, "%s: m1",
	    site != NULL ? site : kind);
	/* A DSN left in a bucket that failed its fsync, and the retry's. */
	cr_assert_eq(copies(one, 1, DSN_RCPT), site != NULL &&
	    after_rename(site) && strstr(site, "enqueue_commit") != NULL ?
	    2 : 1, "%s: DSN", site != NULL ? site : kind);
	return site;
}

Test(disk, worker_faults)
{
	char shim[1200], *site;
	const char *listqd = getenv("LISTQ_TEST_LISTQD");
	struct sites sites = { .n = 0 };
	size_t k, runs = 0;
	int nth;

	if (!T.root)
		cr_skip_test("needs the test users: root only");
	beside_listqd("../tests/faultfs.so", shim, sizeof(shim));
	for (k = 0; k < NKINDS; k++)
		for (nth = 1; nth <= MAX_NTH; nth++) {
			runs++;
			if ((site = worker_run(shim, kinds[k], nth, listqd)) ==
			    NULL)
				break;
			add_site(&sites, site);
		}
	conclude("disk/worker_faults", "m0, m1 and the DSN exactly once, "
	    "spool empty", runs, &sites, worker_sites);
}
