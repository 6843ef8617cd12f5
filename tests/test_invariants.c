/*
 * SPDX-License-Identifier: ISC
 *
 * Invariants 7 and 8 end to end, through the wrapper, listqd and the
 * test sink.
 *
 * corrupt (invariant 7): an entry or a state file that cannot be parsed
 * moves to corrupt/ with one log line naming its queue id and what was
 * wrong, and the rest of its bucket is delivered.  The damaged files sit
 * in the same bucket as a good entry the wrapper queued (copies of it
 * under fresh ids of that bucket): a garbled entry header, a state file
 * whose base is cut short, a state file of another version.
 *
 * memory (invariant 8): a worker streams message bodies, and its memory
 * grows with what it owns and delivers -- the recipients of the entry
 * in hand, at most MEMBER_COST bytes each (doc/design.md) -- never with
 * message size.  One worker delivers a small message, then a 9 MB one,
 * to a small list, then a small one to a 100,000-member list.  Its peak
 * resident size (VmHWM, from /proc) after the first is the baseline:
 * the 9 MB message must add less than a 4 MB slack, the large list less
 * than its recipients' cost and that slack.  A worker holding the body
 * in memory fails the test.  No timing is involved: the kernel keeps
 * the peak.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "qid.h"
#include "spool.h"
#include "state.h"

#define WAIT_MS		30000
#define ID_TRIES	1000000	/* a bucket in 256: found within ~256 */
#define DAMAGED		3
#define MEM_WAIT_MS	120000
#define BIG_BODY	((size_t)9 << 20)
#define MEMBERS		100000
#define MEMBER_COST	1024		/* bytes per recipient, the design's */
#define SLACK_KB	((size_t)4 << 10)	/* below BIG_BODY, in kB */

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

TestSuite(corrupt, .init = setup, .fini = teardown, .timeout = 90);

/* Writes path (mode 0600, the service's) with len bytes of text. */
static void
write_spool_file(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	cr_assert_neq(fd, -1, "%s", path);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	if (T.root)
		cr_assert_eq(fchown(fd, T.svc_uid, T.svc_gid), 0);
	cr_assert_eq(close(fd), 0);
}

/* A fresh queue id of the given bucket. */
static void
id_in_bucket(unsigned int bucket, char id[QID_SIZE])
{
	int i;

	for (i = 0; i < ID_TRIES; i++) {
		qid_new(id);
		if (qid_bucket(id) == bucket)
			return;
	}
	cr_assert_fail("no id of bucket %u in %d tries", bucket, ID_TRIES);
}

/*
 * A copy of the entry text (from the good entry with id good) under id,
 * in dir, with "from" replaced by "to" in its header when from is set.
 */
static void
copy_entry(const char *dir, const char *text, const char *good,
    const char *id, const char *from, const char *to)
{
	char path[1200], *copy, *p;
	size_t len = strlen(text) + 64, i;

	cr_assert_not_null(copy = malloc(len));
	snprintf(copy, len, "%s", text);
	cr_assert_not_null(p = strstr(copy, good));
	memcpy(p, id, QID_SIZE - 1);
	if (from != NULL) {
		cr_assert_not_null(p = strstr(copy, from));
		cr_assert_eq(strlen(from), strlen(to));
		for (i = 0; to[i] != '\0'; i++)	/* in place, no NUL */
			p[i] = to[i];
	}
	snprintf(path, sizeof(path), "%s/%s", dir, id);
	write_spool_file(path, copy, strlen(copy));
	free(copy);
}

static void
write_state(const char *dir, const char *id, const char *text)
{
	char path[1200];

	snprintf(path, sizeof(path), "%s/%s%s", dir, id, STATE_SUFFIX);
	write_spool_file(path, text, strlen(text));
}

static bool
all_moved_and_sent(void *arg)
{
	(void)arg;
	return area_count(SPOOL_CORRUPT, NULL, 0) == DAMAGED &&
	    queue_count(NULL, 0) == 0 && sink_count(&S) >= 2;
}

static void
assert_quarantined(const char *id, const char *why, bool with_state)
{
	char needle[256], path[1200];

	snprintf(needle, sizeof(needle), "%s: moved to corrupt/: %s", id, why);
	cr_assert_eq(log_count(&D, needle), 1, "no log line \"%s\"", needle);
	snprintf(path, sizeof(path), "%s/%s/%s", T.spool, SPOOL_CORRUPT, id);
	cr_assert_eq(access(path, F_OK), 0, "%s is not in corrupt/", id);
	snprintf(path, sizeof(path), "%s/%s/%s%s", T.spool, SPOOL_CORRUPT, id,
	    STATE_SUFFIX);
	cr_assert_eq(access(path, F_OK) == 0, with_state, "%s: its state file "
	    "%s corrupt/", id, with_state ? "is not in" : "went to");
}

