/*
 * SPDX-License-Identifier: ISC
 *
 * Delivery policy, end to end through the wrapper, listqd and the test
 * sink: DSNs back to the sender and through bounce processing, VERP,
 * bounce scores that disable a member and tell the owners, and relay
 * failover.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "probe.h"
#include "spool.h"

#define WAIT_MS	30000

static struct sink S, S2;
static struct daemon D;

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&S2, 0, sizeof(S2));
	memset(&D, 0, sizeof(D));
}

static void
teardown(void)
{
	daemon_teardown();
}

static void
post(const char *list, const char *subject)
{
	char msg[256];
	struct result r;

	snprintf(msg, sizeof(msg), "From: sender@example.net\nSubject: %s\n\n"
	    "body\n", subject);
	cr_assert_eq(run_simple("post", list, msg, strlen(msg), &r), 0, "%s",
	    r.err);
}

struct count_arg {
	struct sink	*s;
	size_t		 n;
};

static bool
has_txns(void *arg)
{
	struct count_arg *c = arg;

	return sink_count(c->s) >= c->n;
}

static void
wait_txns(struct sink *s, size_t n)
{
	struct count_arg c = { s, n };

	cr_assert(wait_until(has_txns, &c, WAIT_MS), "%zu of %zu transactions",
	    sink_count(s), n);
}

static bool
log_has(void *arg)
{
	return log_count(&D, arg) > 0;
}

/* The data of the first transaction to rcpt, CRLF turned into LF. */
static char *
txn_to(const struct sink *s, const char *rcpt, const char **from_out)
{
	static char from[256];
	struct txn *t;
	size_t n = sink_load(s, &t), i, k, o;
	char *data = NULL;

	for (i = 0; i < n && data == NULL; i++)
		if (t[i].nrcpt == 1 && strcmp(t[i].rcpt[0], rcpt) == 0) {
			data = t[i].data;
			t[i].data = strdup("");
			snprintf(from, sizeof(from), "%s", t[i].from);
		}
	txns_free(t, n);
	for (k = o = 0; data != NULL && data[k] != '\0'; k++)
		if (data[k] != '\r')
			data[o++] = data[k];
	if (data != NULL)
		data[o] = '\0';
	if (from_out != NULL)
		*from_out = from;
	return data;
}

/* Did a post from sender reach rcpt? */
static bool
post_reached(const struct sink *s, const char *sender, const char *rcpt)
{
	struct txn *t;
	size_t n = sink_load(s, &t), i, k;
	bool found = false;

	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt && strcmp(t[i].from, sender) == 0;
		    k++)
			found = found || strcmp(t[i].rcpt[k], rcpt) == 0;
	txns_free(t, n);
	return found;
}

static void
pipe_bounce(const char *list, const char *msg)
{
	struct result r;

	cr_assert_eq(run_simple("bounces", list, msg, strlen(msg), &r), 0,
	    "%s", r.err);
}

static char *
list_file(const char *list, const char *file)
{
	char path[1024];
	size_t len;

	snprintf(path, sizeof(path), "%s/%s/%s", T.lists, list, file);
	if (access(path, F_OK) == -1)
		return strdup("");
	return read_file(path, &len);
}

/*
 * A 550 makes exactly one DSN to the sender (the list's -bounces), with
 * the member as Final-Recipient and the relay's status; piped into the
 * bounce processor of a second list it is attributed to that member.
 */
