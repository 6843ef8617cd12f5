/*
 * SPDX-License-Identifier: ISC
 *
 * Reading listq.conf (see config.h).
 *
 * Invariants: every key has one entry in the table below, with its
 * default and its bounds; a value is accepted only when all of it parses
 * and lies within the bounds; the struct is left with defaults or parsed
 * values, never half of a value.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "number.h"

enum kind { STR, NUM, DUR, DEC, ENUM };

struct key {
	const char	*name;
	enum kind	 kind;
	size_t		 off;
	size_t		 size;		/* STR: buffer size */
	unsigned int	 min, max;	/* NUM, DUR; DEC in tenths */
	const char	*def;
	const char	*const *words;	/* ENUM: the values, by number */
};

static const char *const tls_words[] = { "none", "may", "encrypt", "verify",
	NULL };
static const char *const yes_no[] = { "no", "yes", NULL };

#define S(f)	offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define U(f)	offsetof(struct config, f), 0

static const struct key keys[] = {
	{ "smarthost", STR, S(smarthost), 0, 0, "localhost:25", NULL },
	{ "helo_name", STR, S(helo_name), 0, 0, "", NULL },
	{ "workers", NUM, U(workers), 1, 256, "4", NULL },
	{ "max_messages_per_session", NUM, U(max_messages_per_session), 1,
	    10000, "100", NULL },
	{ "max_rcpts_per_transaction", NUM, U(max_rcpts_per_transaction), 1,
	    10000, "500", NULL },
	{ "connect_timeout", DUR, U(connect_timeout), 1, 3600, "30s", NULL },
	{ "command_timeout", DUR, U(command_timeout), 1, 3600, "300s", NULL },
	{ "data_timeout", DUR, U(data_timeout), 1, 7200, "600s", NULL },
	{ "min_backoff", DUR, U(min_backoff), 1, 86400, "300s", NULL },
	{ "max_backoff", DUR, U(max_backoff), 1, 864000, "3600s", NULL },
	{ "max_queue_lifetime", DUR, U(max_queue_lifetime), 1, 8640000, "5d", NULL },
	{ "rescan_interval", DUR, U(rescan_interval), 1, 86400, "300s", NULL },
	{ "smarthost_backoff", DUR, U(smarthost_backoff), 1, 3600, "1s", NULL },
	{ "relay_retry_time", DUR, U(relay_retry_time), 1, 86400, "60s", NULL },
	{ "delay_warning_time", DUR, U(delay_warning_time), 0, 8640000, "4h", NULL },
	{ "recipient_delimiter", STR, S(recipient_delimiter), 0, 0, "+", NULL },
	{ "bounce_score_threshold", DEC, U(bounce_score_threshold), 1, 10000,
	    "5.0", NULL },
	{ "bounce_info_stale_after", DUR, U(bounce_info_stale_after), 1,
	    8640000, "7d", NULL },
	{ "smtp_tls", ENUM, U(smtp_tls), 0, 3, "none", tls_words },
	{ "smtp_pipelining", ENUM, U(smtp_pipelining), 0, 1, "yes", yes_no },
	{ "smtp_sessions", NUM, U(smtp_sessions), 1, 64, "4", NULL },
	{ "smtp_tls_ca_file", STR, S(smtp_tls_ca_file), 0, 0, "", NULL },
	{ "smtp_auth_user", STR, S(smtp_auth_user), 0, 0, "", NULL },
	{ "smtp_auth_password_file", STR, S(smtp_auth_password_file), 0, 0,
	    "", NULL },
	{ "dns_resolver", STR, S(dns_resolver), 0, 0, "", NULL },
	{ "dns_timeout", DUR, U(dns_timeout), 1, 60, "2s", NULL },
	{ "dmarc_defer_time", DUR, U(dmarc_defer_time), 0, 86400, "5m", NULL },
	{ "moderation_lifetime", DUR, U(moderation_lifetime), 1, 8640000,
	    "14d", NULL },
	{ "subscribe_lifetime", DUR, U(subscribe_lifetime), 1, 8640000,
	    "3d", NULL },
	{ "subscribe_confirm_daily", NUM, U(subscribe_confirm_daily), 1,
	    10000, "5", NULL },
	{ "subscribe_confirm_hourly", NUM, U(subscribe_confirm_hourly), 1,
	    1000000, "100", NULL },
};
#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

