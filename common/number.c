/*
 * SPDX-License-Identifier: ISC
 *
 * Decimal numbers read from text (see number.h).
 *
 * Invariants: a value is given only for one or more ASCII digits whose
 * number is at most the caller's bound; overflow, a sign, a leading blank
 * or no digit at all is an error, and nothing is written on error.
 */
#include <errno.h>
#include <stdlib.h>

#include "number.h"

int
number_scan(const char *s, uint64_t max, uint64_t *out, const char **end)
{
	unsigned long long v;
	char *e;

	/* strtoull() would skip blanks and take a sign: digits only. */
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno != 0 || v > max)
		return -1;
	*out = v;
	if (end != NULL)
		*end = e;
	return 0;
}

int
number_parse(const char *s, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v;

	if (number_scan(s, max, &v, &end) == -1 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}