Test(corrupt, entries_and_states_quarantined_bucket_delivered)
{
	static const char msg[] = "From: a@example.net\nSubject: c\n\nbody\n";
	char good[1200], dir[1100], garbled[QID_SIZE], cut[QID_SIZE];
	char other[QID_SIZE], twin[QID_SIZE], *text;
	const char *id;
	struct result r;
	size_t len;

	make_list("c", 1);
	cr_assert_eq(run_simple("post", "c", msg, strlen(msg), &r), 0, "%s",
	    r.err);
	cr_assert_eq(queue_count(good, sizeof(good)), 1);
	text = read_file(good, &len);
	id = strrchr(good, '/') + 1;
	snprintf(dir, sizeof(dir), "%.*s", (int)(id - good - 1), good);
	id_in_bucket(qid_bucket(id), garbled);
	id_in_bucket(qid_bucket(id), cut);
	id_in_bucket(qid_bucket(id), other);
	id_in_bucket(qid_bucket(id), twin);
	copy_entry(dir, text, id, garbled, "command: post", "command: p0st");
	copy_entry(dir, text, id, cut, NULL, NULL);
	write_state(dir, cut, "listq-state: 1\nattempts: 1\ncrash");
	copy_entry(dir, text, id, other, NULL, NULL);
	write_state(dir, other, "listq-state: 2\nattempts: 0\ncrashes: 0\n"
	    "warned: 0\neightbit: 0\nfirst: 0\nnext: 0\nsender: <>\n");
	copy_entry(dir, text, id, twin, NULL, NULL);	/* a good one too */
	free(text);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert(wait_until(all_moved_and_sent, NULL, WAIT_MS), "corrupt/ "
	    "has %zu of %d, %zu left queued, %zu sent",
	    area_count(SPOOL_CORRUPT, NULL, 0), DAMAGED, queue_count(NULL, 0),
	    sink_count(&S));
	assert_quarantined(garbled, "", false);
	assert_quarantined(cut, "", true);
	assert_quarantined(other, "unsupported state version", true);
	cr_assert_eq(log_count(&D, "moved to corrupt/"), DAMAGED);
	cr_assert_eq(sink_count(&S), 2, "the good entry and its twin, once "
	    "each");
	cr_assert_eq(log_count(&D, "status=sent"), 2);
	spool_sweep();		/* the corrupt/ entries and states too */
}

static void
post(const char *list, size_t body)
{
	static const char head[] = "From: a@example.net\nSubject: size\n\n";
	char *msg;
	struct result r;
	size_t i;

	cr_assert_not_null(msg = malloc(sizeof(head) + body));
	memcpy(msg, head, sizeof(head) - 1);
	for (i = 0; i < body; i++)	/* 76-character lines */
		msg[sizeof(head) - 1 + i] = i % 77 == 76 ? '\n' : 'x';
	msg[sizeof(head) - 2 + body] = '\n';
	cr_assert_eq(run_simple("post", list, msg, sizeof(head) - 1 + body,
	    &r), 0, "%s", r.err);
	free(msg);
}

static bool
delivered(void *arg)
{
	return queue_count(NULL, 0) == 0 && sink_count(&S) >= *(size_t *)arg;
}

/* Posts, waits until the sink has txns transactions; the peak, in kB. */
static size_t
peak_after(pid_t worker, const char *list, size_t body, size_t txns)
{
	post(list, body);
	cr_assert(wait_until(delivered, &txns, MEM_WAIT_MS), "%zu of %zu "
	    "transactions, %zu entries left", sink_count(&S), txns,
	    queue_count(NULL, 0));
	return proc_status_kb(worker, "VmHWM");
}

Test(memory, worker_bounded_by_recipients_not_size, .init = setup,
    .fini = teardown, .timeout = 300)
{
	size_t base_kb, big_kb, list_kb;
	pid_t worker;

	make_list("big", MEMBERS);
	make_list("small", 2);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, "max_rcpts_per_transaction = 10000\n");
	daemon_start(&D, 1);
	cr_assert_eq(proc_children(D.pid, &worker, 1), 1);
	/* A first delivery: what any delivery needs, the baseline. */
	base_kb = peak_after(worker, "small", 1000, 1);
	big_kb = peak_after(worker, "small", BIG_BODY, 2);
	/* The 9 MB message to both, then 10 transactions of 10,000. */
	list_kb = peak_after(worker, "big", 1000, 12);
	cr_log_info("worker %ld: peak %zu kB after a small message, %zu kB "
	    "after 9 MB, %zu kB after %d recipients", (long)worker, base_kb,
	    big_kb, list_kb, MEMBERS);
	cr_assert_lt(big_kb, base_kb + SLACK_KB, "a 9 MB message took the "
	    "worker from %zu to %zu kB: its body held in memory?", base_kb,
	    big_kb);
	/*
	 * AddressSanitizer (make sanitize-check, which sets ASAN_OPTIONS)
	 * adds shadow memory and a quarantine to every allocation: the
	 * per-recipient cost is the real build's.
	 */
	if (getenv("ASAN_OPTIONS") == NULL)
		cr_assert_leq(list_kb, base_kb + (size_t)MEMBERS *
		    MEMBER_COST / 1024 + SLACK_KB, "%d recipients took the "
		    "worker to %zu kB, over %d bytes each", MEMBERS, list_kb,
		    MEMBER_COST);
	cr_assert_eq(log_count(&D, "status=sent"), MEMBERS + 4);
	cr_assert_eq(proc_children(D.pid, &worker, 1), 1);
}
