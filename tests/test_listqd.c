/*
 * SPDX-License-Identifier: ISC
 *
 * listqd end to end on loopback: the built wrapper enqueues, the daemon
 * (a separate process, its own master and workers) delivers into the
 * test sink, and each test compares what the sink received with what
 * was enqueued -- copies per recipient, bodies byte for byte modulo the
 * list headers -- and reads the daemon's log for what it did.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
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

#include "daemon.h"
#include "harness.h"
#include "number.h"
#include "qid.h"
#include "spool.h"

#define WAIT_MS		30000

static struct sink S;
static struct daemon D;

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&D, 0, sizeof(D));
}

static void
teardown(void)
{
	daemon_teardown();
}

struct want {
	struct sink	*s;
	size_t		 copies;	/* recipients summed over transactions */
};

static size_t
copies(const struct sink *s)
{
	struct txn *t;
	size_t n = sink_load(s, &t), i, c = 0;

	for (i = 0; i < n; i++)
		c += t[i].nrcpt;
	txns_free(t, n);
	return c;
}

static bool
have_copies(void *arg)
{
	struct want *w = arg;

	return copies(w->s) >= w->copies;
}

static bool
queue_empty(void *arg)
{
	(void)arg;
	return queue_count(NULL, 0) == 0;
}

/*
 * Counts copies per (message, recipient) from the sink's records:
 * count[i * members + m] for msg-i to member m.
 */
static unsigned int *
tally(const struct sink *s, int msgs, int members)
{
	unsigned int *count = calloc((size_t)msgs * (size_t)members,
	    sizeof(*count));
	struct txn *t;
	size_t n = sink_load(s, &t), i, k;
	uint64_t msg, m;
	char *p;

	for (i = 0; i < n; i++) {
		cr_assert_not_null(p = strstr(t[i].data, "Subject: msg-"));
		cr_assert_not_null(text_scan(p + 13, (uint64_t)msgs - 1, &msg,
		    ""), "unknown message %.20s", p);
		for (k = 0; k < t[i].nrcpt; k++) {
			cr_assert(strncmp(t[i].rcpt[k], "<m", 2) == 0 &&
			    text_scan(t[i].rcpt[k] + 2, (uint64_t)members - 1,
			    &m, "@") != NULL, "%s", t[i].rcpt[k]);
			count[msg * (uint64_t)members + m]++;
		}
	}
	txns_free(t, n);
	return count;
}

static void
assert_each_once(const struct sink *s, int msgs, int members)
{
	unsigned int *count = tally(s, msgs, members);
	int i;

	for (i = 0; i < msgs * members; i++)
		cr_assert_eq(count[i], 1, "msg-%04d to m%d arrived %u times",
		    i / members, i % members, count[i]);
	free(count);
}

static void
deliver_all(int msgs, int members)
{
	struct want w = { &S, (size_t)(msgs * members) };

	cr_assert(wait_until(have_copies, &w, WAIT_MS), "only %zu of %zu "
	    "copies arrived", copies(&S), w.copies);
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS), "%zu entries left",
	    queue_count(NULL, 0));
}

Test(listqd, each_recipient_exactly_once, .init = setup, .fini = teardown,
    .timeout = 120)
{
	make_list("alpha", 10);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 2);
	for (int i = 0; i < 20; i++)
		post_numbered("alpha", i);
	deliver_all(20, 10);
	assert_each_once(&S, 20, 10);
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, "status=sent"), 200);
}

/* The relay gets the spooled message byte for byte plus the list headers. */
Test(listqd, message_reaches_relay_unchanged, .init = setup,
    .fini = teardown, .timeout = 60)
{
	static const char msg[] = "Return-Path: <x@example.net>\n"
	    "From: a@example.net\nTo: one@example.net\nTo: two@example.net\n"
	    "Cc: c@example.net\nCc: d@example.net\nSubject: exact\n\n"
	    "line\n.dot line\n..two dots\n\ttab\nlast line without newline";
	char want[4096], *p = want;
	struct result r;
	struct txn *t;
	size_t i, n;

	make_list("beta", 1);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(run_simple("post", "beta", msg, strlen(msg), &r), 0);
	deliver_all(1, 1);
	p += list_headers(want, sizeof(want), "beta", NULL);
	for (i = 0; msg[i] != '\0'; i++) {
		if (msg[i] == '\n')
			*p++ = '\r';
		*p++ = msg[i];
	}
	p += sprintf(p, "\r\n");
	n = sink_load(&S, &t);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(t[0].from, "<beta-bounces@example.org>");
	cr_assert_eq(t[0].len, (size_t)(p - want), "got %zu bytes, want %zu:"
	    "\n%s", t[0].len, (size_t)(p - want), t[0].data);
	cr_assert_eq(memcmp(t[0].data, want, t[0].len), 0, "got:\n%s",
	    t[0].data);
	txns_free(t, n);
}

static bool
worker_lines_seen(void *arg)
{
	return log_count(arg, "status=sent") >= 40;
}