Test(policy, dsn_to_sender_parsed_back_by_a_list, .init = setup,
    .fini = teardown, .timeout = 90)
{
	const char *from;
	char *dsn, *log;

	make_list("alpha", 3);
	make_list("beta", 3);
	sink_start(&S, "rcpt m1@members.example 550 5.1.1 no such user\n", 0,
	    false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 2);
	post("alpha", "one");
	wait_txns(&S, 2);
	cr_assert_not_null(dsn = txn_to(&S, "<alpha-bounces@example.org>",
	    &from), "no DSN arrived");
	cr_assert_str_eq(from, "<>", "a DSN goes out from the null sender");
	cr_assert_not_null(strstr(dsn, "Content-Type: multipart/report; "
	    "report-type=delivery-status;"));
	cr_assert_not_null(strstr(dsn, "Final-Recipient: rfc822; "
	    "m1@members.example\nAction: failed\nStatus: 5.1.1\n"), "%s", dsn);
	cr_assert_not_null(strstr(dsn, "Diagnostic-Code: smtp; 550 5.1.1 no "
	    "such user"));
	cr_assert_not_null(strstr(dsn, "\nSubject: one\n"), "original headers");
	pipe_bounce("beta", dsn);
	free(dsn);
	cr_assert(wait_until(log_has, "bounce: list=beta, member="
	    "<m1@members.example>, status=5.1.1, hard, attributed by dsn",
	    WAIT_MS));
	log = list_file("beta", "bounces");
	cr_assert_not_null(strstr(log, " m1@members.example hard 5.1.1 dsn "
	    "counted: "), "%s", log);
	free(log);
	cr_assert_eq(sink_count(&S), 2, "the bounce itself is not forwarded");
}

/* A DSN that cannot be delivered gets no DSN: it is held. */
Test(policy, no_dsn_for_the_null_sender, .init = setup, .fini = teardown,
    .timeout = 90)
{
	struct entry_header h;
	char path[1024];
	size_t len;

	make_list("gamma", 1);
	sink_start(&S, "rcpt m0@members.example 550 5.1.1 gone\n"
	    "rcpt gamma-bounces@example.org 550 5.1.1 refused too\n", 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("gamma", "x");
	cr_assert(wait_until(log_has, "no DSN possible", WAIT_MS));
	cr_assert_eq(log_count(&D, "sender non-delivery notification"), 1,
	    "exactly one DSN: for the post, none for the DSN");
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(queue_count(NULL, 0), 0);
	/* Held, not dropped: the DSN to the post's sender, nothing else. */
	cr_assert_eq(area_count(SPOOL_HOLD, path, sizeof(path)), 1,
	    "the undeliverable DSN is not in hold/");
	free(entry_load(path, &h, &len));
	cr_assert_str_eq(h.command, "send");
	cr_assert_str_eq(h.rcpt, "gamma-bounces@example.org");
	spool_sweep();		/* the held entry too */
}

static bool
two_attributions(void *arg)
{
	(void)arg;
	return log_count(&D, "attributed by dsn") >= 2;
}

/*
 * Bounces score a member: hard 1.0, at most once a day.  At the
 * threshold nobody is disabled: a probe goes to the member, from an
 * envelope sender of its own; this one is accepted, so the member stays
 * and gets the next post.
 */
Test(policy, bounce_scores_send_a_probe, .init = setup, .fini = teardown,
    .timeout = 90)
{
	static const char bounce[] = "From: MAILER-DAEMON@mx.example\n"
	    "Subject: Undelivered\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=delivery-status; "
	    "boundary=\"b\"\n\n--b\nContent-Type: message/delivery-status\n\n"
	    "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; "
	    "m2@members.example\nAction: failed\nStatus: 5.2.1\n\n--b--\n";
	const char *from;
	char *disabled, *log, *probe;

	make_list("delta", 4);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, "bounce_score_threshold = 1.0\n");
	daemon_start(&D, 1);
	pipe_bounce("delta", bounce);
	cr_assert(wait_until(log_has, "list delta: bounce score of "
	    "m2@members.example reached, probe sent from <delta-bounces+probe-",
	    WAIT_MS));
	pipe_bounce("delta", bounce);
	cr_assert(wait_until(two_attributions, NULL, WAIT_MS));
	wait_txns(&S, 1);
	cr_assert_not_null(probe = txn_to(&S, "<m2@members.example>", &from));
	cr_assert(strncmp(from, "<delta-bounces+probe-", 21) == 0 &&
	    strlen(from) == 21 + PROBE_TOKEN_LEN + strlen("@example.org>"),
	    "%s", from);
	cr_assert_not_null(strstr(probe, "Subject: delta: a probe from the "
	    "list server"), "%s", probe);
	free(probe);
	log = list_file("delta", "bounces");
	cr_assert_not_null(strstr(log, " m2@members.example hard 5.2.1 dsn "
	    "probe sent: "), "%s", log);
	cr_assert_not_null(strstr(log, " m2@members.example hard 5.2.1 dsn "
	    "already counted today: "), "%s", log);
	free(log);
	post("delta", "after");
	wait_txns(&S, 2);
	cr_assert(post_reached(&S, "<delta-bounces@example.org>",
	    "<m2@members.example>"), "a probed member missed a post");
	disabled = list_file("delta", "disabled");
	cr_assert_str_eq(disabled, "", "disabled by a score alone");
	free(disabled);
	cr_assert_eq(log_count(&D, "member disabled"), 0);
}

