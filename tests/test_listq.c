/*
 * SPDX-License-Identifier: ISC
 *
 * listq, the admin command, end to end: the built listq, listqd, wrapper
 * and test sink as separate processes.  Every command that acts on
 * entries runs against a running pool (through the control socket and
 * the owning worker) and a stopped one (listq takes the spool lock);
 * machine output is checked with real parsers; as root, listq runs as
 * root, as the service user and as strangers, after real uid switches.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

#define WAIT_MS		30000
#define NO_SUCH_ID	"1xXSlJ3KLo01NuHrmv"

static struct sink S;
static struct daemon D;
static struct out O;

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&D, 0, sizeof(D));
	memset(&O, 0, sizeof(O));
}

static void
teardown(void)
{
	daemon_teardown();
	out_free(&O);
}

/* "by uid N" as listq logs the admin running these tests. */
static const char *
by_me(void)
{
	static char s[32];

	snprintf(s, sizeof(s), "by uid %lu", (unsigned long)getuid());
	return s;
}

static void
post(const char *list, int i)
{
	char msg[256];
	struct result r;

	snprintf(msg, sizeof(msg), "From: s@example.net\nSubject: msg-%04d\n\n"
	    "body %d\n", i, i);
	cr_assert_eq(run_simple("post", list, msg, strlen(msg), &r), 0,
	    "enqueue: %s", r.err);
}

static void
bucket_path(const char *id, char *path, size_t len)
{
	char b[3];

	qid_bucket_name(qid_bucket(id), b);
	snprintf(path, len, "%s/queue/%s/%s", T.spool, b, id);
}

static bool
in_queue(const char *id)
{
	char path[1024];

	bucket_path(id, path, sizeof(path));
	return access(path, F_OK) == 0;
}

static bool
in_dir(const char *dir, const char *id)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s/%s", T.spool, dir, id);
	return access(path, F_OK) == 0;
}

/* The newest entry in queue/ (ids sort in arrival order). */
static void
newest(char id[QID_SIZE])
{
	char path[1024], b[3];
	struct dirent *de;
	unsigned int i;
	DIR *d;

	id[0] = '\0';
	for (i = 0; i < QID_BUCKETS; i++) {
		qid_bucket_name(i, b);
		snprintf(path, sizeof(path), "%s/queue/%s", T.spool, b);
		cr_assert_not_null(d = opendir(path));
		while ((de = readdir(d)) != NULL)
			if (qid_valid(de->d_name) && strcmp(de->d_name, id) > 0)
				strlcpy(id, de->d_name, QID_SIZE);
		closedir(d);
	}
	cr_assert(id[0] != '\0', "no entry in the queue");
}

static void
post_id(const char *list, int i, char id[QID_SIZE])
{
	post(list, i);
	newest(id);
}

/* Posts n messages to list; their ids in ids[0..n). */
static void
post_ids(const char *list, int n, char ids[][QID_SIZE])
{
	for (int i = 0; i < n; i++)
		post_id(list, i, ids[i]);
}

static size_t
copies(void)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i, c = 0;

	for (i = 0; i < n; i++)
		c += t[i].nrcpt;
	txns_free(t, n);
	return c;
}

static bool
copies_reach(void *arg)
{
	return copies() >= *(size_t *)arg;
}

static void
wait_copies(size_t n)
{
	cr_assert(wait_until(copies_reach, &n, WAIT_MS), "%zu of %zu copies "
	    "arrived", copies(), n);
}

static bool
spool_empty(void *arg)
{
	(void)arg;
	return queue_count(NULL, 0) == 0;
}

static bool
logged(void *needle)
{
	return log_count(&D, needle) > 0;
}

static void
wait_logged(const char *needle)
{
	cr_assert(wait_until(logged, (void *)needle, WAIT_MS), "never "
	    "logged: %s", needle);
}

/* Asserts listq's last output says "ID: what by uid N" (N: the admin). */
static void
said(const char *id, const char *what)
{
	char want[256];

	snprintf(want, sizeof(want), "%s: %s %s", id, what, by_me());
	HAS(O.out, want);
}

Test(listq, refuses_other_users, .init = setup, .fini = teardown,
    .timeout = 60)
{
	if (!T.root)
		cr_skip_test("needs root: other users are real test users");
	cr_assert_eq(listq_as(&O, AS_STRANGER, "status", (char *)NULL), 77,
	    "%s", O.err);
	HAS(O.err, "listq must run as uid");
	out_free(&O);
	cr_assert_eq(listq_as(&O, AS_MTA, "hold", NO_SUCH_ID, (char *)NULL),
	    77);
	HAS(O.err, "or root, not uid");
	out_free(&O);
	cr_assert_eq(listq_as(&O, AS_SERVICE, "status", (char *)NULL), 0, "%s",
	    O.err);
	out_free(&O);
	cr_assert_eq(listq_as(&O, AS_STRANGER, "queue", "--help",
	    (char *)NULL), 0);
	HAS(O.out, "usage: listq queue");
}

/*
 * The master's own gate: a stranger who could reach the socket (here the
 * spool and the socket are opened up for the test) is refused by its
 * SO_PEERCRED check, and the refusal is logged.
 */