/* With 4 workers each entry is delivered by the owner of its bucket. */
Test(listqd, owner_worker_delivers, .init = setup, .fini = teardown,
    .timeout = 60)
{
	char *log, *line, *save, id[QID_SIZE];
	unsigned int checked = 0;
	const char *q;
	uint64_t w;
	size_t len;

	make_list("gamma", 1);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 4);
	for (int i = 0; i < 40; i++)
		post_numbered("gamma", i);
	deliver_all(40, 1);
	cr_assert(wait_until(worker_lines_seen, &D, WAIT_MS));
	log = daemon_log(&D);
	for (line = strtok_r(log, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "status=sent") == NULL)
			continue;
		/* "listqd/workerW: ID: ..." */
		cr_assert(strncmp(line, "listqd/worker", 13) == 0 &&
		    (q = text_scan(line + 13, UINT_MAX, &w, ": ")) != NULL,
		    "%s", line);
		for (len = 0; isalnum((unsigned char)q[len]); len++)
			continue;
		cr_assert(len > 0 && len < sizeof(id) && q[len] == ':', "%s",
		    line);
		memcpy(id, q, len);
		id[len] = '\0';
		cr_assert_eq(qid_bucket_owner(qid_bucket(id), 4), w,
		    "%s (bucket %02x) delivered by worker %u", id,
		    qid_bucket(id), (unsigned int)w);
		checked++;
	}
	free(log);
	cr_assert_eq(checked, 40);
}

Test(listqd, second_daemon_refused, .init = setup, .fini = teardown,
    .timeout = 60)
{
	char err[4096], want[64];

	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(daemon_run_once(D.conf, 1, err, sizeof(err)), 75, "%s",
	    err);
	snprintf(want, sizeof(want), "in use by pid %ld", (long)D.pid);
	cr_assert_not_null(strstr(err, want), "%s", err);
}

Test(listqd, bad_config_refused, .init = setup, .fini = teardown,
    .timeout = 60)
{
	char err[4096];

	daemon_config(&D, 25, "max_backoff = 1h\nfrobnicate = yes\n");
	cr_assert_eq(daemon_run_once(D.conf, 1, err, sizeof(err)), 78, "%s",
	    err);
	cr_assert_not_null(strstr(err, ".conf:10: frobnicate: unknown key"),
	    "%s", err);
	daemon_config(&D, 25, "min_backoff = soon\n");
	cr_assert_eq(daemon_run_once(D.conf, 1, err, sizeof(err)), 78);
	cr_assert_not_null(strstr(err, ":9: min_backoff: not a duration"),
	    "%s", err);
}

/* 3 of 10 get 451 once: the 7 receive once, the 3 on the retry. */
Test(listqd, partial_451_retried_without_duplicates, .init = setup,
    .fini = teardown, .timeout = 60)
{
	make_list("delta", 10);
	sink_start(&S, "rcpt-once m[123]@members.example 451 4.3.0 later\n", 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("delta", 0);
	deliver_all(1, 10);
	assert_each_once(&S, 1, 10);
	cr_assert_eq(log_count(&D, "status=deferred"), 3);
	cr_assert_eq(log_count(&D, "status=sent"), 10);
}

/* A transaction from the null sender to rcpt: a DSN; its data, or NULL. */
static char *
find_dsn(const struct sink *s, const char *rcpt, size_t *count)
{
	struct txn *t;
	size_t n = sink_load(s, &t), i;
	char *data = NULL;

	*count = 0;
	for (i = 0; i < n; i++)
		if (strcmp(t[i].from, "<>") == 0 && t[i].nrcpt == 1 &&
		    strcmp(t[i].rcpt[0], rcpt) == 0 && (*count)++ == 0)
			data = strdup(t[i].data);
	txns_free(t, n);
	return data;
}

/*
 * Mixed 550/451/250 in one transaction, each handled per recipient: the
 * 550s are logged once and never retried, and reported in one DSN.
 */
Test(listqd, permanent_failures_reported_not_retried, .init = setup,
    .fini = teardown, .timeout = 60)
{
	size_t dsns;
	char *dsn;

	make_list("eps", 6);
	sink_start(&S, "rcpt m[01]@members.example 550 5.1.1 no such user\n"
	    "rcpt-once m2@members.example 451 4.2.0 busy\n", 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("eps", 0);
	{
		struct want w = { &S, 5 };	/* 4 members and the DSN */

		cr_assert(wait_until(have_copies, &w, WAIT_MS));
	}
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS));
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(copies(&S), 5);
	cr_assert_eq(log_count(&D, "status=failed (550 5.1.1 no such user)"),
	    2, "each 550 logged once, never retried");
	cr_assert_eq(log_count(&D, "status=deferred"), 1);
	cr_assert_eq(log_count(&D, "sender non-delivery notification"), 1);
	dsn = find_dsn(&S, "<eps-bounces@example.org>", &dsns);
	cr_assert_eq(dsns, 1);
	cr_assert_not_null(strstr(dsn, "Final-Recipient: rfc822; "
	    "m0@members.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"),
	    "%s", dsn);
	cr_assert_not_null(strstr(dsn, "Final-Recipient: rfc822; "
	    "m1@members.example\r\n"));
	cr_assert_null(strstr(dsn, "m2@members.example"), "m2 was delivered");
	free(dsn);
	cr_assert_eq(tmp_count(), 0);
}

