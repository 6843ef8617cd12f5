/*
 * SPDX-License-Identifier: ISC
 *
 * A small JSON writer (RFC 8259) for listq --json.
 *
 * Invariants: the output is always valid JSON whatever the strings hold:
 * control characters, quotes and backslashes are escaped, and bytes that
 * are not valid UTF-8 become U+FFFD; nesting deeper than JSON_DEPTH is
 * refused (abort), never written unbalanced.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"

void
json_start(struct json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
}

static void string(FILE *, const char *);

/* Writes the separator and the key of the next value. */
static void
key(struct json *j, const char *k)
{
	if (j->depth == 0)
		return;
	if (j->more[j->depth - 1])
		fputc(',', j->f);
	j->more[j->depth - 1] = true;
	if (k != NULL) {
		string(j->f, k);
		fputc(':', j->f);
	}
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n, i;

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	n = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;	/* overlong, surrogate, beyond U+10FFFF */
	return n;
}

static void
string(FILE *f, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n;

	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if (*s < 0x20 || *s == 0x7f)
			fprintf(f, "\\u%04x", *s);
		else if (*s < 0x80)
			fputc(*s, f);
		else if ((n = utf8_len(s)) > 0) {
			fwrite(s, 1, n, f);
			s += n - 1;
		} else
			fputs("\\ufffd", f);
	}
	fputc('"', f);
}

void
json_str(struct json *j, const char *k, const char *v)
{
	key(j, k);
	if (v == NULL)
		fputs("null", j->f);
	else
		string(j->f, v);
}

static void
open_(struct json *j, const char *k, char open, char close)
{
	if (j->depth == JSON_DEPTH)
		abort();
	key(j, k);
	fputc(open, j->f);
	j->close[j->depth] = close;
	j->more[j->depth++] = false;
}

void
json_object(struct json *j, const char *k)
{
	open_(j, k, '{', '}');
}

void
json_array(struct json *j, const char *k)
{
	open_(j, k, '[', ']');
}

void
json_end(struct json *j)
{
	fputc(j->close[--j->depth], j->f);
	if (j->depth == 0)
		fputc('\n', j->f);
}

void
json_int(struct json *j, const char *k, long long v)
{
	key(j, k);
	fprintf(j->f, "%lld", v);
}

void
json_num(struct json *j, const char *k, double v)
{
	key(j, k);
	fprintf(j->f, "%.6f", v);
}

void
json_bool(struct json *j, const char *k, bool v)
{
	key(j, k);
	fputs(v ? "true" : "false", j->f);
}

void
json_null(struct json *j, const char *k)
{
	key(j, k);
	fputs("null", j->f);
}
