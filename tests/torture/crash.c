/*
 * SPDX-License-Identifier: ISC
 *
 * Crash torture: messages enqueued through the real wrapper by WRITERS
 * concurrent MTA processes while random SIGKILLs hit listqd's workers
 * and, every MASTER_EVERY-th kill, its master (the test then starts
 * listqd again, as systemd would).  The list has MEMBERS members, so
 * each message is one SMTP transaction of MEMBERS recipients.
 *
 * Each kill is prepared so that its effects can be told apart: the
 * victim is stopped (SIGSTOP), the local ports of its TCP connections
 * to the sink are noted (/proc/PID/fd, /proc/net/tcp), then it gets
 * SIGKILL.  The sink records each transaction's client port and
 * connection, so a duplicate is explained only if its earlier copy was
 * the last transaction of a connection whose worker was killed.
 *
 * What it asserts, against the design's invariants:
 *  - 5, nothing lost: every member gets every message at least once;
 *  - 4, bounded duplicates: every repeated copy's earlier copy was the
 *    transaction in flight at a worker's kill -- a master's death alone
 *    never repeats anything, since its workers finish and exit;
 *  - 3, one owner: once the master is dead its workers exit by
 *    themselves (status 0, on PR_SET_PDEATHSIG) and, while any of them
 *    runs, a new listqd refuses to start (the spool lock is theirs);
 *  - no entry stuck: queue/, hold/ and corrupt/ end empty, and listq's
 *    and listqd's views agree; no file of the run is left in tmp/
 *    without a process holding it open.
 *  - the master logs every worker kill ("killed by signal 9").
 * Victims are chosen so that the master's crash-loop back-off, meant
 * for workers that die young, stays at 1 s at most (killable_slot).
 * The test process is a child subreaper, so the workers of a killed
 * master become its children: it reaps them and sees how they ended.
 *
 * in_flight_explained checks the accounting itself on a kill that
 * must repeat one transaction, and that the same copies count as
 * unexplained once the ports noted at the kill are forgotten.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "admin_run.h"
#include "daemon.h"
#include "harness.h"
#include "number.h"
#include "qid.h"
#include "spool.h"
#include "torture.h"

#define LIST		"crash"
#define MEMBERS		3
#define WRITERS		4
#define WORKERS		8
#define MASTER_EVERY	8	/* every 8th kill is the master's */
#define KILL_GAP_MS	1400	/* mean time between two kills */
#define MAX_KILLS	1024
#define MAX_PORTS	8
#define MAX_PROCS	64
#define MAX_FDS		256
#define STEP_MS		30000	/* bound of each wait inside a kill */
#define YOUNG_AGE	2	/* s: no worker is killed younger */
#define OLD_AGE		11	/* s: lived the master's QUICK_DEATH (10 s) */

struct kill {
	bool	master;
	int	nport;
	int	port[MAX_PORTS];	/* victim's ports towards the sink */
};

static struct sink S;
static struct daemon D;
static pid_t writers[WRITERS];
static pid_t held[MAX_PROCS];	/* stopped or adopted: ours to end */
static size_t nheld;
static struct kill kills[MAX_KILLS];
static size_t nkills, nmaster;
static bool died_young[WORKERS];	/* the slot's back-off is 1 s */

static long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&D, 0, sizeof(D));
	memset(writers, 0, sizeof(writers));
	nheld = nkills = nmaster = 0;
	memset(died_young, 0, sizeof(died_young));
}

/* Ends what the test started or adopted, by pid, also after a failure. */
static void
teardown(void)
{
	size_t i;

	for (i = 0; i < WRITERS; i++)
		if (writers[i] > 0) {
			kill(writers[i], SIGKILL);
			waitpid(writers[i], NULL, 0);
		}
	for (i = 0; i < nheld; i++)
		if (held[i] > 0) {
			kill(held[i], SIGKILL);
			waitpid(held[i], NULL, 0);
		}
	daemon_teardown();
	spool_sweep();
}