Test(listq, control_socket_checks_peer, .init = setup, .fini = teardown,
    .timeout = 60)
{
	char path[1024], script[1400], want[128];
	const char *argv[] = { "/usr/bin/python3", "-c", script, NULL };
	struct out o;

	if (!T.root)
		cr_skip_test("needs root: the peer is a real test user");
	daemon_config(&D, unused_port(), NULL);
	daemon_start(&D, 1);
	snprintf(path, sizeof(path), "%s/control", T.spool);
	snprintf(script, sizeof(script), "import socket\n"
	    "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
	    "s.connect('%s')\ns.send(b'status')\n"
	    "print(s.recv(4096).decode(), end='')\n", path);
	cr_assert_eq(chmod(T.spool, 0711), 0);
	cr_assert_eq(chmod(path, 0777), 0);
	run_prog(argv, AS_STRANGER, NULL, 0, &o);
	chmod(path, 0700);
	chmod(T.spool, 0700);
	snprintf(want, sizeof(want), "err 77 - uid %lu is neither root nor "
	    "the service", (unsigned long)T.stranger_uid);
	cr_assert_not_null(strstr(o.out, want), "%d: %s %s", o.status, o.out,
	    o.err);
	out_free(&o);
	snprintf(want, sizeof(want), "control: refused uid %lu",
	    (unsigned long)T.stranger_uid);
	cr_assert_eq(log_count(&D, want), 1);
}

Test(listq, help_for_every_command, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char *const cmds[] = { "status", "queue", "show",
	    "flush", "hold", "release", "delete", "requeue", "lists",
	    "newlist", "rmlist", "members", "aliases", "check", "metrics" };
	char want[64];

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		LQ(0, cmds[i], "--help");
		snprintf(want, sizeof(want), "usage: listq %s", cmds[i]);
		HAS(O.out, want);
	}
	LQ(0, "--help");
	HAS(O.out, "members");
	LQ(64, "frobnicate");
	HAS(O.err, "unknown command");
	LQ(64, "hold");
	HAS(O.err, "usage: listq hold");
	LQ(64, "release", "--all", NO_SUCH_ID);
	LQ(64, "queue", "--bogus");
}

Test(listq, status_stopped_then_running, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char want[1024];

	make_list("st", 2);
	post("st", 0);
	post("st", 1);
	LQ(0, "status");
	HAS(O.out, "listqd:     not running");
	HAS(O.out, "2 queued (0 deferred), 0 held, 0 corrupt");
	snprintf(want, sizeof(want), "SPOOLDIR          %s", T.spool);
	HAS(O.out, want);
	LQ(0, "status", "--json");
	snprintf(want, sizeof(want), "not d['daemon']['running'] and "
	    "d['queue']['queued'] == 2 and d['settings']['SPOOLDIR'] == '%s' "
	    "and 'workers' not in d", T.spool);
	assert_json(O.out, want);

	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 3);
	wait_copies(4);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	LQ(0, "status", "--json");
	snprintf(want, sizeof(want), "d['daemon']['running'] and "
	    "d['daemon']['pid'] == %ld and len(d['workers']) == 3 and "
	    "sorted(b for w in d['workers'] for b in w['buckets']) == "
	    "list(range(256)) and all(w['pid'] > 0 and w['running'] for w in "
	    "d['workers']) and d['deliveries']['minute']['sent'] == 4 and "
	    "d['queue']['queued'] == 0 and "
	    "d['relay']['last'].endswith(':%d')", (long)D.pid, S.port);
	assert_json(O.out, want);
	LQ(0, "status");
	snprintf(want, sizeof(want), "listqd:     running, pid %ld",
	    (long)D.pid);
	HAS(O.out, want);
	HAS(O.out, "worker 2");
	HAS(O.out, "deliveries: last minute 4 sent, 0 deferred, 0 failed; 0 "
	    "relay errors");
}

Test(listq, queue_and_show_stopped, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char msg[] = "From: x@example.net\nSubject: exact\n\n"
	    "line one\n.dot\n\ttab, no newline at the end";
	char a1[QID_SIZE], a2[QID_SIZE], b1[QID_SIZE], want[512];
	struct result r;

	make_list("qa", 1);
	make_list("qb", 1);
	post_id("qa", 0, a1);
	cr_assert_eq(run_simple("post", "qa", msg, strlen(msg), &r), 0);
	newest(a2);
	post_id("qb", 2, b1);
	LQ(0, "queue");
	HAS(O.out, a1);
	HAS(O.out, a2);
	HAS(O.out, b1);
	HAS(O.out, "-- 3 entries");
	LQ(0, "queue", "--list", "qb");
	HAS(O.out, b1);
	HASNT(O.out, a1);
	LQ(0, "queue", "--json");
	snprintf(want, sizeof(want), "[e['id'] for e in d['entries']] == "
	    "['%s', '%s', '%s'] and all(e['state'] == 'queued' and "
	    "e['recipients'] is None for e in d['entries']) and "
	    "d['entries'][2]['list'] == 'qb' and d['count'] == 3", a1, a2, b1);
	assert_json(O.out, want);
	LQ(0, "show", a2);
	HAS(O.out, "list:       qa");
	HAS(O.out, "not expanded yet");
	LQ(0, "show", "--message", a2);
	cr_assert_eq(O.outlen, strlen(msg));
	cr_assert_eq(memcmp(O.out, msg, O.outlen), 0, "%s", O.out);
	LQ(0, "show", "--json", b1);
	snprintf(want, sizeof(want), "d['id'] == '%s' and d['list'] == 'qb' "
	    "and d['state'] == 'queued' and d['location'] == 'queue'", b1);
	assert_json(O.out, want);
	LQ(66, "show", NO_SUCH_ID);
	HAS(O.err, "no such entry");
	LQ(0, "queue", "--held");
	HAS(O.out, "queue is empty");
}