/* Parses a whole number with an optional unit; -1 if malformed. */
static int
parse_unsigned(const char *v, enum kind kind, unsigned long *out)
{
	static const struct { char unit; unsigned long mul; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	const char *end;
	uint64_t n;
	size_t i;

	if (number_scan(v, 0xffffffffULL, &n, &end) == -1)
		return -1;
	if (*end != '\0' && kind == DUR && end[1] == '\0')
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (*end == units[i].unit) {
				n *= units[i].mul;
				end++;
				break;
			}
	if (*end != '\0' || n > 0xffffffffULL)
		return -1;
	*out = (unsigned long)n;
	return 0;
}

/* "5", "5.0" or "2.5" as tenths; -1 if malformed. */
static int
parse_tenths(const char *v, unsigned long *out)
{
	char whole[16];
	size_t len = strcspn(v, ".");
	unsigned long w;

	if (len == 0 || len >= sizeof(whole))
		return -1;
	memcpy(whole, v, len);
	whole[len] = '\0';
	if (parse_unsigned(whole, NUM, &w) == -1 || w > 100000)
		return -1;
	if (v[len] == '\0') {
		*out = w * 10;
		return 0;
	}
	if (!isdigit((unsigned char)v[len + 1]) || (v[len + 2] != '\0' &&
	    strspn(v + len + 2, "0") != strlen(v + len + 2)))
		return -1;
	*out = w * 10 + (unsigned long)(v[len + 1] - '0');
	return 0;
}

static int
parse_word(const char *v, const char *const *words, unsigned long *out)
{
	unsigned long i;

	for (i = 0; words[i] != NULL; i++)
		if (strcmp(v, words[i]) == 0) {
			*out = i;
			return 0;
		}
	return -1;
}

/* Stores v for key k; returns NULL or what is wrong with v. */
static const char *
set_key(struct config *c, const struct key *k, const char *v)
{
	unsigned long n;
	char *base = (char *)c + k->off;

	if (k->kind == STR) {
		if (strlen(v) >= k->size)
			return "value too long";
		memcpy(base, v, strlen(v) + 1);
		return NULL;
	}
	if (k->kind == ENUM) {
		if (parse_word(v, k->words, &n) == -1)
			return "not one of the allowed values";
	} else if (k->kind == DEC ? parse_tenths(v, &n) == -1 :
	    parse_unsigned(v, k->kind, &n) == -1)
		return k->kind == DEC ? "not a decimal number (like 5.0)" :
		    k->kind == DUR ? "not a duration (a number with an "
		    "optional unit s, m, h or d)" : "not a whole number";
	if (n < k->min || n > k->max)
		return "out of range";
	*(unsigned int *)(void *)base = (unsigned int)n;
	return NULL;
}

void
config_defaults(struct config *c)
{
	size_t i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < NKEYS; i++)
		set_key(c, &keys[i], keys[i].def);
	if (gethostname(c->helo_name, sizeof(c->helo_name) - 1) == -1)
		strcpy(c->helo_name, "localhost");
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Splits "key = value" and hands it to fn; returns NULL or what is wrong. */
static const char *
apply_line(char *line, conf_handler fn, void *arg, char *why,
    size_t whylen)
{
	char *eq, *name, *value;
	const char *bad;

	line[strcspn(line, "#")] = '\0';
	if (*trim(line) == '\0')
		return NULL;
	if ((eq = strchr(line, '=')) == NULL)
		return "expected \"key = value\"";
	*eq = '\0';
	name = trim(line);
	value = trim(eq + 1);
	if ((bad = fn(name, value, arg)) == NULL)
		return NULL;
	snprintf(why, whylen, "%.64s: %.80s", name, bad);
	return why;
}

int
conf_read(const char *path, conf_handler fn, void *arg, char *err,
    size_t errlen)
{
	char line[1024], why[160];
	const char *bad;
	unsigned int lineno = 0;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f))
			bad = "line too long";
		else
			bad = apply_line(line, fn, arg, why, sizeof(why));
		if (bad != NULL) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, bad);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

static const char *
config_key(const char *name, const char *value, void *arg)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(name, keys[i].name) == 0)
			return set_key(arg, &keys[i], value);
	return "unknown key";
}

/* smarthost: host[:port], comma-separated, ports 1 to 65535. */
static const char *
smarthost_bad(const char *list)
{
	char copy[CONFIG_STR_MAX], *p = copy, *item, *colon;
	uint64_t port;
	int n = 0;

	strlcpy(copy, list, sizeof(copy));
	while ((item = strsep(&p, ",")) != NULL) {
		item += strspn(item, " \t");
		item[strcspn(item, " \t")] = '\0';
		if (*item == '\0')
			continue;
		n++;
		if ((colon = strrchr(item, ':')) == NULL)
			continue;
		if (colon == item)
			return "a relay without a host";
		if (number_parse(colon + 1, 65535, &port) == -1 || port == 0)
			return "a relay port must be 1 to 65535";
	}
	return n == 0 ? "empty" : NULL;
}

static int
check_bounds(const struct config *c, char *err, size_t errlen,
    const char *path)
{
	const char *bad;

	if (c->min_backoff > c->max_backoff) {
		snprintf(err, errlen, "%s: min_backoff exceeds max_backoff",
		    path);
		return -1;
	}
	if (strlen(c->recipient_delimiter) != 1 ||
	    strchr("+-=_.", c->recipient_delimiter[0]) == NULL) {
		snprintf(err, errlen, "%s: recipient_delimiter: one of + - = _ .",
		    path);
		return -1;
	}
	if (c->smtp_auth_user[0] != '\0' &&
	    c->smtp_auth_password_file[0] == '\0') {
		snprintf(err, errlen, "%s: smtp_auth_user needs "
		    "smtp_auth_password_file", path);
		return -1;
	}
		if ((bad = smarthost_bad(c->smarthost)) != NULL) {
		snprintf(err, errlen, "%s: smarthost: %s", path, bad);
		return -1;
	}
	return 0;
}

int
config_load(const char *path, int missing_ok, struct config *c, char *err,
    size_t errlen)
{
	if (missing_ok && access(path, F_OK) == -1 && errno == ENOENT)
		return check_bounds(c, err, errlen, path);
	if (conf_read(path, config_key, c, err, errlen) == -1)
		return -1;
	return check_bounds(c, err, errlen, path);
}
