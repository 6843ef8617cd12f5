/*
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
