/*
 * SPDX-License-Identifier: ISC
 *
 * The members' own door, end to end: the built wrapper, listqd and the
 * test sink as separate processes.
 *
 * Every post carries the RFC 2369 lines that tell a member's mail
 * program how to ask for help, join and leave (mailto LIST-request with
 * the command as Subject), next to List-Id, List-Post and List-Owner,
 * and List-Archive only when the list's config names one; each copy
 * gets exactly those lines, byte for byte.  A config whose archive_url
 * could end the header line or the angle brackets is refused, naming
 * the key.
 *
 * Subscribing by mail, the attacker first: a request sends one
 * confirmation, to the From: address only, and none to a null, robot or
 * list address; only the token of that request, list and action,
 * unexpired, completes it, once: altered, replayed, other-list and
 * expired tokens and a forged From: without one change nothing but a
 * log line.  Then the limits: one pending request per address and list,
 * subscribe_confirm_daily per address, subscribe_confirm_hourly in all.
 * "help" answers the asker only; a closed list lets nobody join by mail
 * and everybody leave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "admin_run.h"
#include "daemon.h"
#include "harness.h"

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

/* Every transaction the sink got starts with exactly want. */
static void
assert_all_start_with(size_t copies, const char *want)
{
	struct txn *t;
	size_t n, i, wlen = strlen(want);

	cr_assert(log_wait(&D, "status=sent", copies, WAIT_MS), "%s",
	    daemon_log(&D));
	n = sink_load(&S, &t);
	cr_assert_eq(n, copies, "%zu transactions, want %zu", n, copies);
	for (i = 0; i < n; i++)
		cr_assert(t[i].len > wlen &&
		    memcmp(t[i].data, want, wlen) == 0, "copy %zu to %s "
		    "starts:\n%.*s\nwant:\n%s", i, t[i].rcpt[0], (int)wlen,
		    t[i].data, want);
	txns_free(t, n);
}

Test(listheaders, every_copy_carries_rfc2369, .init = setup,
    .fini = teardown, .timeout = 90)
{
	char want[2048];

	make_list("gamma", 3);
	list_append("gamma", "config", "verp = yes\n");
	list_headers(want, sizeof(want), "gamma", NULL);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("gamma", 0);
	post_numbered("gamma", 1);
	assert_all_start_with(6, want);
}

Test(listheaders, archive_named_in_config, .init = setup, .fini = teardown,
    .timeout = 90)
{
	static const char url[] = "https://lists.example.org/archive/delta/";
	char want[2048];

	make_list("delta", 2);
	list_append("delta", "config", "verp = yes\narchive_url = "
	    "https://lists.example.org/archive/delta/\n");
	list_headers(want, sizeof(want), "delta", url);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post_numbered("delta", 0);
	assert_all_start_with(2, want);
}

/* A URL that would end the brackets or the line goes nowhere. */
Test(listheaders, bad_archive_url_refused, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char *const bad[] = {
		"https://x.example/a>\n", "https://x.example/a b\n",
		"javascript:alert(1)\n", "https://x.example/\xc3\xa9\n" };
	char line[128];
	struct out o;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_list("eps", 0);
		snprintf(line, sizeof(line), "archive_url = %s", bad[i]);
		list_append("eps", "config", line);
		daemon_config(&D, unused_port(), NULL);
		cr_assert_eq(listq(&o, "-f", D.conf, "check", (char *)NULL), 1,
		    "%s accepted", bad[i]);
		cr_assert_not_null(strstr(o.out, "archive_url"), "%s: %s%s",
		    bad[i], o.out, o.err);
		out_free(&o);
		spool_reset();
	}
}

/* ---- subscribing by mail ------------------------------------------- */

#define NEWBIE		"new@joiner.example"

static void
wait_log(const char *needle, size_t n)
{
	cr_assert(log_wait(&D, needle, n, WAIT_MS), "never logged %zu x "
	    "\"%s\":\n%s", n, needle, daemon_log(&D));
}

static void
wait_sink(size_t n)
{
	cr_assert(sink_wait_count(&S, n, WAIT_MS), "the sink has %zu "
	    "transactions, not %zu:\n%s", sink_count(&S), n, daemon_log(&D));
}