/* pid is stopped by the test, or adopted: teardown must end it. */
static void
hold_pid(pid_t pid)
{
	cr_assert_lt(nheld, MAX_PROCS);
	held[nheld++] = pid;
}

/* pid's state letter and age in seconds; false if it is gone. */
static bool
proc_stat(pid_t pid, char *state, double *age)
{
	char buf[1024], *end;
	const char *p;
	uint64_t start;
	double up = 0;
	FILE *f;
	bool ok;

	/* State, 18 fields, then the start time in ticks. */
	if ((p = proc_stat_fields((long)pid, buf, sizeof(buf))) == NULL ||
	    text_scan(text_field(p, 19), UINT64_MAX, &start, "") == NULL)
		return false;
	*state = p[0];
	if ((f = fopen("/proc/uptime", "r")) == NULL)
		return false;
	if ((ok = fgets(buf, sizeof(buf), f) != NULL)) {
		up = strtod(buf, &end);
		ok = end != buf && *end == ' ';
	}
	fclose(f);
	*age = ok ? up - (double)start / (double)sysconf(_SC_CLK_TCK) : 0;
	return ok;
}

static bool
is_stopped(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	double age;
	char st;

	return !proc_stat(pid, &st, &age) || st == 'T' || st == 't' ||
	    st == 'Z';
}

/* SIGSTOP, and wait until the kernel has really stopped it. */
static void
stop_process(pid_t pid)
{
	cr_assert_eq(kill(pid, SIGSTOP), 0, "SIGSTOP %ld: %s", (long)pid,
	    strerror(errno));
	cr_assert(wait_until(is_stopped, &pid, STEP_MS), "pid %ld did not "
	    "stop", (long)pid);
}

/* The socket inodes among pid's descriptors. */
static size_t
socket_inodes(pid_t pid, unsigned long *ino, size_t max)
{
	char path[300], link[64];
	struct dirent *de;
	uint64_t inode;
	size_t n = 0;
	ssize_t len;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		snprintf(path, sizeof(path), "/proc/%ld/fd/%s", (long)pid,
		    de->d_name);
		if ((len = readlink(path, link, sizeof(link) - 1)) <= 0)
			continue;
		link[len] = '\0';
		if (strncmp(link, "socket:[", 8) == 0 && text_scan(link + 8,
		    ULONG_MAX, &inode, "]") != NULL)
			ino[n++] = (unsigned long)inode;
	}
	closedir(d);
	return n;
}

/* The port of field k ("ADDR:PORT", in hexadecimal), or -1. */
static long
tcp_port(const char *line, unsigned int k)
{
	const char *f = text_field(line, k), *c;
	unsigned long port;
	char *end;

	if (f == NULL || (c = strchr(f, ':')) == NULL)
		return -1;
	port = strtoul(c + 1, &end, 16);
	return end == c + 1 || *end != ' ' || port > 65535 ? -1 : (long)port;
}

/* The local ports of pid's TCP connections to the sink (stopped pid). */
static int
sink_ports(pid_t pid, int *port, int max)
{
	unsigned long ino[MAX_FDS];
	size_t n = socket_inodes(pid, ino, MAX_FDS), i;
	char line[512];
	uint64_t inode;
	long lport;
	int np = 0;
	FILE *f;

	f = fopen("/proc/net/tcp", "r");
	cr_assert_not_null(f, "/proc/net/tcp: %s", strerror(errno));
	/* "sl: LOCAL REMOTE st queues timer retr uid timeout INODE ..." */
	while (fgets(line, sizeof(line), f) != NULL)
		if ((lport = tcp_port(line, 1)) != -1 &&
		    tcp_port(line, 2) == S.port &&
		    text_scan(text_field(line, 9), ULONG_MAX, &inode,
		    " ") != NULL)
			for (i = 0; i < n && np < max; i++)
				if (ino[i] == inode)
					port[np++] = (int)lport;
	fclose(f);
	return np;
}