/* 421 at DATA and a connection dropped mid-DATA: retried, nothing lost. */
Test(listqd, dropped_connections_retried, .init = setup, .fini = teardown,
    .timeout = 60)
{
	make_list("zeta", 3);
	sink_start(&S, "close-once DATA 421\ndrop-once DATA 40\n", 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	for (int i = 0; i < 4; i++)
		post_numbered("zeta", i);
	deliver_all(4, 3);
	assert_each_once(&S, 4, 3);
}

/* A post that already carries this list's X-Loop goes to the owners. */
Test(listqd, looping_post_goes_to_owners, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char msg[] = "X-Loop: eta@example.org\nSubject: loop\n\n"
	    "x\n";
	struct want w = { &S, 1 };
	struct result r;
	struct txn *t;
	size_t n;

	make_list("eta", 5);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(run_simple("post", "eta", msg, strlen(msg), &r), 0);
	cr_assert(wait_until(have_copies, &w, WAIT_MS));
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS));
	n = sink_load(&S, &t);
	cr_assert_eq(n, 1);
	cr_assert_eq(t[0].nrcpt, 1);
	cr_assert_str_eq(t[0].rcpt[0], "<owner@example.org>");
	txns_free(t, n);
	cr_assert_eq(log_count(&D, "sent to the owners instead of the "
	    "members"), 1);
}

/* Wake-ups so far of pid and its children (the workers). */
static uint64_t
pool_wakeups(pid_t pid)
{
	pid_t w[64];
	ssize_t n = proc_children(pid, w, 64), i;
	uint64_t total = proc_wakeups(pid);

	for (i = 0; i < n; i++)
		total += proc_wakeups(w[i]);
	return total;
}

/*
 * Relay down: the pool waits without spinning -- over 3 more rounds of
 * retries (their log lines mark the period, not a clock) it wakes a
 * bounded number of times, where a spinning loop would be switched out
 * thousands of times; relay up: all delivered.
 */
Test(listqd, smarthost_down_then_up, .init = setup, .fini = teardown,
    .timeout = 90)
{
	int port = unused_port();
	uint64_t before, woke;
	size_t seen;

	make_list("theta", 2);
	daemon_config(&D, port, NULL);
	daemon_start(&D, 2);
	for (int i = 0; i < 5; i++)
		post_numbered("theta", i);
	cr_assert(log_wait(&D, "no relay reachable", 1, WAIT_MS));
	seen = log_count(&D, "no relay reachable");
	before = pool_wakeups(D.pid);
	cr_assert(log_wait(&D, "no relay reachable", seen + 3, WAIT_MS));
	woke = pool_wakeups(D.pid) - before;
	cr_log_info("the pool woke %lu times", (unsigned long)woke);
	cr_assert_lt(woke, 120, "the pool woke %lu times in 3 rounds of "
	    "retries with the relay down: a spin", (unsigned long)woke);
	cr_assert_eq(queue_count(NULL, 0), 5);
	sink_start(&S, NULL, port, false);
	deliver_all(5, 2);
	assert_each_once(&S, 5, 2);
}

/* The pids of the workers of the master pid. */
static size_t
workers_of(pid_t master, pid_t *out, size_t max)
{
	ssize_t n = proc_children(master, out, max);

	return n > 0 ? (size_t)n : 0;
}

static pid_t killed;		/* the worker kill_worker_in_flight killed */

/* Is the (only) worker of D in the middle of an SMTP session? */
static bool
worker_delivering(void *arg)
{
	char path[64], title[256];
	pid_t pid;

	(void)arg;
	if (workers_of(D.pid, &pid, 1) != 1 || pid == killed)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	(void)text_read(path, title, sizeof(title));
	return strstr(title, "delivering") != NULL;
}

/* The killed worker is gone (reaped by the master). */
static bool
worker_gone(void *arg)
{
	pid_t pid;

	(void)arg;
	return workers_of(D.pid, &pid, 1) == 0 || pid != killed;
}

/* SIGKILLs the worker in mid-session and waits until it is gone. */
static pid_t
kill_worker_in_flight(void)
{
	cr_assert(wait_until(worker_delivering, NULL, WAIT_MS),
	    "the worker never started delivering");
	cr_assert_eq(workers_of(D.pid, &killed, 1), 1);
	daemon_expect_kills();
	cr_assert_eq(kill(killed, SIGKILL), 0);
	cr_assert(wait_until(worker_gone, NULL, WAIT_MS));
	return killed;
}