static void
start(const char *extra)
{
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, extra);
	daemon_start(&D, 2);
}

/* A mail to name-request: Return-Path rp, From: from, the Subject. */
static void
request(const char *list, const char *rp, const char *from,
    const char *subject)
{
	char msg[1024];
	struct result r;

	snprintf(msg, sizeof(msg), "Return-Path: <%s>\nFrom: <%s>\n"
	    "To: %s-request@example.org\nSubject: %s\n\nplease\n", rp, from,
	    list, subject);
	cr_assert_eq(run_simple("request", list, msg, strlen(msg), &r), 0,
	    "request %s: %s", list, r.err);
}

/* The members file of list, whole (caller frees). */
static char *
members_of(const char *list)
{
	char path[1024], *text;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s/members", T.lists, list);
	cr_assert_not_null(text = read_file(path, &len), "%s: %s", path,
	    strerror(errno));
	return text;
}

/* How often addr is a line of list's members file. */
static size_t
member_lines(const char *list, const char *addr)
{
	char *text = members_of(list), want[300];
	const char *p;
	size_t n = 0;

	snprintf(want, sizeof(want), "\n%s\n", addr);
	for (p = text; (p = strstr(p, want)) != NULL; p++)
		n++;
	free(text);
	return n;
}

/* The data of the last notice (from <>) to addr (caller frees). */
static char *
sink_data_to_last(const char *addr)
{
	char want[300], *d = NULL;
	struct txn *t;
	size_t n = sink_load(&S, &t), i, k;

	snprintf(want, sizeof(want), "<%s>", addr);
	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt; k++)
			if (strcmp(t[i].rcpt[k], want) == 0 &&
			    strcmp(t[i].from, "<>") == 0) {
				free(d);
				cr_assert_not_null(d = strdup(t[i].data));
			}
	txns_free(t, n);
	cr_assert_not_null(d, "nothing went to %s", addr);
	return d;
}

/* Asks, waits for the one confirmation to addr, returns its token. */
static void
ask(const char *list, const char *addr, const char *action, char *tok,
    size_t len)
{
	size_t before = sink_count(&S), sent = sink_copies_to(&S, addr);
	char *notice;

	request(list, addr, addr, action);
	wait_sink(before + 1);
	cr_assert_eq(sink_copies_to(&S, addr), sent + 1);
	notice = sink_data_to_last(addr);
	notice_token(notice, action, tok, len);
	free(notice);
}

/* Is the clock past the expiry of token ACTION-ID-EXPIRES-MAC? */
static bool
clock_past(void *arg)
{
	const char *p = strchr(arg, '-');

	p = p != NULL ? strchr(p + 1, '-') : NULL;
	cr_assert_not_null(p, "%s", (char *)arg);
	return (long long)time(NULL) > strtoll(p + 1, NULL, 10);
}

/* A reply to the confirmation, from from, with subject "Re: " text. */
static void
confirm(const char *list, const char *from, const char *text)
{
	char subject[512];

	snprintf(subject, sizeof(subject), "Re: confirm %s", text);
	request(list, from, from, subject);
}

