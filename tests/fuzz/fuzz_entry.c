/*
 * SPDX-License-Identifier: ISC
 *
 * libFuzzer harness: the spool entry header (common/entry.c).
 * What parses must format back to the same header and parse again.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"

static bool
same(const struct entry_header *a, const struct entry_header *b)
{
	return strcmp(a->id, b->id) == 0 &&
	    strcmp(a->command, b->command) == 0 &&
	    strcmp(a->list, b->list) == 0 &&
	    a->arrival_sec == b->arrival_sec &&
	    a->arrival_usec == b->arrival_usec && a->uid == b->uid &&
	    a->gid == b->gid && strcmp(a->sender, b->sender) == 0 &&
	    strcmp(a->rcpt, b->rcpt) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct entry_header h, h2;
	char buf[ENTRY_HEADER_MAX + 1];
	const char *why;
	size_t body, body2;
	int n;

	/* Exactly size bytes, no terminator: the parser must not read past. */
	char *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	if (entry_header_parse(copy, size, &h, &body, &why) == 0) {
		if (body > size)
			abort();
		n = entry_header_format(&h, buf, sizeof(buf));
		if (n > 0) {
			if (entry_header_parse(buf, (size_t)n, &h2, &body2,
			    &why) != 0 || body2 != (size_t)n ||
			    !same(&h, &h2))
				abort();
		}
	}
	free(copy);
	return 0;
}