/* SIGKILL in mid-transaction: restarted, delivered, no second copy. */
Test(listqd, worker_killed_mid_transaction, .init = setup,
    .fini = teardown, .timeout = 90)
{
	make_list("iota", 5);
	sink_start(&S, "stall-once DOT 3\n", 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	for (int i = 0; i < 3; i++)
		post_numbered("iota", i);
	kill_worker_in_flight();
	deliver_all(3, 5);
	assert_each_once(&S, 3, 5);
	cr_assert_eq(log_count(&D, "killed by signal 9"), 1);
	cr_assert_eq(log_count(&D, "the worker delivering this entry died "
	    "(1 time)"), 1);
}

static bool
corrupt_has_entry(void *arg)
{
	(void)arg;
	return area_count(SPOOL_CORRUPT, NULL, 0) == 1;
}

static bool
quarantine_logged(void *arg)
{
	(void)arg;
	return log_count(&D, "moved to corrupt/: it crashed its worker 3 "
	    "times") == 1;
}

/* An entry whose delivery kills its worker 3 times goes to corrupt/. */
Test(listqd, poison_entry_quarantined, .init = setup, .fini = teardown,
    .timeout = 120)
{
	make_list("kappa", 1);
	sink_start(&S, "stall DOT 60\n", 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("kappa", 0);
	for (int i = 0; i < 3; i++)
		kill_worker_in_flight();
	cr_assert(wait_until(corrupt_has_entry, NULL, WAIT_MS),
	    "the poison entry was not quarantined");
	cr_assert_eq(queue_count(NULL, 0), 0);
	cr_assert(wait_until(quarantine_logged, NULL, WAIT_MS));
	cr_assert_eq(sink_count(&S), 0);
}

/* SIGTERM with a backlog: clean exit, the rest delivered after restart. */
Test(listqd, sigterm_with_backlog, .init = setup, .fini = teardown,
    .timeout = 120)
{
	size_t left;

	make_list("lambda", 2);
	sink_start(&S, "stall DOT 0.2\n", 0, false);
	daemon_config(&D, S.port, "max_messages_per_session = 2\n");
	for (int i = 0; i < 30; i++)
		post_numbered("lambda", i);
	daemon_start(&D, 1);
	cr_assert(wait_until(worker_delivering, NULL, WAIT_MS));
	cr_assert_eq(daemon_stop(&D), 0, "listqd did not exit 0 on SIGTERM");
	left = queue_count(NULL, 0);
	cr_assert(left > 0 && left < 30, "%zu entries left", left);
	cr_assert_eq(log_count(&D, "stopped"), 1);
	daemon_start(&D, 1);
	deliver_all(30, 2);
	assert_each_once(&S, 30, 2);
}

#define WRITERS		4
#define PER_WRITER	500

/* One MTA process enqueuing its share, as fast as it can. */
static void __attribute__((noreturn))
writer(int w)
{
	struct result r;
	char msg[256];
	int i, n;

	for (i = 0; i < PER_WRITER; i++) {
		n = snprintf(msg, sizeof(msg), "Subject: msg-%04d\n\nbody %d\n",
		    w * PER_WRITER + i, i);
		if (run_simple("post", "seed", msg, (size_t)n, &r) != 0)
			_exit(1);
	}
	_exit(0);
}

static bool
half_queued(void *arg)
{
	(void)arg;
	return copies(&S) + queue_count(NULL, 0) >= WRITERS * PER_WRITER / 2;
}

/*
 * The seed's fault, reproduced: 4 writers and the pool running together
 * for 2,000 messages, with a SIGHUP and a full restart in the middle:
 * zero duplicates, zero lost, and no ENOENT or EACCES anywhere in the log.
 */
Test(listqd, concurrent_writers_reload_and_restart, .init = setup,
    .fini = teardown, .timeout = 300)
{
	pid_t pids[WRITERS];
	int i;

	make_list("seed", 1);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 4);
	for (i = 0; i < WRITERS; i++)
		if ((pids[i] = fork()) == 0)
			writer(i);
	cr_assert(wait_until(half_queued, NULL, 120000));
	cr_assert_eq(kill(D.pid, SIGHUP), 0);
	cr_assert(log_wait(&D, "configuration reloaded", 1, WAIT_MS));
	cr_assert_eq(daemon_stop(&D), 0);
	daemon_start(&D, 4);
	for (i = 0; i < WRITERS; i++)
		cr_assert_eq(reap_bounded(pids[i], 240000), 0,
		    "writer %d failed", i);
	{
		struct want w = { &S, (size_t)WRITERS * PER_WRITER };

		cr_assert(wait_until(have_copies, &w, 120000), "%zu of %d",
		    copies(&S), WRITERS * PER_WRITER);
	}
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS));
	assert_each_once(&S, WRITERS * PER_WRITER, 1);
	cr_assert_eq(log_count(&D, "No such file"), 0);
	cr_assert_eq(log_count(&D, "Permission denied"), 0);
	cr_assert_eq(log_count(&D, "configuration reloaded"), 1);
	cr_assert_eq(log_count(&D, "status=sent"),
	    (size_t)WRITERS * PER_WRITER);
}