static bool
logged_n(const char *needle, size_t n)
{
	return log_count(&D, needle) >= n;
}

static bool
five_forgeries_handled(void *arg)
{
	(void)arg;
	return logged_n("not a recognizable bounce: forwarded to the owners "
	    "of fv", 3) && logged_n("not a recognizable bounce: forwarded to "
	    "the owners of fn", 1) && logged_n("bounce for "
	    "<x@stranger.example> (verp), not a member of fv: ignored", 1) &&
	    logged_n("list fv: bounce to an unknown, used or expired probe "
	    "address: dropped", 1);
}

/*
 * The issue's attack: mail to -bounces whose headers a sender wrote
 * name a member or a stranger in VERP form.  Only the topmost
 * Delivered-To (the MTA's own) counts, only on a verp = yes list, only
 * for members, and a probe token cannot be guessed: nobody is scored,
 * disabled or planted, at a threshold of 1.0.
 */
Test(policy, forged_verp_disables_and_plants_nobody, .init = setup,
    .fini = teardown, .timeout = 90)
{
	static const char *const forged_fv[] = {
		/* the issue's reproduction, as the wrapper gets it */
		"From: x@attacker.example\nTo: fv-bounces+m1=members.example@"
		"example.org\n\nnot a bounce\n",
		/* through Postfix: its Delivered-To on top, forgeries below */
		"Delivered-To: fv-bounces@example.org\nDelivered-To: "
		"fv-bounces+m1=members.example@example.org\nX-Original-To: "
		"fv-bounces+m1=members.example@example.org\nEnvelope-To: "
		"fv-bounces+m1=members.example@example.org\nFrom: "
		"x@attacker.example\nTo: fv-bounces+m1=members.example@"
		"example.org\n\nnot a bounce\n",
		"Delivered-To: fv-bounces@example.org\nTo: fv-bounces+"
		"x=stranger.example@example.org\n\nnot a bounce\n",
		/* a stranger in the envelope itself: not a member */
		"Delivered-To: fv-bounces+x=stranger.example@example.org\n"
		"From: x@attacker.example\n\nnot a bounce\n",
		/* a guessed probe token */
		"Delivered-To: fv-bounces+probe-0123456789abcdef0123456789abcdef"
		"@example.org\nFrom: x@attacker.example\n\nnot a bounce\n",
	};
	char *f;
	size_t i;

	make_list("fv", 2);
	list_append("fv", "config", "verp = yes\n");
	make_list("fn", 2);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, "bounce_score_threshold = 1.0\n");
	daemon_start(&D, 1);
	for (i = 0; i < sizeof(forged_fv) / sizeof(forged_fv[0]); i++)
		pipe_bounce("fv", forged_fv[i]);
	/* verp = no: even the envelope's VERP form names nobody */
	pipe_bounce("fn", "Delivered-To: fn-bounces+m1=members.example@"
	    "example.org\nFrom: x@attacker.example\n\nnot a bounce\n");
	cr_assert(wait_until(five_forgeries_handled, NULL, WAIT_MS));
	cr_assert_eq(log_count(&D, "attributed by"), 0);
	cr_assert_eq(log_count(&D, "probe sent"), 0);
	for (i = 0; i < 2; i++) {
		const char *list = i == 0 ? "fv" : "fn";

		f = list_file(list, "disabled");
		cr_assert_str_eq(f, "", "%s: disabled: %s", list, f);
		free(f);
		f = list_file(list, "bounce-scores");
		cr_assert_str_eq(f, "", "%s: bounce-scores: %s", list, f);
		free(f);
	}
}