/* Records a kill about to happen, with the (stopped) victim's ports. */
static void
note_kill(pid_t victim, bool master)
{
	struct kill *k;

	cr_assert_lt(nkills, MAX_KILLS);
	daemon_expect_kills();
	k = &kills[nkills++];
	k->master = master;
	k->nport = sink_ports(victim, k->port, MAX_PORTS);
	nmaster += master;
}

/* pid's process title (setproctitle), "" if it is gone. */
static void
proc_title(pid_t pid, char *title, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	(void)text_read(path, title, len);
}

/* The slot of worker pid ("worker W/N: ..."), -1 before it says. */
static int
worker_slot(pid_t pid)
{
	char title[256], *p;
	uint64_t slot;

	proc_title(pid, title, sizeof(title));
	if ((p = strstr(title, "worker ")) == NULL ||
	    text_scan(p + 7, WORKERS - 1, &slot, "/") == NULL)
		return -1;
	return (int)slot;
}

/*
 * May worker pid die now without slowing its slot down?  The master
 * restarts a worker that lived QUICK_DEATH s at once, one that died
 * younger after a back-off that doubles at each young death: a slot
 * may lose one young worker (1 s), then only old ones (back to 0 s).
 */
static int
killable_slot(pid_t pid, bool *young)
{
	double age;
	char st;
	int slot;

	if (!proc_stat(pid, &st, &age) || st == 'Z' || age < YOUNG_AGE ||
	    (slot = worker_slot(pid)) == -1)
		return -1;
	*young = age < OLD_AGE;
	return *young && died_young[slot] ? -1 : slot;
}

/* SIGKILLs one worker that may die; false if none may yet. */
static bool
kill_worker(void)
{
	pid_t w[MAX_PROCS], victim;
	ssize_t n = proc_children(D.pid, w, MAX_PROCS), i;
	int slot[MAX_PROCS], ok[MAX_PROCS], pick;
	bool young[MAX_PROCS];
	size_t nok = 0;

	for (i = 0; i < n; i++)
		if ((slot[i] = killable_slot(w[i], &young[i])) != -1)
			ok[nok++] = (int)i;
	if (nok == 0)
		return false;
	pick = ok[arc4random_uniform((uint32_t)nok)];
	victim = w[pick];
	hold_pid(victim);
	stop_process(victim);
	note_kill(victim, false);
	spool_sweep();		/* with entries and states in flight */
	cr_assert_eq(kill(victim, SIGKILL), 0);
	nheld = 0;
	died_young[slot[pick]] = young[pick];
	return true;
}

static bool
new_master_started(void *arg)
{
	return log_count(&D, "started:") > *(size_t *)arg;
}

/*
 * SIGKILLs the master with its workers stopped: no new listqd may start
 * while they hold the spool; let go, they must exit 0 by themselves;
 * then listqd is started again.
 */
static void
kill_master(void)
{
	pid_t w[MAX_PROCS];
	size_t started = log_count(&D, "started:");
	ssize_t n, i;
	char err[2048];
	int st;

	stop_process(D.pid);
	n = proc_children(D.pid, w, MAX_PROCS);
	cr_assert_geq(n, 0, "the master is gone");
	for (i = 0; i < n; i++) {
		hold_pid(w[i]);
		stop_process(w[i]);
	}
	note_kill(D.pid, true);
	cr_assert_eq(kill(D.pid, SIGKILL), 0);
	st = daemon_stop(&D);
	cr_assert_eq(st, 128 + SIGKILL, "master: %d", st);
	if (n > 0) {
		st = daemon_run_once(D.conf, WORKERS, err, sizeof(err));
		cr_assert_eq(st, 75, "a new listqd ran (%d) while %zd workers "
		    "of the killed master held the spool: %s", st, n, err);
	}
	for (i = 0; i < n; i++)
		kill(w[i], SIGCONT);
	for (i = 0; i < n; i++) {
		st = reap_bounded(w[i], STEP_MS);
		cr_assert_eq(st, 0, "worker %ld of the killed master ended "
		    "with %d", (long)w[i], st);
		held[i] = 0;
	}
	nheld = 0;
	daemon_start(&D, WORKERS);
	cr_assert(wait_until(new_master_started, &started, STEP_MS),
	    "listqd did not start again");
	memset(died_young, 0, sizeof(died_young));	/* a new master */
}

