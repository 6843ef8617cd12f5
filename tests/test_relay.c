/*
 * SPDX-License-Identifier: ISC
 *
 * The relay pause policy (worker/relay.c) end to end: listqd delivers
 * into test sinks that refuse or end sessions, and each test reads the
 * daemon's log, the sink's records and listq status for what the worker
 * did.  A relay pauses for a session it could not have (a connection
 * refused, a greeting refused), never for a 421 or a drop inside a
 * session that was set up, unless sessions keep ending so; each pause is
 * logged once with its length and cause and shown by listq status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "admin_run.h"
#include "daemon.h"
#include "harness.h"

#define WAIT_MS		30000

static struct sink S;
static struct daemon D;

static bool
in_log(void *needle)
{
	return log_count(&D, needle) > 0;
}

static bool
sink_has(void *arg)
{
	const size_t *n = arg;

	return sink_count(&S) >= *n;
}

/*
 * Three entries for one session into a relay that ends it at the first
 * MAIL (rules): only the entry in flight is deferred, and the two the
 * session never offered go out in the next one -- no pause, no wait of
 * the worker.
 */
static void
first_session_ends(const char *rules, const char *conf)
{
	char text[256];
	size_t two = 2;

	make_list("once", 1);
	sink_start(&S, rules, 0, false);
	for (int i = 0; i < 3; i++)
		post_numbered("once", i);
	snprintf(text, sizeof(text), "min_backoff = 1h\nmax_backoff = 2h\n%s",
	    conf);
	daemon_config(&D, S.port, text);
	daemon_start(&D, 1);
	cr_assert(wait_until(sink_has, &two, WAIT_MS), "the entries not "
	    "offered were not sent again at once");
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, "paused"), 0);
	cr_assert_eq(log_count(&D, "no relay reachable"), 0);
	cr_assert_eq(log_count(&D, "status=deferred"), 1, "only the entry "
	    "in flight was deferred");
	cr_assert_eq(queue_count(NULL, 0), 1);
}

/* A 421 at the first MAIL of a session that was set up. */
Test(relay, dropped_session_retried_at_once, .init = spool_reset,
    .fini = daemon_teardown, .timeout = 60)
{
	first_session_ends("close-once MAIL 421\n", "");
	cr_assert_eq(log_count(&D, "session ended before delivering a "
	    "message (421 4.3.2 closing); used again at once"), 1);
}

/*
 * A relay that accepted the greeting and EHLO, then never answered the
 * first MAIL, held a session: the timeout is no dead relay either.
 */
Test(relay, unanswered_mail_is_no_dead_relay, .init = spool_reset,
    .fini = daemon_teardown, .timeout = 60)
{
	first_session_ends("stall-once MAIL 4\n", "command_timeout = 1s\n");
	cr_assert_eq(log_count(&D, "session ended before delivering a "
	    "message (timed out while waiting for MAIL); used again at once"),
	    1);
}

/*
 * A relay that ends every session at its first MAIL takes nothing: after
 * three sessions in a row it pauses 1 s, then 2 s, so that it costs no
 * spinning; each session costs one entry one attempt, no more.
 */
Test(relay, dropping_every_session_pauses, .init = spool_reset,
    .fini = daemon_teardown, .timeout = 60)
{
	size_t sessions;

	make_list("spin", 2);
	sink_start(&S, "close MAIL 421\n", 0, false);
	for (int i = 0; i < 30; i++)
		post_numbered("spin", i);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n"
	    "relay_retry_time = 1h\n");
	daemon_start(&D, 1);
	cr_assert(wait_until(in_log, "; paused 2 s", WAIT_MS));
	cr_assert_eq(daemon_stop(&D), 0);
	sessions = log_count(&D, "session: relay=");
	cr_assert_eq(sessions, 5, "%zu sessions before the second pause",
	    sessions);
	cr_assert_eq(log_count(&D, "used again at once"), 3);
	cr_assert_eq(log_count(&D, "4 sessions in a row ended before "
	    "delivering a message (421 4.3.2 closing); paused 1 s"), 1);
	cr_assert_eq(log_count(&D, "5 sessions in a row ended before "
	    "delivering a message (421 4.3.2 closing); paused 2 s"), 1);
	cr_assert_eq(log_count(&D, "worker 0 waits"), 2);
	cr_assert_eq(log_count(&D, "status=deferred"), 2 * sessions);
	cr_assert_eq(queue_count(NULL, 0), 30);
}

/*
 * A refused greeting is no session: the relay pauses 1 s, logged once
 * with why; the next session delivers, and the relay shows as up.
 */
Test(relay, refused_greeting_pauses, .init = spool_reset,
    .fini = daemon_teardown, .timeout = 60)
{
	char want[256];
	size_t one = 1;
	struct out o;

	make_list("greet", 1);
	sink_start(&S, "greet-once 421 4.7.0 too many connections\n", 0,
	    false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("greet", 0);
	cr_assert(wait_until(sink_has, &one, WAIT_MS));
	snprintf(want, sizeof(want), "relay 127.0.0.1:%d: no session "
	    "(421 4.7.0 too many connections); paused 1 s", S.port);
	cr_assert_eq(log_count(&D, want), 1);
	cr_assert_eq(listq(&o, "status", (char *)NULL), 0, "%s", o.err);
	snprintf(want, sizeof(want), "\nrelays:     127.0.0.1:%d  up\n",
	    S.port);
	cr_assert_not_null(strstr(o.out, want), "%s", o.out);
	out_free(&o);
}

/*
 * Failover shown by listq status: the first relay refuses connections
 * and pauses, the second carries the mail and is up.
 */
Test(relay, status_shows_pausing_relay, .init = spool_reset,
    .fini = daemon_teardown, .timeout = 60)
{
	char extra[256], want[256], expr[512];
	int first = unused_port();
	size_t one = 1;
	struct out o;

	make_list("two", 1);
	sink_start(&S, NULL, 0, false);
	snprintf(extra, sizeof(extra), "smarthost = 127.0.0.1:%d, "
	    "127.0.0.1:%d\nsmarthost_backoff = 1h\nrelay_retry_time = 1h\n",
	    first, S.port);
	daemon_config(&D, S.port, extra);
	daemon_start(&D, 1);
	post_numbered("two", 0);
	cr_assert(wait_until(sink_has, &one, WAIT_MS));
	cr_assert_eq(listq(&o, "status", (char *)NULL), 0, "%s", o.err);
	snprintf(want, sizeof(want), "\nrelays:     127.0.0.1:%d  pausing "
	    "until ", first);
	cr_assert_not_null(strstr(o.out, want), "%s", o.out);
	snprintf(want, sizeof(want), " (1 of 1 workers): no session (connect "
	    "to 127.0.0.1[127.0.0.1]:%d: Connection refused)\n"
	    "            127.0.0.1:%d  up\n", first, S.port);
	cr_assert_not_null(strstr(o.out, want), "%s", o.out);
	out_free(&o);
	cr_assert_eq(listq(&o, "status", "--json", (char *)NULL), 0, "%s",
	    o.err);
	snprintf(expr, sizeof(expr), "[(r['name'], r['state'], "
	    "r['workers_pausing'], r['until'] > d['daemon']['started'] + "
	    "3000) for r in d['relays']] == [('127.0.0.1:%d', 'pausing', 1, "
	    "True), ('127.0.0.1:%d', 'up', 0, False)] and 'Connection refused'"
	    " in d['relays'][0]['why'] and d['relays'][1]['why'] is None",
	    first, S.port);
	assert_json(o.out, expr);
	out_free(&o);
}