Test(subscribe, subscribe_and_unsubscribe_once_each, .init = setup,
    .fini = teardown, .timeout = 180)
{
	char tok[256], *before, *after, *notice;

	make_list("sub", 1);
	start(NULL);
	ask("sub", NEWBIE, "subscribe", tok, sizeof(tok));
	cr_assert_eq(sink_count(&S), 1, "the confirmation went elsewhere too");
	cr_assert_eq(member_lines("sub", NEWBIE), 0, "joined unconfirmed");
	confirm("sub", NEWBIE, tok);
	wait_log("<" NEWBIE "> subscribed by confirmation", 1);
	cr_assert_eq(member_lines("sub", NEWBIE), 1);
	wait_sink(2);
	notice = sink_data_to_last(NEWBIE);
	cr_assert_not_null(strstr(notice, "Subject: Welcome to sub@"), "%s",
	    notice);
	free(notice);

	/* The same reply again: nothing. */
	before = members_of("sub");
	confirm("sub", NEWBIE, tok);
	wait_log("confirmation ignored: no such pending request", 1);
	after = members_of("sub");
	cr_assert_str_eq(before, after);
	free(before);
	free(after);

	/* The next post reaches the new member. */
	post_numbered("sub", 7);
	wait_log("status=sent", 4);
	cr_assert_eq(sink_copies_to(&S, "m0@members.example"), 1);
	cr_assert_eq(sink_copies_to(&S, NEWBIE), 3);

	ask("sub", NEWBIE, "unsubscribe", tok, sizeof(tok));
	cr_assert_eq(member_lines("sub", NEWBIE), 1, "left unconfirmed");
	confirm("sub", NEWBIE, tok);
	wait_log("<" NEWBIE "> unsubscribed by confirmation", 1);
	cr_assert_eq(member_lines("sub", NEWBIE), 0);
	cr_assert_eq(member_lines("sub", "m0@members.example"), 1);
	wait_log("status=sent", 6);
	notice = sink_data_to_last(NEWBIE);
	cr_assert_not_null(strstr(notice, "Subject: Goodbye from sub@"),
	    "%s", notice);
	free(notice);
}

Test(subscribe, forged_altered_replayed_tokens_do_nothing, .init = setup,
    .fini = teardown, .timeout = 180)
{
	char tok[256], bad[300], *before, *after;
	size_t last;

	make_list("sub", 1);
	make_list("other", 1);
	start(NULL);
	ask("sub", NEWBIE, "subscribe", tok, sizeof(tok));
	before = members_of("sub");

	/* A forged From: that only says yes. */
	confirm("sub", NEWBIE, "yes please");
	wait_log("ignored: no token", 1);
	/* The MAC altered; the action made another; another list. */
	strlcpy(bad, tok, sizeof(bad));
	last = strlen(bad) - 1;
	bad[last] = bad[last] == '0' ? '1' : '0';
	confirm("sub", NEWBIE, bad);
	wait_log("wrong token", 1);
	snprintf(bad, sizeof(bad), "un%s", tok);
	confirm("sub", NEWBIE, bad);
	wait_log("wrong token", 2);
	confirm("other", NEWBIE, tok);
	wait_log("wrong token", 3);
	wait_log("removed (request processed)", 5);
	after = members_of("sub");
	cr_assert_str_eq(before, after);
	free(after);
	after = members_of("other");
	cr_assert_null(strstr(after, NEWBIE));
	free(after);
	free(before);
	cr_assert_eq(log_count(&D, "by confirmation"), 0);
	cr_assert_eq(sink_count(&S), 1, "something was sent");
}

Test(subscribe, no_confirmation_to_robots_or_list_addresses, .init = setup,
    .fini = teardown, .timeout = 120)
{
	static const char auto_reply[] = "Return-Path: <" NEWBIE ">\n"
	    "From: <" NEWBIE ">\nAuto-Submitted: auto-replied\n"
	    "Subject: subscribe\n\nI am away.\n";
	struct result r;

	make_list("sub", 1);
	start(NULL);
	request("sub", "", NEWBIE, "subscribe");
	request("sub", "MAILER-DAEMON@joiner.example", NEWBIE, "subscribe");
	request("sub", "MAILER-DAEMON@joiner.example",
	    "MAILER-DAEMON@joiner.example", "subscribe");
	request("sub", NEWBIE, "sub@example.org", "subscribe");
	request("sub", NEWBIE, "sub-request@example.org", "subscribe");
	request("sub", NEWBIE, "other-bounces@example.org", "subscribe");
	request("sub", NEWBIE, "m0@members.example", "subscribe");
	/* An autoresponder's answer to someone's forged request. */
	cr_assert_eq(run_simple("request", "sub", auto_reply,
	    strlen(auto_reply), &r), 0, "%s", r.err);
	wait_log("removed (request processed)", 8);
	wait_log("subscribe request ignored", 8);
	cr_assert_eq(log_count(&D, "confirmation"), 0, "%s", daemon_log(&D));
	cr_assert_eq(sink_count(&S), 0);
}