/*
 * subject_prefix lands at the start of the Subject's value, once; every
 * session reports TCP_NODELAY read back from its socket, also against a
 * relay offering CHUNKING (whose BDAT would otherwise stall).
 */
/* A session's line is logged once it ends: after the sink has the mail. */
static bool
session_logged(void *arg)
{
	return log_count(arg, "session: relay=") > 0;
}

Test(listqd, subject_prefix_and_socket_options, .init = setup,
    .fini = teardown, .timeout = 60)
{
	static const char msg[] = "From: a@example.net\nSubject: hello\n\nx\n";
	static const char tagged[] = "Subject: [mu] again\n\ny\n";
	struct result r;
	struct txn *t;
	size_t n;

	make_list("mu", 1);
	list_append("mu", "config", "subject_prefix = [mu]\n");
	sink_start(&S, NULL, 0, true);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(run_simple("post", "mu", msg, strlen(msg), &r), 0);
	cr_assert_eq(run_simple("post", "mu", tagged, strlen(tagged), &r), 0);
	{
		struct want w = { &S, 2 };

		cr_assert(wait_until(have_copies, &w, WAIT_MS));
	}
	n = sink_load(&S, &t);
	cr_assert_eq(n, 2);
	for (size_t i = 0; i < n; i++)
		cr_assert(strstr(t[i].data, "\r\nSubject: [mu] hello\r\n\r\nx\r\n")
		    != NULL || strstr(t[i].data, "\r\nSubject: [mu] again\r\n")
		    != NULL, "%s", t[i].data);
	txns_free(t, n);
	cr_assert(wait_until(session_logged, &D, WAIT_MS));
	cr_assert_gt(log_count(&D, "tcp_nodelay=on"), 0);
	cr_assert_eq(log_count(&D, "tcp_nodelay=off"), 0);
}

static bool
deferred_logged(void *arg)
{
	return log_count(arg, "status=deferred") > 0;
}

/* SIGUSR1 (listq flush): deferred entries are retried now. */
Test(listqd, flush_retries_deferred_now, .init = setup, .fini = teardown,
    .timeout = 60)
{
	make_list("nu", 2);
	sink_start(&S, "rcpt-once m1@members.example 451 4.3.0 later\n", 0,
	    false);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n");
	daemon_start(&D, 2);
	post_numbered("nu", 0);
	cr_assert(wait_until(deferred_logged, &D, WAIT_MS));
	sleep(1);
	cr_assert_eq(queue_count(NULL, 0), 1, "deferred for an hour");
	cr_assert_eq(kill(D.pid, SIGUSR1), 0);
	deliver_all(1, 2);
	assert_each_once(&S, 1, 2);
}

/*
 * Past max_queue_lifetime a deferred recipient fails (4.4.7) and the
 * sender gets a DSN saying so; before that, one delay warning.
 */
Test(listqd, lifetime_expires_deferred, .init = setup, .fini = teardown,
    .timeout = 60)
{
	size_t dsns, warnings;
	char *dsn, *warn;

	make_list("xi", 2);
	sink_start(&S, "rcpt m0@members.example 451 4.3.0 never\n", 0, false);
	daemon_config(&D, S.port, "max_queue_lifetime = 4s\n"
	    "delay_warning_time = 1s\n");
	daemon_start(&D, 1);
	post_numbered("xi", 0);
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS));
	{
		struct want w = { &S, 3 };	/* m1, the warning, the DSN */

		cr_assert(wait_until(have_copies, &w, WAIT_MS));
	}
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, "dsn=4.4.7, status=failed (delivery time "
	    "expired)"), 1);
	cr_assert_eq(log_count(&D, "sender delay notification"), 1,
	    "one delay warning per entry");
	cr_assert_eq(log_count(&D, "sender non-delivery notification"), 1);
	dsn = find_dsn(&S, "<xi-bounces@example.org>", &dsns);
	cr_assert_eq(dsns, 2, "a warning and a failure report");
	free(dsn);
	warn = NULL;
	{
		struct txn *t;
		size_t n = sink_load(&S, &t), i;

		for (i = 0, warnings = 0; i < n; i++)
			if (strstr(t[i].data, "Action: delayed") != NULL)
				warnings++;
			else if (warn == NULL &&
			    strstr(t[i].data, "Status: 4.4.7") != NULL)
				warn = strdup(t[i].data);
		txns_free(t, n);
	}
	cr_assert_eq(warnings, 1);
	cr_assert_not_null(warn, "no DSN with Status: 4.4.7");
	cr_assert_not_null(strstr(warn, "Final-Recipient: rfc822; "
	    "m0@members.example"));
	free(warn);
}

