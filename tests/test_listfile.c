/*
 * SPDX-License-Identifier: ISC
 *
 * Lines of a list file as every reader takes them, end to end: a line
 * longer than the limit (1,023 bytes) is one bad line -- never a comment
 * plus an address -- for listqd's expansion, `listq members list`,
 * `listq check` (which names it) and `listq members import` (which
 * refuses the file).  The real wrapper, listqd, listq and the sink run
 * as separate processes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "admin_run.h"
#include "daemon.h"
#include "harness.h"

#define WAIT_MS		30000
#define LONG_LINE	1044	/* bytes before the newline */
#define EVIL		"evil@attacker.example"

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

/*
 * A comment line of LONG_LINE bytes whose last bytes are an address:
 * a reader of 1,024-byte pieces sees the comment, then the address.
 */
static void
long_comment_line(char *out, size_t len)
{
	size_t n = LONG_LINE - strlen(EVIL);

	cr_assert_leq(LONG_LINE + 2, len);
	out[0] = '#';
	memset(out + 1, 'x', n - 1);
	memcpy(out + n, EVIL, strlen(EVIL));
	out[LONG_LINE] = '\n';
	out[LONG_LINE + 1] = '\0';
}

static bool
log_has(void *arg)
{
	return log_count(&D, arg) > 0;
}

Test(listfile, long_line_is_one_bad_line_everywhere, .init = setup,
    .fini = teardown, .timeout = 90)
{
	static const char msg[] = "From: s@example.net\nSubject: t\n\nbody\n";
	char line[LONG_LINE + 2];
	struct result r;
	struct txn *t;
	size_t n, i, k;

	long_comment_line(line, sizeof(line));
	make_list("lines", 2);
	list_append("lines", "members", line);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	cr_assert_eq(run_simple("post", "lines", msg, strlen(msg), &r), 0,
	    "%s", r.err);
	cr_assert(wait_until(log_has, "command=post, from=<lines-bounces@"
	    "example.org>, nrcpt=", WAIT_MS));
	cr_assert_eq(log_count(&D, "nrcpt=2"), 1, "the long line was taken "
	    "for an address");
	cr_assert_eq(log_count(&D, "list lines: 1 invalid address lines in "
	    "members skipped"), 1);
	n = sink_load(&S, &t);
	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt; k++)
			cr_assert_str_neq(t[i].rcpt[k], "<" EVIL ">");
	txns_free(t, n);

	LQ(0, "members", "lines", "list");
	HASNT(O.out, EVIL);
	HAS(O.out, "m0@members.example\nm1@members.example\n");
	LQ(1, "-f", D.conf, "check");
	HAS(O.out, "warning: list lines: 1 bad line skipped, the first: "
	    "members line 5: longer than 1023 bytes");
}

/* One line of 1,023 bytes is still read whole; 1,024 is too long. */
Test(listfile, import_refuses_a_long_line, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char path[1024], line[LONG_LINE + 2], edge[1100];
	size_t pad;
	FILE *f;

	make_list("imp", 1);
	snprintf(path, sizeof(path), "%s.import", T.spool);
	long_comment_line(line, sizeof(line));
	cr_assert_not_null(f = fopen(path, "w"));
	fprintf(f, "a@example.net\n%s", line);
	cr_assert_eq(fclose(f), 0);
	LQ(65, "members", "imp", "import", path);
	HAS(O.err, ":2: longer than 1023 bytes (1 bad line in all); nothing "
	    "imported");
	LQ(0, "members", "imp", "list");
	cr_assert_str_eq(O.out, "m0@members.example\n");

	/* An address padded with blanks to exactly 1,023 bytes is fine. */
	pad = 1023 - strlen(EVIL);
	memset(edge, ' ', pad);
	snprintf(edge + pad, sizeof(edge) - pad, "%s\n", EVIL);
	cr_assert_not_null(f = fopen(path, "w"));
	fprintf(f, "%s", edge);
	cr_assert_eq(fclose(f), 0);
	LQ(0, "members", "imp", "import", path);
	LQ(0, "members", "imp", "list");
	cr_assert_str_eq(O.out, EVIL "\n");
	unlink(path);
}