/* A DSN the sink got for a probe, piped back as Postfix would. */
static void
pipe_probe_dsn(const char *list, const char *probe_sender)
{
	char rcpt[ADDR_MAX + 3], *dsn, *msg;
	const char *from;

	snprintf(rcpt, sizeof(rcpt), "%s", probe_sender);
	cr_assert_not_null(dsn = txn_to(&S, rcpt, &from), "no DSN to %s",
	    rcpt);
	cr_assert_str_eq(from, "<>");
	/* local(8) prepends Delivered-To with the envelope recipient. */
	cr_assert_neq(asprintf(&msg, "Delivered-To: %.*s\n%s",
	    (int)strlen(rcpt) - 2, rcpt + 1, dsn), -1);
	pipe_bounce(list, msg);
	free(msg);
	free(dsn);
}

static bool
two_probes_sent(void *arg)
{
	(void)arg;
	return log_count(&D, "probe sent from") >= 2;
}

/* The probe's sender as the sink recorded it for rcpt, "" if none. */
static void
probe_sender_of(const char *rcpt, char *out, size_t len)
{
	const char *from;
	char *probe = txn_to(&S, rcpt, &from);

	snprintf(out, len, "%s", probe != NULL ? from : "");
	free(probe);
}

static size_t
notices_about(const char *member)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i, c = 0;
	char want[256];

	snprintf(want, sizeof(want), "Subject: pr: %s disabled after bounces",
	    member);
	for (i = 0; i < n; i++)
		c += t[i].nrcpt == 1 && strcmp(t[i].rcpt[0],
		    "<owner@example.org>") == 0 && strstr(t[i].data, want) !=
		    NULL;
	txns_free(t, n);
	return c;
}

/* The rcpt of the first transaction to a probe address of pr, or "". */
static void
dsn_to_probe(char *out, size_t len)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i;

	out[0] = '\0';
	for (i = 0; i < n && out[0] == '\0'; i++)
		if (t[i].nrcpt == 1 && strncmp(t[i].rcpt[0],
		    "<pr-bounces+probe-", 18) == 0)
			snprintf(out, len, "%s", t[i].rcpt[0]);
	txns_free(t, n);
}

static bool
has_dsn_to_probe(void *arg)
{
	char rcpt[ADDR_MAX + 3];

	(void)arg;
	dsn_to_probe(rcpt, sizeof(rcpt));
	return rcpt[0] != '\0';
}

static bool
notice_sent(void *arg)
{
	return notices_about(arg) >= 1;
}

/*
 * The probe: m1's is accepted and m1 stays; m2's is refused, and its
 * DSN, delivered back to the probe's own address, disables m2 and tells
 * the owners -- once, however often it comes back.
 */
