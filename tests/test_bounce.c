/*
 * SPDX-License-Identifier: ISC
 *
 * Unit tests of bounce parsing and DSN composition: every sample report
 * in tests/data/bounces/ (Postfix, Sendmail, Exim, qmail QSBMF, Exchange,
 * Gmail- and Yahoo-style, CRLF, malformed, not a bounce at all) yields
 * exactly the members and statuses that EXPECT lists; a DSN that listqd
 * composes parses back to what it reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "bounce.h"
#include "dsn.h"
#include "harness.h"
#include "msghead.h"

#define DATA	"tests/data/bounces/"

struct expect {
	char	file[64], member[ADDR_MAX + 1], status[16], kind[8], how[8];
};

static size_t
load_expect(struct expect *e, size_t max)
{
	char line[512];
	size_t n = 0;
	FILE *f = fopen(DATA "EXPECT", "r");

	cr_assert_not_null(f, "run from the top of the tree");
	while (fgets(line, sizeof(line), f) != NULL && n < max) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		cr_assert_eq(sscanf(line, "%63s %254s %15s %7s %7s", e[n].file,
		    e[n].member, e[n].status, e[n].kind, e[n].how), 5, "%s",
		    line);
		n++;
	}
	fclose(f);
	return n;
}

static char *
load_sample(const char *file)
{
	char path[256];
	size_t len;

	snprintf(path, sizeof(path), DATA "%s", file);
	return read_file(path, &len);
}

Test(bounce, samples_yield_the_expected_members)
{
	struct bounce_hit hits[BOUNCE_HITS];
	struct expect e[64];
	size_t n = load_expect(e, 64), i, k, got, want, files = 0;
	char *msg;

	for (i = 0; i < n; i += want, files++) {
		for (want = 0; i + want < n && strcmp(e[i + want].file,
		    e[i].file) == 0; want++)
			continue;
		msg = load_sample(e[i].file);
		got = bounce_parse(msg, hits, BOUNCE_HITS);
		free(msg);
		if (strcmp(e[i].member, "-") == 0) {
			cr_assert_eq(got, 0, "%s: %zu hits, want none",
			    e[i].file, got);
			continue;
		}
		cr_assert_eq(got, want, "%s: %zu hits, want %zu", e[i].file,
		    got, want);
		for (k = 0; k < want; k++) {
			const struct expect *x = &e[i + k];

			cr_assert_str_eq(hits[k].addr, x->member, "%s", x->file);
			cr_assert_str_eq(hits[k].status, x->status, "%s: %s",
			    x->file, hits[k].addr);
			cr_assert_str_eq(hits[k].kind == BOUNCE_HARD ? "hard" :
			    "soft", x->kind, "%s: %s", x->file, hits[k].addr);
			cr_assert_str_eq(hits[k].how, x->how, "%s", x->file);
		}
	}
	cr_assert_geq(files, 15, "only %zu sample reports", files);
}

/* The VERP member of a bounce's envelope recipient (topmost Delivered-To). */
static bool
verp_of(const char *headers, const char *local, char delim, char *member,
    size_t len)
{
	char ext[ADDR_MAX + 1];

	return bounce_envelope_ext(headers, local, "example.org", delim, ext,
	    sizeof(ext)) && bounce_verp_member(ext, member, len);
}

Test(bounce, verp_names_the_member)
{
	char *msg = load_sample("verp-only.eml"), member[ADDR_MAX + 1];
	char *end = strstr(msg, "\n\n");

	end[1] = '\0';
	cr_assert(verp_of(msg, "alpha-bounces", '+', member, sizeof(member)));
	cr_assert_str_eq(member, "zoe@members.example");
	cr_assert(!verp_of(msg, "beta-bounces", '+', member, sizeof(member)));
	cr_assert(!verp_of(msg, "alpha-bounces", '-', member, sizeof(member)));
	free(msg);
}

/*
 * Only the topmost Delivered-To, the one the MTA's local delivery
 * prepended, counts: a VERP address in To:, X-Original-To:,
 * Envelope-To: or a Delivered-To: below it is the sender's writing.
 */
