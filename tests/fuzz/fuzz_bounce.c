/*
 * SPDX-License-Identifier: ISC
 *
 * libFuzzer harness: the bounce parser (worker/bounce.c: bounce_parse,
 * bounce_envelope_ext, bounce_verp_member; worker/probe.c:
 * probe_token_of), the header reader (worker/msghead.c: msghead_next) and
 * dsn_allowed (worker/dsn.c).  The input is one NUL-terminated message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "dsn.h"
#include "list.h"
#include "msghead.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bounce_hit hits[BOUNCE_HITS];
	char *msg, member[ADDR_MAX + 1], ext[ADDR_MAX + 1], *end,
	    token[PROBE_TOKEN_LEN + 1];
	const char *p, *v;
	size_t n, i;

	if (size > BOUNCE_MAX)
		return 0;
	if ((msg = malloc(size + 1)) == NULL)
		return 0;
	memcpy(msg, data, size);
	msg[size] = '\0';

	n = bounce_parse(msg, hits, BOUNCE_HITS);
	if (n > BOUNCE_HITS)
		abort();
	for (i = 0; i < n; i++) {
		if (memchr(hits[i].addr, '\0', sizeof(hits[i].addr)) == NULL ||
		    memchr(hits[i].status, '\0', sizeof(hits[i].status)) ==
		    NULL ||
		    memchr(hits[i].diag, '\0', sizeof(hits[i].diag)) == NULL ||
		    strchr(hits[i].diag, '\n') != NULL ||
		    (hits[i].kind != BOUNCE_SOFT &&
		    hits[i].kind != BOUNCE_HARD) || hits[i].how == NULL)
			abort();
	}
	n = bounce_parse(msg, hits, 1);
	if (n > 1)
		abort();

	/* The header section, as msghead_read() would give it. */
	if ((end = strstr(msg, "\n\n")) != NULL)
		end[1] = '\0';
	if (bounce_envelope_ext(msg, "list-bounces", "example.org", '+', ext,
	    sizeof(ext)) && (memchr(ext, '\0', sizeof(ext)) == NULL ||
	    (bounce_verp_member(ext, member, sizeof(member)) &&
	    memchr(member, '\0', sizeof(member)) == NULL) ||
	    (probe_token_of(ext, token) && strlen(token) != PROBE_TOKEN_LEN)))
		abort();
	if (bounce_envelope_ext(msg, "list-bounces", "example.org", '-', ext,
	    8) && (memchr(ext, '\0', 8) == NULL || (bounce_verp_member(ext,
	    member, 8) && memchr(member, '\0', 8) == NULL)))
		abort();
	(void)dsn_allowed("someone@example.org", msg);
	(void)dsn_allowed("", msg);
	p = msg;
	while ((v = msghead_next(&p, "To")) != NULL)
		if (p < msg || p > msg + size || v < msg || v > p)
			abort();
	free(msg);
	return 0;
}