Test(subscribe, expired_token_does_nothing, .init = setup, .fini = teardown,
    .timeout = 120)
{
	char tok[256];

	make_list("sub", 1);
	start("subscribe_lifetime = 1s\n");
	ask("sub", NEWBIE, "subscribe", tok, sizeof(tok));
	cr_assert(wait_until(clock_past, tok, WAIT_MS));
	confirm("sub", NEWBIE, tok);
	wait_log("confirmation ignored: token expired", 1);
	cr_assert_eq(member_lines("sub", NEWBIE), 0);
}

/* ---- limits -------------------------------------------------------- */

Test(subscribe, one_pending_per_address_and_list, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char tok[256];

	make_list("sub", 1);
	start(NULL);
	ask("sub", NEWBIE, "subscribe", tok, sizeof(tok));
	request("sub", NEWBIE, NEWBIE, "subscribe");
	wait_log("no confirmation to <" NEWBIE ">: one is pending", 1);
	wait_log("removed (request processed)", 2);
	cr_assert_eq(sink_count(&S), 1);
}

Test(subscribe, daily_cap_per_address, .init = setup, .fini = teardown,
    .timeout = 120)
{
	char tok[256];

	make_list("one", 1);
	make_list("two", 1);
	make_list("three", 1);
	start("subscribe_confirm_daily = 2\n");
	ask("one", NEWBIE, "subscribe", tok, sizeof(tok));
	ask("two", NEWBIE, "subscribe", tok, sizeof(tok));
	request("three", NEWBIE, NEWBIE, "subscribe");
	wait_log("no confirmation to <" NEWBIE ">: subscribe_confirm_daily "
	    "(2) reached", 1);
	wait_log("removed (request processed)", 3);
	cr_assert_eq(sink_count(&S), 2);
}

Test(subscribe, hourly_cap_over_all, .init = setup, .fini = teardown,
    .timeout = 120)
{
	char tok[256];

	make_list("sub", 1);
	start("subscribe_confirm_hourly = 2\n");
	ask("sub", "a@joiner.example", "subscribe", tok, sizeof(tok));
	ask("sub", "b@joiner.example", "subscribe", tok, sizeof(tok));
	request("sub", "c@joiner.example", "c@joiner.example", "subscribe");
	wait_log("no confirmation to <c@joiner.example>: "
	    "subscribe_confirm_hourly (2) reached", 1);
	wait_log("removed (request processed)", 3);
	cr_assert_eq(sink_count(&S), 2);
}

/* List-Help's address answers, to the asker only, never to a robot. */
Test(subscribe, help_answers_the_asker, .init = setup, .fini = teardown,
    .timeout = 120)
{
	char *notice;

	make_list("sub", 1);
	start(NULL);
	request("sub", NEWBIE, "MAILER-DAEMON@joiner.example", "help");
	request("sub", NEWBIE, NEWBIE, "help");
	wait_log("help request ignored", 1);
	wait_log("removed (request processed)", 2);
	wait_sink(1);
	notice = sink_data_to_last(NEWBIE);
	cr_assert_not_null(strstr(notice, "Subject: Help for sub@"), "%s",
	    notice);
	cr_assert_not_null(strstr(notice, "sub-request@example.org"));
	free(notice);
	cr_assert_eq(sink_count(&S), 1);
}

/* A closed list lets nobody in by mail, and everybody out. */
Test(subscribe, closed_list_refuses_joining_not_leaving, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char tok[256];

	make_list("sub", 1);
	list_append("sub", "config", "subscribe_policy = closed\n");
	start(NULL);
	request("sub", NEWBIE, NEWBIE, "subscribe");
	wait_log("subscribe request ignored: the list is closed", 1);
	cr_assert_eq(sink_count(&S), 0);
	ask("sub", "m0@members.example", "unsubscribe", tok, sizeof(tok));
	confirm("sub", "m0@members.example", tok);
	wait_log("<m0@members.example> unsubscribed by confirmation", 1);
	cr_assert_eq(member_lines("sub", "m0@members.example"), 0);
}