/* The master removes tmp/ files older than a day, and only those. */
Test(listqd, stale_tmp_files_removed, .init = setup, .fini = teardown,
    .timeout = 60)
{
	time_t then = time(NULL) - (time_t)2 * 86400;
	struct timespec old[2] = { { .tv_sec = then }, { .tv_sec = then } };
	char stale[1024], fresh[1024];
	int fd;

	snprintf(stale, sizeof(stale), "%s/tmp/1xXSlJ3KLo01NuHrmv", T.spool);
	snprintf(fresh, sizeof(fresh), "%s/tmp/1xXSlJ3KLo01NuHrmw", T.spool);
	cr_assert_neq(fd = open(stale, O_WRONLY | O_CREAT, 0600), -1);
	cr_assert_eq(futimens(fd, old), 0);
	close(fd);
	cr_assert_neq(fd = open(fresh, O_WRONLY | O_CREAT, 0600), -1);
	close(fd);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(access(stale, F_OK), -1, "a day-old tmp/ file was kept");
	cr_assert_eq(access(fresh, F_OK), 0, "a fresh tmp/ file was removed");
	cr_assert_eq(log_count(&D, "removed incomplete tmp/ file"), 1);
}

/* A reload that changes the pool size restarts it; nothing is lost. */
Test(listqd, reload_changes_pool_size, .init = setup, .fini = teardown,
    .timeout = 60)
{
	FILE *f;

	make_list("omicron", 3);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, "workers = 2\n");
	daemon_start(&D, 0);
	for (int i = 0; i < 10; i++)
		post_numbered("omicron", i);
	cr_assert_not_null(f = fopen(D.conf, "a"));
	fputs("workers = 3\n", f);
	fclose(f);
	cr_assert_eq(kill(D.pid, SIGHUP), 0);
	for (int i = 10; i < 20; i++)
		post_numbered("omicron", i);
	deliver_all(20, 3);
	assert_each_once(&S, 20, 3);
	cr_assert_eq(log_count(&D, "workers 2 -> 3, restarting the pool"), 1);
}

/* Disabled members stay in the list but get nothing. */
Test(listqd, disabled_members_skipped, .init = setup, .fini = teardown,
    .timeout = 60)
{
	struct txn *t;
	size_t n, i, k;

	make_list("pi", 5);
	list_append("pi", "disabled", "m1@members.example\nm3@MEMBERS.Example\n");
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("pi", 0);
	{
		struct want w = { &S, 3 };

		cr_assert(wait_until(have_copies, &w, WAIT_MS));
	}
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS));
	n = sink_load(&S, &t);
	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt; k++)
			cr_assert(strcmp(t[i].rcpt[k],
			    "<m1@members.example>") != 0 && strcmp(t[i].rcpt[k],
			    "<m3@members.example>") != 0,
			    "disabled member %s got the post", t[i].rcpt[k]);
	txns_free(t, n);
	cr_assert_eq(copies(&S), 3);
}

static bool
five_arrived(void *arg)
{
	(void)arg;
	return sink_count(&S) >= 5;
}

/*
 * SIGKILLs the only worker once the sink has 5 transactions, then waits
 * for at least copies recipients and an empty queue.
 */
static void
kill_after_five_then_drain(size_t copies)
{
	struct want w = { &S, copies };
	pid_t pid;

	cr_assert(wait_until(five_arrived, NULL, WAIT_MS));
	cr_assert_eq(workers_of(D.pid, &pid, 1), 1);
	daemon_expect_kills();
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert(wait_until(have_copies, &w, WAIT_MS));
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS));
}

/*
 * A worker killed in the middle of a long session: every transaction the
 * relay had acknowledged is already recorded, so at most the one in
 * flight is sent again (invariant 4), however long the session was.
 * One session, so that one transaction is in flight (with smtp_sessions
 * each session has its own, and each may be repeated).
 */
Test(listqd, kill_mid_session_repeats_at_most_one, .init = setup,
    .fini = teardown, .timeout = 120)
{
	unsigned int *count;
	size_t total = 0;
	int i;

	make_list("rho", 1);
	sink_start(&S, "stall DOT 0.1\n", 0, false);
	for (i = 0; i < 30; i++)
		post_numbered("rho", i);
	daemon_config(&D, S.port, "smtp_sessions = 1\n");
	daemon_start(&D, 1);
	kill_after_five_then_drain(30);
	count = tally(&S, 30, 1);
	for (i = 0; i < 30; i++) {
		cr_assert(count[i] >= 1, "msg-%04d lost", i);
		total += count[i];
	}
	free(count);
	cr_assert_leq(total, 31, "%zu copies of 30 messages: more than the "
	    "transaction in flight was repeated", total);
}

/*
 * The mbox envelope line that Postfix's local(8) puts before a piped
 * message is not part of it: the relay gets the message from its first
 * header on (else the "From " line would end the header section there).
 */