Test(listq, queue_and_show_running, .init = setup, .fini = teardown,
    .timeout = 60)
{
	char id[QID_SIZE], want[512];

	make_list("qs", 2);
	sink_start(&S, "rcpt m1@members.example 451 4.3.0 not now\n", 0, false);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n");
	daemon_start(&D, 1);
	post_id("qs", 0, id);
	wait_logged("status=deferred");
	LQ(0, "queue", "--deferred");
	HAS(O.out, id);
	HAS(O.out, " 1/2 ");
	HAS(O.out, "451 4.3.0 not now");
	LQ(0, "queue", "--deferred", "--json");
	snprintf(want, sizeof(want), "d['entries'][0]['id'] == '%s' and "
	    "d['entries'][0]['state'] == 'deferred' and "
	    "d['entries'][0]['pending'] == 1 and "
	    "d['entries'][0]['recipients'] == 2 and "
	    "d['entries'][0]['next_attempt'] > 0", id);
	assert_json(O.out, want);
	LQ(0, "show", id);
	HAS(O.out, "2 (1 sent, 1 deferred, 0 failed, 0 pending)");
	HAS(O.out, "\n  deferred m1@members.example  451 4.3.0 not now\n");
	LQ(0, "show", "--json", id);
	assert_json(O.out, "[(r['address'], r['status']) for r in "
	    "d['recipients']] == [('m0@members.example', 'sent'), "
	    "('m1@members.example', 'deferred')] and d['attempts'] == 1 and "
	    "d['sender'] == 'qs-bounces@example.org'");
}

Test(listq, hold_and_release_running, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[3][QID_SIZE], want[256];
	int port = unused_port();

	make_list("hr", 1);
	daemon_config(&D, port, NULL);
	daemon_start(&D, 2);
	post_ids("hr", 3, id);
	LQ(0, "hold", id[1]);
	said(id[1], "held");
	cr_assert(in_dir("hold", id[1]) && !in_queue(id[1]));
	LQ(0, "queue", "--held", "--json");
	snprintf(want, sizeof(want), "[e['id'] for e in d['entries']] == "
	    "['%s']", id[1]);
	assert_json(O.out, want);
	sink_start(&S, NULL, port, false);
	wait_copies(2);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	sleep(2);
	cr_assert_eq(copies(), 2, "a held entry was delivered");
	cr_assert(in_dir("hold", id[1]));
	LQ(0, "release", id[1]);
	said(id[1], "released");
	wait_copies(3);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	cr_assert(!in_dir("hold", id[1]));
	snprintf(want, sizeof(want), "%s: held %s", id[1], by_me());
	cr_assert_eq(log_count(&D, want), 1, "the owner logs the hold");
	cr_assert_eq(log_count(&D, "released by uid"), 1);
	LQ(66, "release", id[1]);
	HAS(O.err, "no such entry on hold");
}

Test(listq, hold_and_release_stopped, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[3][QID_SIZE];

	make_list("hs", 1);
	post_ids("hs", 3, id);
	LQ(0, "hold", id[0]);
	said(id[0], "held");
	cr_assert(in_dir("hold", id[0]) && !in_queue(id[0]));
	LQ(0, "hold", "--list", "hs");
	said(id[1], "held");
	said(id[2], "held");
	LQ(0, "queue", "--json");
	assert_json(O.out, "[e['state'] for e in d['entries']] == "
	    "['held'] * 3");
	LQ(0, "release", id[0]);
	cr_assert(in_queue(id[0]) && !in_dir("hold", id[0]));
	LQ(0, "release", "--all");
	cr_assert(in_queue(id[1]) && in_queue(id[2]) && !in_dir("hold", id[1]));
	LQ(0, "hold", id[0]);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 2);
	wait_copies(2);
	sleep(1);
	cr_assert_eq(copies(), 2, "an entry held with listqd stopped was "
	    "delivered");
	cr_assert(in_dir("hold", id[0]));
	LQ(0, "release", id[0]);
	wait_copies(3);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
}

Test(listq, delete_running, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[3][QID_SIZE], other[2][QID_SIZE], want[256];
	int port = unused_port();

	make_list("dr", 1);
	make_list("other", 1);
	daemon_config(&D, port, NULL);
	daemon_start(&D, 3);
	post_ids("dr", 3, id);
	post_ids("other", 2, other);
	LQ(0, "delete", id[1]);
	said(id[1], "deleted");
	cr_assert(!in_queue(id[1]));
	LQ(0, "delete", "--list", "other");
	said(other[0], "deleted");
	said(other[1], "deleted");
	cr_assert(!in_queue(other[0]) && !in_queue(other[1]));
	LQ(66, "delete", NO_SUCH_ID);
	HAS(O.err, "no such entry");
	sink_start(&S, NULL, port, false);
	wait_copies(2);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	sleep(1);
	cr_assert_eq(copies(), 2, "a deleted entry was delivered");
	snprintf(want, sizeof(want), "%s: deleted %s", id[1], by_me());
	cr_assert_eq(log_count(&D, want), 1, "the owner logs who deleted");
	cr_assert_eq(log_count(&D, "deleted by uid"), 3);
}

