/*
 * SPDX-License-Identifier: ISC
 *
 * Mail addresses: the plain RFC 5321 mailbox (dot-atom local part, a
 * domain of LDH labels) that listq accepts for members, owners and
 * envelope addresses, and their comparison.
 *
 * Invariants: a valid address has no space, control character, '<' or
 * '>' and is at most ADDR_MAX bytes, so it is safe in an SMTP command, a
 * header line and a line-based file; local parts compare exactly,
 * domains without regard to case.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"

static bool
atext(char c)
{
	return isalnum((unsigned char)c) || strchr("!#$%&'*+-/=?^_`{|}~", c)
	    != NULL;
}

static bool
dot_atom(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (i = 0; i < len; i++)
		if (s[i] == '.' ? s[i + 1] == '.' : !atext(s[i]))
			return false;
	return true;
}

static bool
domain_valid(const char *d)
{
	size_t label = 0;

	if (*d == '\0' || *d == '.' || *d == '-')
		return false;
	for (; *d != '\0'; d++) {
		if (*d == '.') {
			if (label == 0 || d[-1] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*d) || *d == '-') {
			if (++label > 63)
				return false;
		} else
			return false;
	}
	return label > 0 && d[-1] != '-';
}

bool
address_valid(const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (at == NULL || strlen(addr) > ADDR_MAX || at - addr > 64)
		return false;
	return dot_atom(addr, (size_t)(at - addr)) && domain_valid(at + 1);
}

const char *
address_domain(const char *addr)
{
	return strrchr(addr, '@') + 1;
}

bool
address_equal(const char *a, const char *b)
{
	const char *da = strrchr(a, '@'), *db = strrchr(b, '@');

	if (da == NULL || db == NULL || da - a != db - b)
		return strcmp(a, b) == 0;
	return strncmp(a, b, (size_t)(da - a)) == 0 &&
	    strcasecmp(da, db) == 0;
}

int
address_cmp(const void *pa, const void *pb)
{
	const char *a = *(char *const *)pa, *b = *(char *const *)pb;
	const char *da = strrchr(a, '@'), *db = strrchr(b, '@');
	size_t la = (size_t)(da - a), lb = (size_t)(db - b);
	int c = strncmp(a, b, la < lb ? la : lb);

	if (c != 0 || la != lb)
		return c != 0 ? c : (la < lb ? -1 : 1);
	return strcasecmp(da, db);
}