Test(policy, probe_bounce_disables_once, .init = setup, .fini = teardown,
    .timeout = 120)
{
	char s1[ADDR_MAX + 3], s2[ADDR_MAX + 3], msg[512], *f;
	unsigned int m;

	make_list("pr", 3);
	list_append("pr", "config", "verp = yes\n");
	sink_start(&S, "rcpt m2@members.example 550 5.1.1 no such user\n", 0,
	    false);
	daemon_config(&D, S.port, "bounce_score_threshold = 1.0\n");
	daemon_start(&D, 1);
	for (m = 1; m <= 2; m++) {
		snprintf(msg, sizeof(msg), "Delivered-To: pr-bounces+m%u="
		    "members.example@example.org\nFrom: postmaster@mx.example"
		    "\nSubject: failed\n\nNo such user.\n", m);
		pipe_bounce("pr", msg);
	}
	cr_assert(wait_until(two_probes_sent, NULL, WAIT_MS));
	/* m2's probe is refused: listqd's DSN goes to the probe address. */
	cr_assert(wait_until(has_dsn_to_probe, NULL, WAIT_MS));
	dsn_to_probe(s2, sizeof(s2));
	probe_sender_of("<m1@members.example>", s1, sizeof(s1));
	cr_assert(strncmp(s1, "<pr-bounces+probe-", 18) == 0, "%s", s1);
	cr_assert_str_neq(s1, s2);
	pipe_probe_dsn("pr", s2);
	cr_assert(wait_until(log_has, "list pr: probe to m2@members.example "
	    "bounced: member disabled", WAIT_MS));
	cr_assert(wait_until(notice_sent, "m2@members.example", WAIT_MS));
	pipe_probe_dsn("pr", s2);
	cr_assert(wait_until(log_has, "list pr: bounce to an unknown, used or "
	    "expired probe address: dropped", WAIT_MS));
	f = list_file("pr", "disabled");
	cr_assert_str_eq(f, "m2@members.example\n");
	free(f);
	cr_assert_eq(log_count(&D, "member disabled"), 1);
	cr_assert_eq(notices_about("m2@members.example"), 1);
	cr_assert_eq(notices_about("m1@members.example"), 0);
}

/* Mail to -bounces that is not a bounce goes to the owners. */
Test(policy, unrecognized_bounce_goes_to_owners, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char *fwd;

	make_list("eps", 2);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	pipe_bounce("eps", "From: m0@members.example\nSubject: Out of office\n"
	    "\nAway until Monday.\n");
	wait_txns(&S, 1);
	cr_assert_not_null(fwd = txn_to(&S, "<owner@example.org>", NULL));
	cr_assert_not_null(strstr(fwd, "Subject: Out of office"));
	free(fwd);
	cr_assert_eq(log_count(&D, "not a recognizable bounce: forwarded to "
	    "the owners of eps"), 1);
}

/*
 * VERP: one transaction per member from name-bounces+user=host@domain;
 * a bounce to such an address names its member without any report.
 */
Test(policy, verp_senders_and_attribution, .init = setup, .fini = teardown,
    .timeout = 90)
{
	static const char bounce[] = "Delivered-To: zeta-bounces+m1="
	    "members.example@example.org\nFrom: postmaster@odd.example\n"
	    "Subject: Your mail\n\nCould not deliver it, sorry.\n";
	struct txn *t;
	size_t n, i;
	char want[128];
	uint64_t m;

	make_list("zeta", 3);
	list_append("zeta", "config", "verp = yes\n");
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("zeta", "v");
	wait_txns(&S, 3);
	n = sink_load(&S, &t);
	cr_assert_eq(n, 3, "one transaction per member");
	for (i = 0; i < n; i++) {
		cr_assert_eq(t[i].nrcpt, 1);
		cr_assert(strncmp(t[i].rcpt[0], "<m", 2) == 0 &&
		    text_scan(t[i].rcpt[0] + 2, 999, &m, "@") != NULL, "%s",
		    t[i].rcpt[0]);
		snprintf(want, sizeof(want), "<zeta-bounces+m%u=members.example@"
		    "example.org>", (unsigned int)m);
		cr_assert_str_eq(t[i].from, want);
	}
	txns_free(t, n);
	pipe_bounce("zeta", bounce);
	cr_assert(wait_until(log_has, "bounce: list=zeta, member="
	    "<m1@members.example>, status=5.0.0, hard, attributed by verp",
	    WAIT_MS));
}

/*
 * Failover: with the first relay refusing connections the second
 * carries the mail; once the first is back and its rest is over, it is
 * used again.
 */
