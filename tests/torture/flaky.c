/*
 * SPDX-License-Identifier: ISC
 *
 * Flaky relay torture: a relay that fails about 30% of the transactions
 * with what a loaded MTA answers on an ordinary day -- 421 and a closed
 * connection at MAIL, RCPT or DATA, 451 or 452 to a RCPT, a connection
 * dropped in the middle of the data -- must slow listqd down, not stop
 * it.  The same posts are delivered twice by 4 workers with min_backoff
 * = 1s, max_backoff = 2s and the relay policy's defaults: once into a
 * sink without faults, once into a sink with them (seed printed;
 * LISTQ_TORTURE_SEED=N repeats the sink's decisions).  Each run posts
 * through the wrapper while listqd delivers, and ends when queue/ is
 * empty: its rate is deliveries over that time.
 *
 * What it asserts: both runs drain completely, every (post, member)
 * delivered exactly once (no 5xx and no fault after the final dot, so
 * no DSN and no duplicate is allowed), and the sink did fail 20-40% of
 * the transactions.  What it reports: both delivery rates and their
 * ratio, the figure the relay policy is judged by (a rate is a
 * measurement, not an assertion; see bench/ for speed).
 *
 * Smoke: SMOKE_POSTS posts (make check); full: FULL_POSTS (make torture),
 * 5 members each: 20,000 deliveries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "torture.h"

#define FULL_POSTS	4000
#define SMOKE_POSTS	300
#define MEMBERS		5
#define WORKERS		4
#define BODY_LINES	24	/* about 2 KB: a drop is always mid-data */
#define FULL_WAIT_S	900
#define SMOKE_WAIT_S	180

/*
 * Each rule wins its own draw; the last one answers every MAIL not
 * refused, so the fault log counts every transaction attempted.  Per
 * transaction of 5 recipients: about 4% closed at MAIL, 5% at a RCPT,
 * 3% at DATA, 10% with a 451 and 5% with a 452 to some RCPT, 4% cut in
 * the data: about 30%.
 */
static const char rules[] =
    "chance 4 close MAIL 421\n"
    "chance 1 close RCPT 421\n"
    "chance 2 rcpt * 451 4.2.0 fault: greylisted\n"
    "chance 1 rcpt * 452 4.2.2 fault: mailbox full, try later\n"
    "chance 3 close DATA 421\n"
    "chance 4 drop DATA 512\n"
    "cmd MAIL 250 2.1.0 ok\n";

static struct sink S;
static struct daemon D;

static void
post(size_t i)
{
	char msg[4096];
	struct result r;
	size_t len, l;

	len = (size_t)snprintf(msg, sizeof(msg), "From: poster@example.net\n"
	    "To: flaky@example.org\nSubject: flaky %zu\n"
	    "Message-ID: <%zu.flaky@example.net>\nX-Flaky-Post: %zu\n\n", i, i,
	    i);
	for (l = 0; l < BODY_LINES; l++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len,
		    "line %02zu of post %06zu: the quick brown fox jumps over "
		    "the lazy dog\n", l, i);
	cr_assert_eq(run_simple("post", "flaky", msg, len, &r), 0,
	    "enqueue %zu: %s", i, r.err);
}

static bool
queue_empty(void *arg)
{
	(void)arg;
	return queue_count(NULL, 0) == 0;
}

/* Every (post, member) the sink has exactly once. */
static void
assert_each_once(size_t posts)
{
	unsigned char *got;
	const char *p;
	struct txn *t;
	size_t n = sink_load(&S, &t), i, k, copies = 0;
	uint64_t post, m;

	cr_assert_gt(posts, 0);
	cr_assert_not_null(got = calloc(posts * MEMBERS, 1));
	for (i = 0; i < n; i++) {
		cr_assert_not_null(p = strstr(t[i].data, "\nX-Flaky-Post: "));
		cr_assert_not_null(text_scan(p + 15, posts - 1, &post, "\r"));
		for (k = 0; k < t[i].nrcpt; k++) {
			cr_assert_not_null(text_scan(t[i].rcpt[k] + 2,
			    MEMBERS - 1, &m, "@members.example>"), "%s",
			    t[i].rcpt[k]);
			cr_assert_eq(got[post * MEMBERS + m]++, 0, "post %llu "
			    "to m%llu twice", (unsigned long long)post,
			    (unsigned long long)m);
			copies++;
		}
	}
	txns_free(t, n);
	free(got);
	cr_assert_eq(copies, posts * MEMBERS, "%zu of %zu copies", copies,
	    posts * MEMBERS);
}