/* Message crash-ID through the wrapper, as the MTA user; its exit code. */
static int
post_one(size_t id)
{
	struct result r;
	char msg[512];
	int len;

	len = snprintf(msg, sizeof(msg), "From: sender@example.net\n"
	    "To: " LIST "@example.org\nSubject: crash-%06zu\n"
	    "Message-ID: <crash-%06zu@example.net>\n\n"
	    "body of crash-%06zu\n", id, id, id);
	if (run_simple("post", LIST, msg, (size_t)len, &r) != 0)
		fprintf(stderr, "crash-%06zu: exit %d: %s\n", id, r.status,
		    r.err);
	return r.status;
}

/* One MTA process: its share of the messages, paced over span_ms. */
static void __attribute__((noreturn))
writer(int w, size_t per, long span_ms)
{
	long begin = mono_ms(), due;
	size_t i;

	for (i = 0; i < per; i++) {
		due = begin + (long)((double)span_ms * (double)i / (double)per);
		while (mono_ms() < due)
			usleep(2000);
		if (post_one(i * WRITERS + (size_t)w) != 0)
			_exit(1);
	}
	_exit(0);
}

/* Reaps the writers that have ended; true while any still runs. */
static bool
writers_running(void)
{
	bool any = false;
	int i, st;

	for (i = 0; i < WRITERS; i++) {
		if (writers[i] <= 0)
			continue;
		if (waitpid(writers[i], &st, WNOHANG) == writers[i]) {
			writers[i] = 0;
			cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			    "writer %d failed (status %#x)", i, st);
		} else
			any = true;
	}
	return any;
}

static long
next_gap(void)
{
	return KILL_GAP_MS / 3 + (long)arc4random_uniform(KILL_GAP_MS * 4 / 3);
}

/* Kills until target kills are done and every writer has finished. */
static void
kill_loop(size_t target, long start, long limit_ms)
{
	long next = mono_ms() + next_gap();
	bool busy = true;

	while (busy || nkills < target) {
		cr_assert_lt(mono_ms() - start, limit_ms, "the run took too "
		    "long: %zu kills, writers %s", nkills,
		    busy ? "still running" : "done");
		busy = writers_running();
		if (mono_ms() < next || nkills >= target) {
			usleep(20000);
			continue;
		}
		if ((nkills + 1) % MASTER_EVERY == 0)
			kill_master();
		else if (!kill_worker()) {
			next = mono_ms() + 200;
			continue;
		}
		next = mono_ms() + next_gap();
	}
}

/* Nothing left in queue/, hold/ or corrupt/: not an entry, not a state. */
static size_t
spool_files(char *first, size_t len)
{
	char path[700], b[3];
	struct dirent *de;
	size_t n = 0;
	unsigned int i;
	DIR *d;

	for (i = 0; i < QID_BUCKETS + 2; i++) {
		if (i < QID_BUCKETS) {
			qid_bucket_name(i, b);
			snprintf(path, sizeof(path), "%s/%s/%s", T.spool,
			    SPOOL_QUEUE, b);
		} else
			snprintf(path, sizeof(path), "%s/%s", T.spool,
			    i == QID_BUCKETS ? SPOOL_HOLD : SPOOL_CORRUPT);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' && n++ == 0)
				snprintf(first, len, "%s/%s", path, de->d_name);
		closedir(d);
	}
	return n;
}

static bool
spool_empty(void *arg)
{
	char first[1100];

	(void)arg;
	return spool_files(first, sizeof(first)) == 0;
}

