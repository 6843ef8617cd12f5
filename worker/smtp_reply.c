/*
 * SPDX-License-Identifier: ISC
 *
 * smtp_reply.c -- gathering and judging SMTP replies for listqd's client.
 *
 * A reply is one or more lines "ddd-text" ending with "ddd text" (or a
 * bare "ddd"); the session hands lines in as the I/O layer completes
 * them, so a reply split across any number of reads is put together
 * here.  Contract: a reply is complete only at its last line; every line
 * must carry the same code, else the relay is not speaking SMTP and the
 * caller drops the session; the text kept is printable ASCII only, so
 * that a relay cannot put control bytes into a log line or a DSN.
 * Failure modes: none beyond the -1 of a malformed line; long texts are
 * cut, never overflowed.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

void
smtp_reply_reset(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void
smtp_clean(char *dst, size_t len, const char *src, size_t srclen)
{
	size_t i;

	if (len == 0)
		return;
	for (i = 0; i < srclen && i + 1 < len; i++)
		if (src[i] >= 0x20 && src[i] < 0x7f)
			dst[i] = src[i];
		else
			dst[i] = '?';
	dst[i] = '\0';
}

/* The code of a reply line, with its separator, or -1. */
static int
line_code(const char *line, size_t len, char *sep)
{
	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	if (line[0] < '2' || line[0] > '5')
		return -1;
	*sep = ' ';
	if (len > 3)
		*sep = line[3];
	if (*sep != ' ' && *sep != '-')
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

const char *
smtp_reply_body(const char *line, size_t len, size_t *bodylen)
{
	char sep;

	if (line_code(line, len, &sep) < 0)
		return NULL;
	*bodylen = len > 4 ? len - 4 : 0;
	return len > 4 ? line + 4 : line + len;
}

/* "c.ddd.ddd" of the reply's class at the start of s; its length or 0. */
static size_t
enh_len(const char *s, size_t len, int class)
{
	size_t i = 0, part, digits;

	if (len < 5 || s[0] != '0' + class || s[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; i < len && isdigit((unsigned char)s[i]) &&
		    digits < 3; digits++)
			i++;
		if (digits == 0)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* Appends the line's text (past "ddd-") to the joined text. */
static void
append_text(struct smtp_reply *r, const char *line, size_t len)
{
	size_t have = strlen(r->text);

	if (r->lines > 0 && have + 1 < sizeof(r->text))
		r->text[have++] = ' ';
	if (r->lines == 0) {
		smtp_clean(r->text, sizeof(r->text), line, len);
		return;
	}
	smtp_clean(r->text + have, sizeof(r->text) - have, line + 4,
	    len > 4 ? len - 4 : 0);
}

int
smtp_reply_add(struct smtp_reply *r, const char *line, size_t len)
{
	char sep;
	int code;
	size_t n;

	if (r->complete || (code = line_code(line, len, &sep)) < 0)
		return -1;
	if (r->lines > 0 && code != r->code)
		return -1;
	if (r->lines == 0) {
		r->code = code;
		if (len > 4 && (n = enh_len(line + 4, len - 4, code / 100)) > 0)
			smtp_clean(r->enh, sizeof(r->enh), line + 4, n);
	}
	append_text(r, line, len);
	r->lines++;
	if (sep == ' ')
		r->complete = 1;
	return r->complete;
}

int
smtp_rcpt_outcome(int code)
{
	if (code == 552)	/* RFC 5321 4.5.3.1.10: too many recipients */
		return 4;
	return smtp_msg_outcome(code);
}

int
smtp_msg_outcome(int code)
{
	if (code >= 200 && code < 300)
		return 2;
	if (code >= 500 && code < 600)
		return 5;
	return 4;		/* 4xx, and a 3xx where none belongs */
}

void
smtp_enh_of(char *out, size_t len, int outcome, const char *given)
{
	if (given != NULL && given[0] == '0' + outcome)
		snprintf(out, len, "%s", given);
	else
		snprintf(out, len, "%d.0.0", outcome);
}