Test(listq, delete_stopped, .init = setup, .fini = teardown, .timeout = 60)
{
	char id[3][QID_SIZE], dt[QID_SIZE];

	make_list("ds", 1);
	make_list("dt", 1);
	post_ids("ds", 3, id);
	post_id("dt", 3, dt);
	LQ(0, "delete", id[0]);
	said(id[0], "deleted");
	LQ(0, "hold", id[1]);
	LQ(0, "delete", id[1]);
	said(id[1], "deleted from hold/");
	LQ(0, "delete", "--list", "dt");
	said(dt, "deleted");
	cr_assert(!in_queue(id[0]) && !in_dir("hold", id[1]) && !in_queue(dt));
	cr_assert(in_queue(id[2]), "delete removed another entry");
	cr_assert_eq(queue_count(NULL, 0), 1);
	LQ(0, "delete", "--list", "dt");
	HAS(O.out, "no entry matched");
}

Test(listq, flush_running, .init = setup, .fini = teardown, .timeout = 90)
{
	char id[QID_SIZE];

	make_list("fl", 2);
	make_list("fl3", 3);
	sink_start(&S, "rcpt-once m1@members.example 451 4.3.0 later\n"
	    "rcpt-once m2@members.example 451 4.3.0 later\n", 0, false);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n");
	daemon_start(&D, 2);
	post_id("fl", 0, id);
	wait_logged("status=deferred");
	sleep(1);
	cr_assert(in_queue(id), "deferred for an hour");
	LQ(0, "flush", id);
	said(id, "flushed");
	wait_copies(2);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	post_id("fl3", 1, id);
	cr_assert(wait_until(logged, "m2@members.example>, relay=", WAIT_MS));
	sleep(1);
	cr_assert(in_queue(id));
	LQ(0, "flush");
	HAS(O.out, "every worker retries its deferred entries now");
	wait_copies(5);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
}

static void
state_path(const char *id, char *path, size_t len)
{
	bucket_path(id, path, len - 8);
	strlcat(path, ".state", len);
}

/* from copied to to, extra added at the end (cp from to; echo >> to). */
static void
copy_file(const char *from, const char *to, const char *extra)
{
	size_t len;
	char *text = read_file(from, &len);
	struct stat st;
	int fd;

	cr_assert_eq(stat(from, &st), 0);
	cr_assert_neq(fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    st.st_mode & 0777), -1, "%s: %s", to, strerror(errno));
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	cr_assert_eq(write(fd, extra, strlen(extra)), (ssize_t)strlen(extra));
	close(fd);
	free(text);
}

/* The number after key ("next: ") in text. */
static long
text_number(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	uint64_t v;

	cr_assert_not_null(p, "no %s in:\n%s", key, text);
	cr_assert_eq(number_scan(p + strlen(key), LONG_MAX, &v, NULL), 0,
	    "%s", p);
	return (long)v;
}

/* The "next:" and "attempts:" of an entry's state file. */
static void
state_fields(const char *id, long *attempts, long *next)
{
	char path[1100], *text;
	size_t len;

	state_path(id, path, sizeof(path));
	text = read_file(path, &len);
	*attempts = text_number(text, "attempts: ");
	*next = text_number(text, "next: ");
	free(text);
}

Test(listq, flush_and_requeue_stopped, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[QID_SIZE];
	long attempts, next;

	make_list("fr", 2);
	sink_start(&S, "rcpt-once m1@members.example 451 4.3.0 later\n", 0,
	    false);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n");
	daemon_start(&D, 1);
	post_id("fr", 0, id);
	wait_logged("status=deferred");
	cr_assert_eq(daemon_stop(&D), 0);
	state_fields(id, &attempts, &next);
	cr_assert(attempts == 1 && next > time(NULL) + 1800, "%ld %ld",
	    attempts, next);
	LQ(0, "flush", id);
	said(id, "flushed");
	state_fields(id, &attempts, &next);
	cr_assert(attempts == 1 && next == 0, "%ld %ld", attempts, next);
	LQ(0, "requeue", id);
	said(id, "requeued (attempt now, backoff reset)");
	state_fields(id, &attempts, &next);
	cr_assert(attempts == 0 && next == 0, "%ld %ld", attempts, next);
	LQ(0, "flush");
	daemon_start(&D, 1);
	wait_copies(2);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
}

Test(listq, requeue_running, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[QID_SIZE], want[256];

	make_list("rq", 2);
	sink_start(&S, "rcpt-once m1@members.example 451 4.3.0 later\n", 0,
	    false);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n");
	daemon_start(&D, 2);
	post_id("rq", 0, id);
	wait_logged("status=deferred");
	LQ(0, "hold", id);
	LQ(0, "requeue", id);
	said(id, "requeued (attempt now, backoff reset)");
	snprintf(want, sizeof(want), "%s: requeued (attempt now, backoff "
	    "reset) %s", id, by_me());
	wait_copies(2);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	cr_assert_eq(log_count(&D, want), 1);
	LQ(66, "requeue", NO_SUCH_ID);
	LQ(64, "requeue", "not-an-id");
}

static bool
pidfile_says(void *arg)
{
	return spool_pid() == *(long *)arg;
}