/* Does any process hold path open? */
static bool
held_open(const char *path)
{
	char fdpath[300], link[1100];
	struct dirent *de, *fe;
	uint64_t pid;
	ssize_t len;
	DIR *d = opendir("/proc"), *fds;
	bool found = false;

	while (d != NULL && !found && (de = readdir(d)) != NULL) {
		if (number_parse(de->d_name, INT32_MAX, &pid) == -1 || pid == 0)
			continue;
		snprintf(fdpath, sizeof(fdpath), "/proc/%ld/fd", (long)pid);
		if ((fds = opendir(fdpath)) == NULL)
			continue;
		while (!found && (fe = readdir(fds)) != NULL) {
			snprintf(fdpath, sizeof(fdpath), "/proc/%ld/fd/%s",
			    (long)pid, fe->d_name);
			len = readlink(fdpath, link, sizeof(link) - 1);
			link[len > 0 ? len : 0] = '\0';
			found = strcmp(link, path) == 0;
		}
		closedir(fds);
	}
	if (d != NULL)
		closedir(d);
	return found;
}

/* Every file in tmp/ from since on is one a live process is writing. */
static void
assert_tmp_owned(time_t since)
{
	char dir[1024], path[1400];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", T.spool, SPOOL_TMP);
	d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (de->d_name[0] == '.' || lstat(path, &sb) == -1 ||
		    sb.st_mtime < since)
			continue;
		cr_assert(held_open(path), "%s: left in tmp/ by the run, and "
		    "no process has it open", path);
	}
	closedir(d);
}

/* listq and listqd agree: nothing queued, held, deferred or corrupt. */
static void
assert_views_agree(int workers)
{
	char expr[512];
	struct out o;

	cr_assert_eq(listq(&o, "queue", "--json", (char *)NULL), 0, "%s",
	    o.err);
	assert_json(o.out, "d['count'] == 0 and d['entries'] == []");
	out_free(&o);
	cr_assert_eq(listq(&o, "status", "--json", (char *)NULL), 0, "%s",
	    o.err);
	snprintf(expr, sizeof(expr), "d['daemon']['running'] and "
	    "d['daemon']['pid'] == %ld and len(d['workers']) == %d and "
	    "all(d['queue'][k] == 0 for k in ('queued', 'deferred', 'held', "
	    "'corrupt'))", (long)D.pid, workers);
	assert_json(o.out, expr);
	out_free(&o);
}

struct figures {
	size_t	txns, copies, lost, dups, explained, inflight;
	unsigned long conns;
	char	unexplained[256];	/* the first duplicate no kill explains */
};

/* Was transaction j the last of a connection whose worker was killed? */
static bool
in_flight(const struct txn *t, size_t j, const size_t *last)
{
	size_t k;
	int p;

	if (last[t[j].conn] != j + 1)
		return false;
	for (k = 0; k < nkills; k++)
		for (p = 0; p < kills[k].nport; p++)
			if (kills[k].port[p] == t[j].peer_port)
				return true;
	return false;
}

/* Copy i repeats copy j: was j the transaction in flight at a kill? */
static void
count_duplicate(const struct txn *t, size_t i, size_t j, const size_t *last,
    unsigned char *seen, struct figures *f)
{
	f->dups++;
	if (in_flight(t, j, last)) {
		f->explained++;
		f->inflight += !seen[j];
		seen[j] = 1;
	} else if (f->unexplained[0] == '\0')
		snprintf(f->unexplained, sizeof(f->unexplained), "transaction "
		    "%zu (connection %lu, port %d) repeats transaction %zu "
		    "(connection %lu, port %d), which no kill explains", i + 1,
		    t[i].conn, t[i].peer_port, j + 1, t[j].conn,
		    t[j].peer_port);
}