Test(policy, relay_failover_and_back, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char extra[256];
	int first = unused_port();

	make_list("eta", 1);
	sink_start(&S2, NULL, 0, false);
	snprintf(extra, sizeof(extra), "smarthost = 127.0.0.1:%d, "
	    "127.0.0.1:%d\nrelay_retry_time = 2s\n", first, S2.port);
	daemon_config(&D, S2.port, extra);
	daemon_start(&D, 1);
	post("eta", "while-down");
	wait_txns(&S2, 1);
	snprintf(extra, sizeof(extra), "relay 127.0.0.1:%d: no session "
	    "(connect to 127.0.0.1[127.0.0.1]:%d: Connection refused); "
	    "paused 1 s", first, first);
	cr_assert_eq(log_count(&D, extra), 1, "the pause of the first relay "
	    "is logged once, with its length and cause");
	snprintf(extra, sizeof(extra), "relay=127.0.0.1[127.0.0.1]:%d",
	    S2.port);
	/* Logged once the relay's reply is in: after the sink has the mail. */
	cr_assert(wait_until(log_has, extra, WAIT_MS), "the log names the "
	    "relay used");
	sink_start(&S, NULL, first, false);
	sleep(3);
	post("eta", "after");
	wait_txns(&S, 1);
	cr_assert_eq(sink_count(&S2), 1);
}

/*
 * A 421 at a RCPT ends the session after the relay refused an earlier
 * recipient of the same transaction for good; the entry's next
 * transaction is never offered.  The refused recipient still gets its
 * DSN: the entry was tried, so its attempt is settled, not kept as if
 * the relay had never seen it.
 */
Test(policy, dsn_when_session_ends_mid_entry, .init = setup,
    .fini = teardown, .timeout = 90)
{
	const char *from;
	char *dsn;

	make_list("gamma", 3);
	sink_start(&S, "rcpt m0@members.example 550 5.1.1 no such user\n"
	    "close-once RCPT 421\n", 0, false);
	daemon_config(&D, S.port, "max_rcpts_per_transaction = 2\n"
	    "min_backoff = 1s\nmax_backoff = 2s\n");
	daemon_start(&D, 1);
	post("gamma", "cut");
	wait_txns(&S, 2);	/* m1 and m2 retried together; the DSN */
	cr_assert_not_null(dsn = txn_to(&S, "<gamma-bounces@example.org>",
	    &from), "no DSN for m0");
	cr_assert_str_eq(from, "<>");
	cr_assert_not_null(strstr(dsn, "Final-Recipient: rfc822; "
	    "m0@members.example\nAction: failed\nStatus: 5.1.1\n"), "%s", dsn);
	free(dsn);
}

/*
 * SIGTERM while the first transaction of an entry waits for its end of
 * data: that transaction is recorded, the next one never offered.  The
 * recipient it refused for good is reported before listqd stops, and
 * the one never offered is delivered after the restart: the entry was
 * tried, so it is settled, not kept as if the relay had not seen it.
 */
Test(policy, dsn_when_stopped_mid_entry, .init = setup, .fini = teardown,
    .timeout = 90)
{
	const char *from;
	char *dsn;

	make_list("delta", 3);
	sink_start(&S, "rcpt m0@members.example 550 5.1.1 no such user\n"
	    "stall-once DOT 1\n", 0, false);
	daemon_config(&D, S.port, "max_rcpts_per_transaction = 2\n");
	daemon_start(&D, 1);
	post("delta", "stopped");
	cr_assert(wait_until(log_has, "list=delta, command=post", WAIT_MS));
	cr_assert(sink_wait_fired(&S, "stall DOT", 1, WAIT_MS), "the end of "
	    "data never reached the relay");
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, "sender non-delivery notification"), 1,
	    "the DSN for m0 is queued before listqd stops");
	daemon_start(&D, 1);
	wait_txns(&S, 3);	/* m1; the DSN; m2 */
	cr_assert_not_null(dsn = txn_to(&S, "<delta-bounces@example.org>",
	    &from), "no DSN for m0");
	cr_assert_str_eq(from, "<>");
	cr_assert_not_null(strstr(dsn, "Final-Recipient: rfc822; "
	    "m0@members.example\nAction: failed\nStatus: 5.1.1\n"), "%s",
	    dsn);
	free(dsn);
}