Test(listqd, envelope_from_line_dropped, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char msg[] = "From poster@example.net  Sun Nov 29 "
	    "01:59:13 2026\nReturn-Path: <poster@example.net>\n"
	    "Delivered-To: sigma@example.org\nSubject: piped\n\nbody\n";
	struct result r;
	struct txn *t;
	size_t n;

	make_list("sigma", 1);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(run_simple("post", "sigma", msg, strlen(msg), &r), 0);
	deliver_all(1, 1);
	n = sink_load(&S, &t);
	cr_assert_eq(n, 1);
	cr_assert_not_null(strstr(t[0].data, "X-Loop: sigma@example.org\r\n"
	    "Return-Path: <poster@example.net>\r\nDelivered-To: "
	    "sigma@example.org\r\nSubject: piped\r\n\r\nbody\r\n"), "%s",
	    t[0].data);
	cr_assert_null(strstr(t[0].data, "From poster"), "%s", t[0].data);
	txns_free(t, n);
}

/*
 * A worker killed in the middle of a fan-out (one post, 40 members, 4
 * recipients per transaction): each transaction the relay acknowledged
 * was appended to the entry's state as it ended, so the restarted worker
 * sends only what was not recorded -- at most the one transaction in
 * flight again, never a recipient of an acknowledged one (invariant 4).
 */
Test(listqd, kill_mid_fanout_repeats_at_most_one_transaction,
    .init = setup, .fini = teardown, .timeout = 120)
{
	unsigned int *count;
	size_t total = 0, chunk = (size_t)-1;
	int m;

	make_list("tau", 40);
	sink_start(&S, "stall DOT 0.2\n", 0, false);
	daemon_config(&D, S.port, "max_rcpts_per_transaction = 4\n");
	daemon_start(&D, 1);
	post_numbered("tau", 0);
	kill_after_five_then_drain(40);
	cr_assert_eq(log_count(&D, "killed by signal 9"), 1);
	count = tally(&S, 1, 40);
	for (m = 0; m < 40; m++) {
		cr_assert(count[m] >= 1 && count[m] <= 2, "m%d got %u copies",
		    m, count[m]);
		total += count[m];
		if (count[m] == 2 && chunk == (size_t)-1)
			chunk = (size_t)m / 4;
		cr_assert(count[m] == 1 || (size_t)m / 4 == chunk, "m%d, of "
		    "transaction %d, repeated besides transaction %zu", m,
		    m / 4, chunk);
	}
	free(count);
	cr_assert_leq(total, 44, "%zu copies to 40 members", total);
	cr_assert_eq(log_count(&D, "saving state"), 0);
}

static bool
one_left(void *arg)
{
	(void)arg;
	return queue_count(NULL, 0) == 1;
}

/* Entries of queue/ in the buckets before and after bucket b. */
static void
around_bucket(unsigned int b, size_t *before, size_t *after)
{
	char path[1024], name[3];
	struct dirent *de;
	unsigned int i;
	DIR *d;

	*before = *after = 0;
	for (i = 0; i < QID_BUCKETS; i++) {
		qid_bucket_name(i, name);
		snprintf(path, sizeof(path), "%s/queue/%s", T.spool, name);
		cr_assert_not_null(d = opendir(path), "%s", path);
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' && strchr(de->d_name, '.') ==
			    NULL && i != b)
				(*(i < b ? before : after))++;
		closedir(d);
	}
}

/*
 * A 421 ends a session in the middle of a batch.  The entry whose
 * transaction it cut short counts an attempt and backs off as before
 * (here an hour: production back-off); the entries after it, which the
 * relay never saw, count nothing and go in a new session at once.  One
 * worker takes its buckets in order from the first, so the entries in
 * buckets before the cut entry's are sent before it, those after it not.
 */
Test(listqd, session_cut_short_retries_untried_at_once, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char path[1024], id[64], *st, *slash;
	size_t before = 0, after = 0, len;
	struct want w = { &S, 0 };
	unsigned int b;
	int n = 1;

	make_list("cutter", 2);
	make_list("cutoff", 2);
	sink_start(&S, "from cutter-bounces@* close-once MAIL 421\n", 0,
	    false);
	/* A cut entry in the middle buckets, so that posts land on both
	 * sides of it soon: ids are random, the other ones are removed. */
	for (int tries = 0;; tries++) {
		cr_assert_lt(tries, 64, "no id in the middle buckets");
		post_numbered("cutter", 0);
		cr_assert_eq(queue_count(path, sizeof(path)), 1);
		cr_assert_not_null(slash = strrchr(path, '/'));
		strlcpy(id, slash, sizeof(id));
		b = qid_bucket(id + 1);
		if (b >= QID_BUCKETS / 4 && b < QID_BUCKETS * 3 / 4)
			break;
		cr_assert_eq(unlink(path), 0, "%s", path);
	}
	while ((before < 1 || after < 3) && n < 100) {
		post_numbered("cutoff", n++);
		around_bucket(b, &before, &after);
	}
	cr_assert(before >= 1 && after >= 3, "%d posts: %zu entries before "
	    "bucket %02x, %zu after", n - 1, before, b, after);
	/* One session: with more, the others carry what the cut one left. */
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n"
	    "smtp_sessions = 1\n");
	daemon_start(&D, 1);

	/* Every cutoff entry arrives, none deferred, the cut one waits. */
	w.copies = (size_t)(n - 1) * 2;
	cr_assert(wait_until(have_copies, &w, 20000), "%zu of %zu copies: "
	    "the entries after the cut waited for their back-off",
	    copies(&S), w.copies);
	cr_assert(wait_until(one_left, NULL, WAIT_MS));
	cr_assert_eq(log_count(&D, "status=deferred"), 2, "only the "
	    "transaction in flight is deferred");
	cr_assert_geq(log_count(&D, "not offered: the session ended first"),
	    after, "the entries after the cut were not offered");
	cr_assert_eq(log_count(&D, "status=sent"), w.copies);
	cr_assert_eq(queue_count(path, sizeof(path)), 1);
	cr_assert_str_eq(strrchr(path, '/'), id, "the cut entry is left");
	strlcat(path, ".state", sizeof(path));
	cr_assert_not_null(st = read_file(path, &len));
	cr_assert_not_null(strstr(st, "attempts: 1\n"), "%s", st);
	free(st);

	/* The cut entry is retried as before: here at a flush. */
	cr_assert_eq(kill(D.pid, SIGUSR1), 0);
	deliver_all(n, 2);
	assert_each_once(&S, n, 2);
}