Test(bounce, verp_only_from_the_topmost_delivered_to)
{
	static const char forged[] = "Delivered-To: alpha-bounces@example.org\n"
	    "Delivered-To: alpha-bounces+a=example.net@example.org\n"
	    "X-Original-To: alpha-bounces+a=example.net@example.org\n"
	    "Envelope-To: alpha-bounces+a=example.net@example.org\n"
	    "To: alpha-bounces+a=example.net@example.org\n";
	static const char none[] = "To: alpha-bounces+a=example.net@example.org"
	    "\nX-Original-To: alpha-bounces+a=example.net@example.org\n";
	char member[ADDR_MAX + 1], ext[ADDR_MAX + 1], token[PROBE_TOKEN_LEN + 1];

	cr_assert(!verp_of(forged, "alpha-bounces", '+', member,
	    sizeof(member)));
	cr_assert(!verp_of(none, "alpha-bounces", '+', member, sizeof(member)));
	cr_assert(bounce_envelope_ext("Delivered-To: <ALPHA-bounces+probe-"
	    "00112233445566778899AABBCCDDEEFF@Example.org>\n", "alpha-bounces",
	    "example.org", '+', ext, sizeof(ext)));
	cr_assert(probe_token_of(ext, token));
	cr_assert_str_eq(token, "00112233445566778899aabbccddeeff");
	cr_assert(!probe_token_of("probe-0011", token));
	cr_assert(!probe_token_of("probe-00112233445566778899aabbccddeefg",
	    token));
	cr_assert(!probe_token_of("a=example.net", token));
}

Test(bounce, truncated_and_hostile_input)
{
	static const char *const failed[] = { "erin@members.example",
	    "grace@members.example" };
	struct bounce_hit hits[2];
	char *msg = load_sample("postfix-two.eml");
	size_t len = strlen(msg), cut, want, i, at[2];

	/* A failed recipient counts once its "Action: failed" is whole. */
	cr_assert_not_null(strstr(msg, "Action: failed"));
	cr_assert_not_null(strstr(msg, "Action: Failed"));
	at[0] = (size_t)(strstr(msg, "Action: failed") - msg) + 14;
	at[1] = (size_t)(strstr(msg, "Action: Failed") - msg) + 14;
	/* Every prefix parses without reading past its end, to what it has. */
	for (cut = 0; cut <= len; cut++) {
		char *part = strndup(msg, cut);

		want = (cut >= at[0]) + (cut >= at[1]);
		cr_assert_eq(bounce_parse(part, hits, 2), want, "cut at %zu",
		    cut);
		for (i = 0; i < want; i++)
			cr_assert_str_eq(hits[i].addr, failed[i], "cut at %zu",
			    cut);
		free(part);
	}
	cr_assert_eq(bounce_parse(msg, hits, 1), 1, "max is honoured");
	free(msg);
	cr_assert_eq(bounce_parse("", hits, 2), 0);
	cr_assert_eq(bounce_parse("Content-Type: message/delivery-status",
	    hits, 2), 0);
}

/* What listqd reports, its own bounce processing reads back. */
Test(dsn, composed_report_parses_back)
{
	struct entry_header h = { .arrival_sec = 1764374400, .uid = 1,
	    .gid = 1 };
	struct rcpt_status a = { .addr = "m1@members.example", .code = 550,
	    .dsn = "5.1.1", .reply = "550 5.1.1 no such user" };
	struct rcpt_status b = { .addr = "m2@members.example", .code = 0,
	    .dsn = "4.4.7", .reply = "delivery time expired" };
	const struct rcpt_status *r[] = { &a, &b };
	struct dsn_report d = { .kind = DSN_FAILED, .h = &h,
	    .to = "alpha-bounces@example.org", .reporting_mta = "lists.test",
	    .remote_mta = "relay.test", .r = r, .n = 2,
	    .headers = "Subject: hi\nFrom: x@example.net\n", .now = 1764378000 };
	struct bounce_hit hits[4];
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	qid_new(h.id);
	strcpy(h.command, "post");
	strcpy(h.list, "alpha");
	cr_assert_not_null(f = open_memstream(&text, &len));
	cr_assert_eq(dsn_compose(&d, f), 0);
	fclose(f);
	cr_assert_not_null(strstr(text, "\nTo: <alpha-bounces@example.org>\n"));
	cr_assert_not_null(strstr(text, "report-type=delivery-status"));
	cr_assert_not_null(strstr(text, "\nSubject: hi\n"), "original headers");
	cr_assert_eq(bounce_parse(text, hits, 4), 2, "%s", text);
	cr_assert_str_eq(hits[0].addr, "m1@members.example");
	cr_assert_str_eq(hits[0].status, "5.1.1");
	cr_assert_eq(hits[0].kind, BOUNCE_HARD);
	cr_assert_str_eq(hits[1].addr, "m2@members.example");
	cr_assert_str_eq(hits[1].status, "4.4.7");
	cr_assert_eq(hits[1].kind, BOUNCE_SOFT);
	cr_assert(!dsn_allowed("", NULL), "never to the null sender");
	cr_assert(!dsn_allowed("x@example.org", "Content-Type: multipart/report;"
	    " report-type=delivery-status;\n"), "never for a DSN");
	cr_assert(dsn_allowed("x@example.org", "Subject: hi\n"));
	free(text);
}