/* Fault log: transactions attempted, and faults fired (at most one each
   but for two RCPT faults in one transaction). */
static void
count_faults(const char *path, size_t *attempts, size_t *faults)
{
	char line[1024], kind[16], verb[16], value[16];
	FILE *f;

	*attempts = *faults = 0;
	cr_assert_not_null(f = fopen(path, "r"), "%s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#' || !torture_word(line, 2, kind,
		    sizeof(kind)) || !torture_word(line, 3, verb,
		    sizeof(verb)) || !torture_word(line, 4, value,
		    sizeof(value)))
			continue;
		*attempts += strcmp(verb, "MAIL") == 0;
		*faults += strcmp(kind, "cmd") != 0;
	}
	fclose(f);
}

/*
 * Posts through the wrapper while listqd delivers, as an MTA would pipe
 * them: seconds from the first post until queue/ is empty.
 */
struct timing {
	double	posted, drained;	/* seconds from the first post */
};

static void
drain(size_t posts, const char *faults, const char *faultlog, int wait_s,
    struct timing *r)
{
	const char *extra[] = { "-t", "3600", "-R", faults, "-F", faultlog,
	    NULL };
	double t0;
	size_t i;

	if (faultlog == NULL)
		extra[2] = NULL;	/* no rules: nothing to draw or log */
	sink_start_args(&S, faultlog != NULL ? rules : NULL, 0, false, extra);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, WORKERS);
	t0 = torture_now();
	for (i = 0; i < posts; i++)
		post(i);
	r->posted = torture_now() - t0;
	cr_assert(wait_until(queue_empty, NULL, wait_s * 1000), "after %d s, "
	    "%zu entries left in queue/", wait_s, queue_count(NULL, 0));
	r->drained = torture_now() - t0;
	cr_assert_eq(daemon_stop(&D), 0, "listqd did not exit 0");
	sink_stop(&S);
	assert_each_once(posts);
}

static void
report(const char *what, size_t n, const struct timing *r)
{
	torture_report("flaky", "%s: %zu deliveries in %.1f s, %.0f/s (posts "
	    "accepted in %.1f s, the queue empty %.1f s after the last)",
	    what, n, r->drained, (double)n / r->drained, r->posted,
	    r->drained - r->posted);
}

Test(flaky, relay_slows_not_stops, .init = spool_reset,
    .fini = daemon_teardown, .timeout = 2 * FULL_WAIT_S + 600)
{
	size_t posts = torture_size(FULL_POSTS, SMOKE_POSTS);
	size_t n = posts * MEMBERS, attempts, faults;
	unsigned long long seed = torture_seed();
	int wait_s = (int)torture_size(FULL_WAIT_S, SMOKE_WAIT_S);
	char seedarg[32], faultlog[600];
	struct timing clean, flaky;

	snprintf(seedarg, sizeof(seedarg), "%llu", seed);
	snprintf(faultlog, sizeof(faultlog), "%s.faults", T.spool);
	unlink(faultlog);
	torture_report("flaky", "seed=%llu posts=%zu members=%d workers=%d",
	    seed, posts, MEMBERS, WORKERS);
	make_list("flaky", MEMBERS);
	drain(posts, seedarg, NULL, wait_s, &clean);
	report("without faults", n, &clean);
	drain(posts, seedarg, faultlog, wait_s, &flaky);
	count_faults(faultlog, &attempts, &faults);
	report("with faults", n, &flaky);
	torture_report("flaky", "%zu faults in %zu transactions (%.0f%%), %zu "
	    "recipients deferred", faults, attempts, attempts > 0 ? 100.0 *
	    (double)faults / (double)attempts : 0.0,
	    log_count(&D, "status=deferred"));
	torture_report("flaky", "rate with faults / without: %.2f (the "
	    "relay policy aims at 0.35 or more)", clean.drained /
	    flaky.drained);
	cr_assert(faults * 5 >= attempts && faults * 5 <= attempts * 2,
	    "faults in %zu of %zu transactions, not 20-40%%", faults,
	    attempts);
}