/* Reads t[i]'s message number and checks its envelope. */
static size_t
message_of(const struct txn *t, size_t i, size_t msgs)
{
	const char *p = strstr(t[i].data, "\r\nSubject: crash-");
	size_t id;

	cr_assert_not_null(p, "transaction %zu: no Subject", i + 1);
	id = strtoul(p + 17, NULL, 10);
	cr_assert_lt(id, msgs, "transaction %zu: unknown message %zu", i + 1,
	    id);
	cr_assert_gt(t[i].peer_port, 0, "transaction %zu: no peer port",
	    i + 1);
	cr_assert_gt(t[i].conn, 0);
	return id;
}

/*
 * Every copy the sink took, in order: for each (message, member) every
 * copy but the last should be a transaction in flight at a kill; the
 * figures say how many were, and name the first that was not.
 */
static void
count_copies(size_t msgs, struct figures *f)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i, k, key, *last, *prev;
	unsigned char *seen;
	uint64_t m;

	memset(f, 0, sizeof(*f));
	f->txns = n;
	for (i = 0; i < n; i++)
		if (t[i].conn > f->conns)
			f->conns = t[i].conn;
	last = calloc(f->conns + 1, sizeof(*last));
	prev = calloc(msgs * MEMBERS, sizeof(*prev));
	seen = calloc(n + 1, 1);
	cr_assert(last != NULL && prev != NULL && seen != NULL);
	for (i = 0; i < n; i++)
		last[t[i].conn] = i + 1;
	for (i = 0; i < n; i++) {
		size_t id = message_of(t, i, msgs);

		for (k = 0; k < t[i].nrcpt; k++) {
			cr_assert(strncmp(t[i].rcpt[k], "<m", 2) == 0 &&
			    text_scan(t[i].rcpt[k] + 2, MEMBERS - 1, &m,
			    "@members.example>") != NULL, "%s", t[i].rcpt[k]);
			key = id * MEMBERS + (size_t)m;
			f->copies++;
			if (prev[key] != 0)
				count_duplicate(t, i, prev[key] - 1, last,
				    seen, f);
			prev[key] = i + 1;
		}
	}
	for (key = 0; key < msgs * MEMBERS; key++)
		f->lost += prev[key] == 0;
	for (key = 0; key < msgs * MEMBERS && f->lost > 0; key++)
		cr_assert_neq(prev[key], 0, "crash-%06zu to m%zu lost (%zu "
		    "copies lost in all)", key / MEMBERS, key % MEMBERS,
		    f->lost);
	free(seen);
	free(prev);
	free(last);
	txns_free(t, n);
}

/* The sink, then listqd; orphaned workers will be the test's children. */
static void
start_pool(const char *rules, int workers)
{
	static const char *const sink_args[] = { "-t", "7200", NULL };

	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	make_list(LIST, MEMBERS);
	sink_start_args(&S, rules, 0, false, sink_args);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, workers);
}

/*
 * Once the spool is empty: listq agrees, listqd stops cleanly, nothing
 * is left behind, every worker the test killed was seen dying by the
 * master, and the copies are counted.
 */
static void
drain_and_count(int workers, int wait_ms, time_t since, size_t msgs,
    struct figures *f)
{
	char first[1100];
	size_t n;
	int st;

	cr_assert(wait_until(spool_empty, NULL, wait_ms), "%zu files left in "
	    "the spool, e.g. %s", spool_files(first, sizeof(first)), first);
	assert_views_agree(workers);
	st = daemon_stop(&D);
	cr_assert_eq(st, 0, "listqd did not exit 0 on SIGTERM (%d)", st);
	cr_assert_eq(spool_files(first, sizeof(first)), 0, "%s", first);
	assert_tmp_owned(since);
	n = log_count(&D, "killed by signal 9");
	cr_assert_eq(n, nkills - nmaster, "the masters saw %zu of %zu worker "
	    "kills", n, nkills - nmaster);
	cr_assert_eq(log_count(&D, "Permission denied"), 0);
	count_copies(msgs, f);
	cr_assert_eq(f->dups, f->explained, "%s", f->unexplained);
	cr_assert_leq(f->inflight, nkills - nmaster);
}

