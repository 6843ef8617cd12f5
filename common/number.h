/*
 * SPDX-License-Identifier: ISC
 *
 * Decimal numbers read from text: spool files, listqd's control answers,
 * SMTP replies.
 *
 * atoi() and sscanf() cannot report a bad number (they return 0 or a
 * wrapped value), and strtoul() accepts blanks, a sign (so "-1" becomes
 * the largest value) and an empty string.  These take digits only, in
 * ASCII, check the range against the caller's bound and either give the
 * value or fail; they never give a value for text that is not one.
 */
#ifndef LISTQ_NUMBER_H
#define LISTQ_NUMBER_H

#include <stdint.h>

/*
 * The digits s starts with, as a number of at most max; *end (if not
 * NULL) is set to the first character after them.  0, or -1 when s does
 * not start with a digit or the number exceeds max; *out and *end are
 * set only on success.
 */
int	number_scan(const char *s, uint64_t max, uint64_t *out,
	    const char **end);

/* The whole of s as a number of at most max: digits only.  0, or -1. */
int	number_parse(const char *s, uint64_t max, uint64_t *out);

#endif
