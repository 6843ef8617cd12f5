/*
 * SPDX-License-Identifier: ISC
 *
 * Unit tests of listq.conf parsing (common/config.c): defaults, units,
 * decimals, enumerations, and errors that name file, line and key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "config.h"

static char path[] = "/tmp/listq-conf.XXXXXX";

/* Loads text as a config file; returns config_load's result. */
static int
load(const char *text, struct config *c, char *err, size_t len)
{
	int fd = mkstemp(path);
	int rc;

	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	config_defaults(c);
	rc = config_load(path, 0, c, err, len);
	unlink(path);
	strcpy(path, "/tmp/listq-conf.XXXXXX");
	return rc;
}

Test(config, defaults)
{
	struct config c;
	char err[256];

	cr_assert_eq(load("", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.smarthost, "localhost:25");
	cr_assert_eq(c.workers, 4);
	cr_assert_eq(c.max_rcpts_per_transaction, 500);
	cr_assert_eq(c.min_backoff, 300);
	cr_assert_eq(c.max_backoff, 3600);
	cr_assert_eq(c.max_queue_lifetime, 5 * 86400);
	cr_assert_eq(c.delay_warning_time, 4 * 3600);
	cr_assert_eq(c.relay_retry_time, 60);
	cr_assert_eq(c.bounce_score_threshold, 50);
	cr_assert_eq(c.bounce_info_stale_after, 7 * 86400);
	cr_assert_eq(c.smtp_tls, TLS_NONE);
	cr_assert_eq(c.smtp_pipelining, 1);
	cr_assert_str_eq(c.recipient_delimiter, "+");
}

Test(config, values_and_units)
{
	struct config c;
	char err[256];

	cr_assert_eq(load("# comment\n\nworkers = 8\nmin_backoff = 2m # two\n"
	    "max_queue_lifetime=1d\nbounce_score_threshold = 2.5\n"
	    "smtp_tls = encrypt\nsmarthost = a:25, b:2525\n"
	    "delay_warning_time = 0\nsmtp_pipelining = no\n", &c, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.smtp_pipelining, 0);
	cr_assert_eq(c.workers, 8);
	cr_assert_eq(c.min_backoff, 120);
	cr_assert_eq(c.max_queue_lifetime, 86400);
	cr_assert_eq(c.bounce_score_threshold, 25);
	cr_assert_eq(c.smtp_tls, TLS_ENCRYPT);
	cr_assert_str_eq(c.smarthost, "a:25, b:2525");
	cr_assert_eq(c.delay_warning_time, 0);
}

Test(config, errors_name_file_line_and_key)
{
	static const char *const cases[][2] = {
		{ "workers = 4\nfrobnicate = 1\n", ":2: frobnicate: unknown key" },
		{ "workers = many\n", ":1: workers: not a whole number" },
		{ "workers = 0\n", ":1: workers: out of range" },
		{ "min_backoff = 5x\n", ":1: min_backoff: not a duration" },
		{ "smtp_tls = sometimes\n", ":1: smtp_tls: not one of" },
		{ "smtp_pipelining = maybe\n", "smtp_pipelining: not one of" },
		{ "bounce_score_threshold = 2.55\n", "not a decimal" },
		{ "just words\n", ":1: expected \"key = value\"" },
		{ "min_backoff = 2h\nmax_backoff = 1h\n", "min_backoff exceeds" },
		{ "recipient_delimiter = ++\n", "recipient_delimiter" },
		{ "smtp_auth_user = u\n", "needs smtp_auth_password_file" },
		{ "smarthost = 127.0.0.1:\n", "smarthost: a relay port" },
		{ "smarthost = a:25, b:70000\n", "smarthost: a relay port" },
		{ "smarthost = :25\n", "smarthost: a relay without a host" },
		{ "smarthost = ,\n", "smarthost: empty" },
	};
	struct config c;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(load(cases[i][0], &c, err, sizeof(err)), -1,
		    "accepted: %s", cases[i][0]);
		cr_assert_not_null(strstr(err, cases[i][1]), "%s", err);
		cr_assert_not_null(strstr(err, "/tmp/listq-conf."), "%s", err);
	}
}
