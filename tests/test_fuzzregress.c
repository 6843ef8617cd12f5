/*
 * SPDX-License-Identifier: ISC
 *
 * Regression tests for what fuzzing and static analysis found in the
 * parsers (tests/fuzz/).  Inputs that crashed a harness live in
 * tests/fuzz/corpus/<target>/ and are replayed by make fuzz-smoke.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounce.h"
#include "config.h"
#include "harness.h"

/*
 * bounce-scores lines with a negative, overflowing or trailing field are
 * dropped, not read as huge scores (sscanf's %lu took "-5" as 2^64-5).
 */
Test(fuzzregress, bounce_scores_reject_bad_numbers)
{
	char dir[] = "/tmp/listq-bs-XXXXXX", path[128], buf[4096], err[256],
	    token[PROBE_TOKEN_LEN + 1];
	struct bounce_hit hit;
	struct config c;
	FILE *f;
	size_t n;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/l", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/l/bounce-scores", dir);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs("good@example.org 5 1000\n"
	    "neg@example.org -5 1000\n"
	    "big@example.org 99999999999999999999999 1000\n"
	    "trail@example.org 5 1000 extra\n"
	    "notanaddress 5 1000\n"
	    "negtime@example.org 5 -1000\n", f);
	fclose(f);
	memset(&hit, 0, sizeof(hit));
	strcpy(hit.addr, "new@example.org");
	strcpy(hit.status, "4.2.2");
	hit.kind = BOUNCE_SOFT;
	hit.how = "dsn";
	config_defaults(&c);
	cr_assert_geq(bounce_record(dir, "l", "new@example.org", &hit, &c,
	    2000000000, token, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(f = fopen(path, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	cr_expect_not_null(strstr(buf, "good@example.org 5 1000\n"), "%s", buf);
	cr_expect_not_null(strstr(buf, "new@example.org "), "%s", buf);
	cr_expect_null(strstr(buf, "neg@"), "%s", buf);
	cr_expect_null(strstr(buf, "big@"), "%s", buf);
	cr_expect_null(strstr(buf, "trail@"), "%s", buf);
	cr_expect_null(strstr(buf, "notanaddress"), "%s", buf);
	cr_expect_null(strstr(buf, "negtime@"), "%s", buf);
	rm_tree(dir);
}