static bool
has_pidfile_pid(void *arg)
{
	(void)arg;
	return spool_pid() > 0;
}

/*
 * A listqd that outlived its test (Criterion's timeout runs no .fini,
 * and listqd's credential change clears a parent-death signal) must not
 * hold the spool for the tests after it: the next setup stops it, by
 * the pid in the pidfile.  Here it is started as such an orphan is left:
 * by a process that is gone, untracked by the harness.
 */
Test(listqd, leftover_daemon_stopped_by_next_setup, .init = setup,
    .fini = teardown, .timeout = 60)
{
	const char *listqd = getenv("LISTQ_TEST_LISTQD");
	char buf[1024];
	const char *p;
	pid_t child;
	long pid;

	cr_assert_not_null(listqd);
	daemon_config(&D, unused_port(), NULL);
	if ((child = fork()) == 0) {
		if (fork() == 0) {
			int null = open("/dev/null", O_RDWR);

			dup2(null, 1);
			dup2(null, 2);
			execl(listqd, listqd, "-F", "-f", D.conf, "-n", "1",
			    (char *)NULL);
			_exit(127);
		}
		_exit(0);
	}
	cr_assert_eq(reap_bounded(child, 5000), 0);
	cr_assert(wait_until(has_pidfile_pid, NULL, 10000), "the orphan "
	    "listqd did not start");
	pid = spool_pid();
	spool_reset();
	p = proc_stat_fields(pid, buf, sizeof(buf));
	cr_assert(p == NULL || *p == 'Z' || *p == 'X', "listqd pid %ld "
	    "still runs after the next setup", pid);
	cr_assert_eq(spool_pid(), 0, "the fresh spool has a pidfile");
}

/*
 * Several sessions per worker (smtp_sessions): one worker carries its
 * entries over more than one connection at once, and every transaction
 * of an entry (one recipient each here) goes over the connection that
 * took the entry: an entry is in one session at a time.  The relay holds
 * each end-of-data reply 0.3 s, so that one session alone would take
 * seconds for what the others share.
 */
Test(listqd, entries_spread_over_sessions_one_session_each, .init = setup,
    .fini = teardown, .timeout = 120)
{
	struct want w = { &S, 36 };	/* 12 entries x 3 recipients */
	unsigned long conn_of[12] = { 0 }, first = 0;
	struct txn *t;
	size_t n, i, conns = 0;
	const char *subj;
	int k;

	make_list("spread", 3);
	sink_start(&S, "stall DOT 0.3\n", 0, false);
	for (k = 0; k < 12; k++)
		post_numbered("spread", k);
	daemon_config(&D, S.port, "max_rcpts_per_transaction = 1\n"
	    "smtp_sessions = 4\n");
	daemon_start(&D, 1);
	cr_assert(wait_until(have_copies, &w, WAIT_MS), "%zu of %zu copies",
	    copies(&S), w.copies);
	n = sink_load(&S, &t);
	cr_assert_eq(n, 36, "one transaction per recipient");
	for (i = 0; i < n; i++) {
		cr_assert_not_null(subj = strstr(t[i].data, "Subject: msg-"));
		k = (int)strtol(subj + 13, NULL, 10);
		cr_assert(k >= 0 && k < 12);
		if (conn_of[k] == 0)
			conn_of[k] = t[i].conn;
		cr_assert_eq(t[i].conn, conn_of[k], "msg-%04d went over "
		    "connections %lu and %lu", k, conn_of[k], t[i].conn);
	}
	for (k = 0; k < 12; k++) {
		if (first == 0)
			first = conn_of[k];
		conns += conn_of[k] != first;
	}
	cr_assert_gt(conns, 0, "every entry went over connection %lu",
	    first);
	txns_free(t, n);
	cr_assert(wait_until(queue_empty, NULL, WAIT_MS), "%zu entries left",
	    queue_count(NULL, 0));
	cr_assert_eq(log_count(&D, "status=sent"), 36);
}