/* listq holding the lock keeps listqd out, and listqd keeps listq out. */
Test(listq, lock_excludes_listqd_and_back, .init = setup, .fini = teardown,
    .timeout = 90)
{
	const char *const args[] = { "delete", "-", NULL };
	char a[QID_SIZE], b[QID_SIZE], err[4096], want[256], path[1024];
	int in, out;
	pid_t pid;
	long lp;

	make_list("lk", 1);
	post_id("lk", 0, a);
	pid = listq_start(&in, &out, args);
	lp = (long)pid;
	cr_assert(wait_until(pidfile_says, &lp, 10000), "listq did not take "
	    "the spool lock");
	daemon_config(&D, unused_port(), NULL);
	cr_assert_eq(daemon_run_once(D.conf, 1, err, sizeof(err)), 75, "%s",
	    err);
	snprintf(want, sizeof(want), "in use by pid %ld", lp);
	HAS(err, want);
	cr_assert_eq(write(in, a, strlen(a)), (ssize_t)strlen(a));
	cr_assert_eq(write(in, "\n", 1), 1);
	out_free(&O);
	cr_assert_eq(listq_finish(pid, in, out, &O), 0, "%s", O.out);
	said(a, "deleted");
	cr_assert(!in_queue(a));

	post_id("lk", 1, b);
	daemon_start(&D, 1);
	snprintf(path, sizeof(path), "%s/control", T.spool);
	cr_assert_eq(unlink(path), 0);
	LQ(75, "hold", b);
	HAS(O.err, "does not answer; nothing was changed");
	cr_assert(in_queue(b), "listq acted while listqd held the lock");
}

static void
file_has(const char *list, const char *file, const char *want, bool yes)
{
	char path[1024], *text;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s/%s", T.lists, list, file);
	text = access(path, F_OK) == 0 ? read_file(path, &len) : strdup("");
	if (yes)
		HAS(text, want);
	else
		HASNT(text, want);
	free(text);
}

Test(listq, lists_and_members, .init = setup, .fini = teardown,
    .timeout = 60)
{
	LQ(0, "newlist", "rho@example.org", "owner@example.org",
	    "o2@Example.ORG", "o2@example.org");
	HAS(O.out, "list rho created");
	LQ(73, "newlist", "rho@example.org", "x@example.org");
	LQ(65, "newlist", "Rho2@example.org", "x@example.org");
	LQ(65, "newlist", "rho3@example.org", "not an address");
	LQ(0, "lists", "--json");
	assert_json(O.out, "[(l['name'], l['address'], l['members'], "
	    "l['owners']) for l in d['lists']] == [('rho', 'rho@example.org', "
	    "0, 2)]");
	LQ(0, "members", "rho", "add", "a@x.example", "b@Y.Example",
	    "b@y.example", "c@x.example");
	HAS(O.out, "rho: 3 added");
	LQ(0, "members", "rho", "add", "A@x.example", "a@X.EXAMPLE");
	HAS(O.out, "rho: 1 added, 1 already members");
	LQ(65, "members", "rho", "add", "good@x.example", "bad@@x.example");
	HAS(O.err, "bad@@x.example: not a valid address");
	file_has("rho", "members", "good@", false);
	LQ(0, "members", "rho", "disable", "c@x.example");
	file_has("rho", "disabled", "c@x.example", true);
	LQ(66, "members", "rho", "disable", "zzz@x.example");
	LQ(0, "members", "rho", "list", "--json");
	assert_json(O.out, "d['count'] == 4 and [m['address'] for m in "
	    "d['members'] if not m['enabled']] == ['c@x.example'] and "
	    "[m['address'] for m in d['members']] == ['a@x.example', "
	    "'b@Y.Example', 'c@x.example', 'A@x.example']");
	LQ(0, "members", "rho");
	HAS(O.out, "c@x.example (disabled)\n");
	LQ(66, "members", "rho", "enable", "C@x.example");
	HAS(O.err, "C@x.example is not a member");
	LQ(0, "members", "rho", "enable", "c@X.Example");
	file_has("rho", "disabled", "c@x.example", false);
	LQ(66, "members", "rho", "remove", "a@x.example", "nope@x.example");
	file_has("rho", "members", "\na@x.example", false);
	file_has("rho", "members", "A@x.example", true);
	LQ(67, "members", "nosuch", "list");
	LQ(0, "lists");
	HAS(O.out, "rho@example.org");

	post("rho", 0);
	LQ(75, "rmlist", "rho");
	HAS(O.err, "list rho has 1 entry queued or held");
	LQ(0, "rmlist", "--force", "rho");
	HAS(O.out, "list rho removed");
	LQ(0, "lists", "--json");
	assert_json(O.out, "d['lists'] == []");
	LQ(67, "rmlist", "rho");
}

static void
write_set(const char *path, char set, size_t n)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fprintf(f, "# set %c\n", set);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%c%zu@%c.example\n", set, i, set);
	cr_assert_eq(fclose(f), 0);
	chmod(path, 0644);
}

#define BIG		100000
#define BIG_POSTS	8		/* at least */
#define BIG_POSTS_MAX	40

static bool
expanded(void *id)
{
	char path[1100];

	state_path(id, path, sizeof(path));
	return access(path, F_OK) == 0;
}