static void
report(const char *name, const struct figures *f, size_t msgs, long start)
{
	torture_report(name, "messages=%zu members=%d copies=%zu "
	    "transactions=%zu connections=%lu kills=%zu (workers %zu, master "
	    "%zu) duplicates=%zu explained=%zu (in %zu transactions) lost=%zu "
	    "seconds=%ld", msgs, MEMBERS, f->copies, f->txns, f->conns, nkills,
	    nkills - nmaster, nmaster, f->dups, f->explained, f->inflight,
	    f->lost, (mono_ms() - start) / 1000);
}

Test(crash, under_kills, .init = setup, .fini = teardown, .timeout = 3600)
{
	size_t msgs = torture_size(20000, 1000);
	size_t target = torture_size(220, 20);
	long span = (long)torture_size(330000, 25000), start;
	time_t since = time(NULL) - 1;
	struct figures f;
	int i;

	if (!T.root)
		cr_skip_test("needs root: the wrapper's real uid switch");
	start_pool(NULL, WORKERS);
	start = mono_ms();
	for (i = 0; i < WRITERS; i++) {
		writers[i] = fork();
		cr_assert_neq(writers[i], -1, "fork: %s", strerror(errno));
		if (writers[i] == 0)
			writer(i, msgs / WRITERS, span);
	}
	kill_loop(target, start, span + 600000);
	drain_and_count(WORKERS, (int)torture_size(600000, 120000), since,
	    msgs, &f);
	report("crash/under_kills", &f, msgs, start);
}

/* A worker of D in an SMTP session (its title says so); *pid gets it. */
static bool
delivering(void *arg)
{
	pid_t w[MAX_PROCS], *pid = arg;
	ssize_t n = proc_children(D.pid, w, MAX_PROCS), i;
	char title[256];

	for (i = 0; i < n; i++) {
		proc_title(w[i], title, sizeof(title));
		if (strstr(title, "delivering") != NULL) {
			*pid = w[i];
			return true;
		}
	}
	return false;
}

static bool
recorded_one(void *arg)
{
	(void)arg;
	return sink_count(&S) >= 1;
}

/*
 * The accounting itself, on a kill sure to repeat a transaction: the
 * sink holds each end-of-data reply for 1 s, the worker is stopped while
 * it waits for one, and is killed only once the sink has recorded the
 * transaction and replied.  That transaction comes again, and the
 * ports noted at the kill explain it -- forgotten, nothing would.
 */
Test(crash, in_flight_explained, .init = setup, .fini = teardown,
    .timeout = 180)
{
	time_t since = time(NULL) - 1;
	struct figures f, blind;
	long start;
	pid_t victim;
	size_t i;

	if (!T.root)
		cr_skip_test("needs root: the wrapper's real uid switch");
	start_pool("stall DOT 1\n", 1);
	start = mono_ms();
	for (i = 0; i < 3; i++)
		cr_assert_eq(post_one(i), 0, "enqueue crash-%06zu", i);
	cr_assert(wait_until(delivering, &victim, STEP_MS));
	cr_assert(sink_wait_fired(&S, "stall DOT", 1, STEP_MS), "the data "
	    "never reached the sink");	/* its reply is held */
	hold_pid(victim);
	stop_process(victim);
	spool_sweep();		/* the entries and their states in flight */
	/* The sink records the transaction, then replies. */
	cr_assert(wait_until(recorded_one, NULL, STEP_MS), "not recorded");
	note_kill(victim, false);
	cr_assert_eq(kill(victim, SIGKILL), 0);
	nheld = 0;
	drain_and_count(1, 60000, since, 3, &f);
	report("crash/in_flight_explained", &f, 3, start);
	cr_assert_geq(f.dups, 1, "the kill repeated nothing");
	cr_assert_gt(kills[0].nport, 0, "no port noted at the kill");
	kills[0].nport = 0;
	count_copies(3, &blind);
	cr_assert_eq(blind.dups, f.dups);
	cr_assert_eq(blind.explained, 0, "duplicates explained without a kill");
}