/*
 * Which set a state file's recipients are: 'a', 'b', or 0 for a mix.
 * Line by line: a strstr() over the rest of the file per recipient is
 * quadratic under AddressSanitizer, which measures the whole haystack
 * at every call.
 */
static char
state_set(const char *path)
{
	size_t len, n = 0;
	char *text = read_file(path, &len), *p = text, set = 0, c;

	while ((p = strchr(p, '\n')) != NULL) {
		if (strncmp(++p, "rcpt: ", 6) != 0)
			continue;
		p = strchr(p + 6, ' ') + 1;	/* past the state */
		p = strchr(p, ' ') + 1;		/* the code */
		p = strchr(p, ' ') + 1;		/* the dsn */
		c = *p;
		if (set == 0)
			set = c;
		if (c != set) {
			free(text);
			return 0;
		}
		n++;
	}
	free(text);
	return (char)(n == BIG ? set : 0);
}

/* Imports the two sets in turn until the stop file appears. */
static void __attribute__((noreturn))
importer(const char *fa, const char *fb, const char *stop)
{
	struct out o;
	int k;

	for (k = 1; k < 1000 && access(stop, F_OK) == -1; k++)
		if (listq(&o, "members", "big", "import", k % 2 ? fb : fa,
		    (char *)NULL) != 0)
			_exit(1);
	_exit(0);
}

/*
 * members import of 100,000 addresses, alternating between two disjoint
 * sets as fast as listq goes, while the pool expands posts to that list
 * (each post made due at once by listq flush; with the relay down the
 * recipient snapshot stays in the state file): every post's recipients
 * are all of one set or all of the other, never a mix.  It posts until
 * both sets have been seen, so the race really happened.
 */
Test(listq, members_import_is_atomic, .init = setup, .fini = teardown,
    .timeout = 300)
{
	char fa[1024], fb[1024], stop[1024], path[1100], id[QID_SIZE];
	size_t seen[2] = { 0, 0 };
	pid_t child;
	char set;
	int k;

	snprintf(fa, sizeof(fa), "%s.set-a", T.spool);
	snprintf(fb, sizeof(fb), "%s.set-b", T.spool);
	snprintf(stop, sizeof(stop), "%s.stop", T.spool);
	unlink(stop);
	write_set(fa, 'a', BIG);
	write_set(fb, 'b', BIG);
	make_list("big", 0);
	LQ(0, "members", "big", "import", fa);
	HAS(O.out, "big: 100000 members imported");
	daemon_config(&D, unused_port(), "smarthost_backoff = 1h\n");
	daemon_start(&D, 4);
	if ((child = fork()) == 0)
		importer(fa, fb, stop);
	for (k = 0; k < BIG_POSTS_MAX && (k < BIG_POSTS || seen[0] == 0 ||
	    seen[1] == 0); k++) {
		post_id("big", k, id);
		LQ(0, "flush", id);
		cr_assert(wait_until(expanded, id, 60000), "post %d was not "
		    "expanded", k);
		state_path(id, path, sizeof(path));
		cr_assert_neq(set = state_set(path), 0, "post %d (%s) went to "
		    "a mix of the old and the new members", k, id);
		seen[set == 'b']++;
	}
	close(open(stop, O_WRONLY | O_CREAT, 0644));
	cr_assert_eq(reap_bounded(child, 120000), 0, "an import failed");
	cr_log_info("%d posts: %zu to one set, %zu to the other", k, seen[0],
	    seen[1]);
	cr_assert(seen[0] > 0 && seen[1] > 0, "every post saw the same set: "
	    "the imports never raced the expansions");
}

/* The command between the outer quotes of an alias line, unquoted. */
static void
alias_command(const char *text, const char *key, char *out, size_t len)
{
	const char *p = strstr(text, key);
	size_t n = 0;

	cr_assert_not_null(p, "no alias %s in:\n%s", key, text);
	cr_assert_not_null(p = strchr(p, '"'));
	for (p++; *p != '"' && *p != '\0' && n + 1 < len; p++) {
		if (*p == '\\')
			p++;
		out[n++] = *p;
	}
	out[n] = '\0';
}

Test(listq, aliases_postfix_and_exim, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char odd[] = "/opt/it's \"my\" lists/listq-wrapper";
	char cmd[1024], script[1200];
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	struct out o;

	make_list("alpha", 1);
	make_list("beta.x", 1);
	LQ(0, "aliases", "--wrapper", "/usr/lib/listq/listq-wrapper");
	HAS(O.out, "alpha:                   \"|/usr/lib/listq/listq-wrapper "
	    "post alpha\"\n");
	HAS(O.out, "alpha-owner:             \"|/usr/lib/listq/listq-wrapper "
	    "owner alpha\"\n");
	HAS(O.out, "beta.x-bounces:          \"|/usr/lib/listq/listq-wrapper "
	    "bounces beta.x\"\n");
	LQ(0, "aliases", "--wrapper", odd);
	alias_command(O.out, "alpha-owner:", cmd, sizeof(cmd));
	cr_assert_eq(cmd[0], '|');
	snprintf(script, sizeof(script), "printf '%%s\\n' %s", cmd + 1);
	run_prog(argv, AS_ME, NULL, 0, &o);
	cr_assert_str_eq(o.out, "/opt/it's \"my\" lists/listq-wrapper\nowner\n"
	    "alpha\n", "sh took %s as:\n%s", cmd, o.out);
	out_free(&o);
	LQ(0, "aliases", "--mta", "postfix", "--wrapper", "/a b/w");
	alias_command(O.out, "alpha:", cmd, sizeof(cmd));
	cr_assert_str_eq(cmd, "|'/a b/w' post alpha");
	LQ(64, "aliases", "--mta", "qmail");
}

/*
 * Exim's and OpenSMTPD's guides route the lists' domain to the wrapper
 * themselves: what they look up is the lists, by name (the lsearch file
 * of Exim's router) and by address, every role (OpenSMTPD's rcpt-to
 * table), each on a line of its own and nothing else but comments.
 */
Test(listq, aliases_exim_and_opensmtpd, .init = setup, .fini = teardown,
    .timeout = 60)
{
	make_list("alpha", 1);
	make_list("beta.x", 1);
	LQ(0, "aliases", "--mta", "exim");
	HAS(O.out, "\nalpha\n");
	cr_assert_str_eq(strstr(O.out, "\nalpha\n") + 1, "alpha\nbeta.x\n",
	    "exim: %s", O.out);
	LQ(0, "aliases", "--mta", "opensmtpd");
	HAS(O.out, "\nalpha@");
	cr_assert_str_eq(strstr(O.out, "\nalpha@") + 1,
	    "alpha@example.org\nalpha-owner@example.org\n"
	    "alpha-bounces@example.org\nalpha-request@example.org\n"
	    "beta.x@example.org\nbeta.x-owner@example.org\n"
	    "beta.x-bounces@example.org\nbeta.x-request@example.org\n",
	    "opensmtpd: %s", O.out);
	LQ(0, "aliases", "--format", "exim");	/* the older name */
	HAS(O.out, "\nbeta.x\n");
}

/* A file in the spool that belongs to someone else. */
static void
foreign_file(char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/hold/intruder", T.spool);
	cr_assert_neq(fd = open(path, O_WRONLY | O_CREAT, 0600), -1);
	close(fd);
	cr_assert_eq(chown(path, T.stranger_uid, T.stranger_gid), 0);
}

/* check, as anyone may run it: configuration, lists, daemon, relay. */
Test(listq, check_finds_config_daemon_relay_faults, .init = setup,
    .fini = teardown, .timeout = 90)
{
	char conf[1100], want[1200];
	int port = unused_port();

	make_list("ck", 1);
	daemon_config(&D, port, NULL);
	LQ(1, "-f", D.conf, "check", "--wrapper", T.wrapper);
	HAS(O.out, "ok: spool ");
	snprintf(want, sizeof(want), "ok: configuration %s", D.conf);
	HAS(O.out, want);
	HAS(O.out, "ok: list ck: 1 members (0 disabled), 1 owner");
	HAS(O.out, "error: listqd does not answer");
	snprintf(want, sizeof(want), "error: relay 127.0.0.1:%d: Connection "
	    "refused", port);
	HAS(O.out, want);
	HAS(O.out, T.root ? "ok: wrapper " : "want 0 (root)");

	snprintf(conf, sizeof(conf), "%s.bad.conf", T.spool);
	copy_file(D.conf, conf, "frobnicate = 1\n");
	LQ(1, "-f", conf, "check", "--wrapper", T.wrapper);
	HAS(O.out, "frobnicate: unknown key");

	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	LQ(T.root ? 0 : 1, "-f", D.conf, "check", "--wrapper", T.wrapper);
	snprintf(want, sizeof(want), "ok: listqd (pid %ld) answers",
	    (long)D.pid);
	HAS(O.out, want);
	snprintf(want, sizeof(want), "ok: relay 127.0.0.1:%d answers EHLO: 250",
	    S.port);
	HAS(O.out, want);
	if (T.root)
		HASNT(O.out, "error:");
}

/* check, root only: the wrapper's install and a spool file's owner. */
Test(listq, check_finds_wrapper_and_owner_faults, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char bad[1024], badw[1100], want[1200];

	if (!T.root)
		cr_skip_test("needs root: a root-owned wrapper, a file of "
		    "another uid");
	make_list("ck", 1);
	daemon_config(&D, unused_port(), NULL);
	snprintf(bad, sizeof(bad), "%s.badmode", T.spool);
	snprintf(badw, sizeof(badw), "%s/listq-wrapper", bad);
	cr_assert(mkdir(bad, 0755) == 0 || errno == EEXIST, "%s: %s", bad,
	    strerror(errno));
	copy_file(T.wrapper, badw, "");
	cr_assert_eq(chown(badw, 0, T.caller_gid), 0);
	cr_assert_eq(chmod(badw, 0755), 0);
	LQ(1, "-f", D.conf, "check", "--wrapper", badw);
	snprintf(want, sizeof(want), "error: wrapper %s: mode 0755, want 0750 "
	    "with cap_setuid,cap_setgid=ep, or 4750", badw);
	HAS(O.out, want);
	LQ(1, "-f", D.conf, "check", "--wrapper", T.setuid_wrapper);
	HASNT(O.out, "error: wrapper");
	snprintf(want, sizeof(want), "ok: wrapper %s: root:%lu, mode 4750",
	    T.setuid_wrapper, (unsigned long)T.caller_gid);
	HAS(O.out, want);

	foreign_file(bad, sizeof(bad));
	LQ(1, "-f", D.conf, "check", "--wrapper", T.wrapper);
	snprintf(want, sizeof(want), "error: spool file %s: uid:gid %lu:%lu",
	    bad, (unsigned long)T.stranger_uid, (unsigned long)T.stranger_gid);
	HAS(O.out, want);
	unlink(bad);
}

Test(listq, metrics_and_counters_running, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char extra[256], want[1024];
	int down = unused_port();

	make_list("mx", 2);
	sink_start(&S, "rcpt-once m1@members.example 451 4.3.0 later\n", 0,
	    false);
	daemon_config(&D, S.port, NULL);
	snprintf(extra, sizeof(extra), "smarthost = 127.0.0.1:%d, "
	    "127.0.0.1:%d\n", down, S.port);
	daemon_config(&D, S.port, extra);
	daemon_start(&D, 2);
	for (int i = 0; i < 5; i++)
		post("mx", i);
	wait_copies(10);
	cr_assert(wait_until(spool_empty, NULL, WAIT_MS));
	LQ(0, "metrics");
	snprintf(want, sizeof(want), "m['listq_up'] == 1 and "
	    "m['listq_deliveries_total{status=\"sent\"}'] == 10 and "
	    "m['listq_deliveries_total{status=\"deferred\"}'] == 1 and "
	    "m['listq_deliveries_total{status=\"failed\"}'] == 0 and "
	    "m['listq_delivery_latency_seconds_count'] == 10 and "
	    "m['listq_delivery_latency_seconds_bucket{le=\"+Inf\"}'] == 10 and "
	    "m['listq_delivery_latency_seconds_bucket{le=\"1\"}'] <= 10 and "
	    "m['listq_relay_errors_total'] >= 1 and "
	    "m['listq_queue_entries{state=\"queued\"}'] == 0 and "
	    "m['listq_workers{state=\"running\"}'] == 2 and "
	    "m['listq_start_time_seconds'] > 0");
	assert_prom(O.out, want);
	LQ(0, "status", "--json");
	snprintf(want, sizeof(want), "d['deliveries']['minute']['sent'] == 10 "
	    "and d['deliveries']['hour']['deferred'] == 1 and "
	    "d['deliveries']['total']['relay_errors'] >= 1 and "
	    "d['relay']['last'].endswith(':%d')", S.port);
	assert_json(O.out, want);
	kill(D.pid, SIGHUP);
	cr_assert(log_wait(&D, "configuration reloaded", 1, WAIT_MS));
	LQ(0, "metrics");
	assert_prom(O.out, "m['listq_deliveries_total{status=\"sent\"}'] "
	    "== 10");
}

Test(listq, metrics_and_status_stopped, .init = setup, .fini = teardown,
    .timeout = 60)
{
	make_list("ms", 1);
	post("ms", 0);
	post("ms", 1);
	LQ(0, "metrics");
	assert_prom(O.out, "m['listq_up'] == 0 and "
	    "m['listq_queue_entries{state=\"queued\"}'] == 2 and "
	    "m['listq_oldest_entry_age_seconds'] >= 0 and "
	    "'listq_deliveries_total{status=\"sent\"}' not in m");
	LQ(0, "status");
	HAS(O.out, "not running");
}

#define SILENT_CLIENTS	16	/* CTL_PENDING, worker/master.h */

/*
 * Clients that connect to the control socket and never ask: the master
 * does not wait on them.  With CTL_PENDING of them waiting, a newcomer
 * is told "busy" at once (listq status: "not answering"); each silent
 * one is dropped after CTL_WAIT (5 s), and then listq is served again.
 * The master waits for the deadline without spinning: the clients come
 * just after a second begins, so that a master keeping them into the
 * second after their deadline would spin (poll with no timeout) for
 * most of that second -- switched out hundreds of times, where waiting
 * it wakes a few times per client (a count, not a CPU time).
 */
Test(listq, silent_control_clients_dropped, .init = setup,
    .fini = teardown, .timeout = 90)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 15 };
	struct timespec ts, ms = { .tv_nsec = 1000000 };
	int fds[SILENT_CLIENTS], i;
	uint64_t woke;
	char c;

	daemon_config(&D, unused_port(), NULL);
	daemon_start(&D, 1);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control", T.spool);
	for (i = 0; i < 2000; i++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		if (ts.tv_nsec < 50000000)
			break;
		nanosleep(&ms, NULL);
	}
	woke = proc_wakeups(D.pid);
	for (i = 0; i < SILENT_CLIENTS; i++) {
		fds[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		cr_assert_neq(fds[i], -1);
		cr_assert_eq(connect(fds[i], (struct sockaddr *)&sun,
		    sizeof(sun)), 0, "%s: %s", sun.sun_path, strerror(errno));
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	LQ(0, "status");
	HAS(O.out, "not answering");
	for (i = 0; i < SILENT_CLIENTS; i++) {
		cr_assert_eq(recv(fds[i], &c, 1, 0), 0, "silent client %d "
		    "not dropped: %s", i, strerror(errno));
		close(fds[i]);
	}
	woke = proc_wakeups(D.pid) - woke;
	cr_log_info("the master woke %lu times", (unsigned long)woke);
	cr_assert_lt(woke, 120, "the master woke %lu times while the clients "
	    "waited: a spin", (unsigned long)woke);
	LQ(0, "status");
	HASNT(O.out, "not answering");
}
