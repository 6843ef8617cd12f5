/*
 * SPDX-License-Identifier: ISC
 *
 * The size knob and the report line shared by the torture tests.
 * LISTQ_TORTURE=full selects the sizes the assurance work names;
 * anything else (make check) the smoke.  The fields of /proc files and logs
 * are found by text_field() and read by text_scan() (harness.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "torture.h"

bool
torture_full(void)
{
	const char *v = getenv("LISTQ_TORTURE");

	return v != NULL && strcmp(v, "full") == 0;
}

size_t
torture_size(size_t full, size_t smoke)
{
	return torture_full() ? full : smoke;
}

void
torture_report(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("torture: %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

unsigned long long
torture_seed(void)
{
	const char *v = getenv("LISTQ_TORTURE_SEED");

	if (v != NULL && *v != '\0')
		return strtoull(v, NULL, 10);
	return arc4random() & 0x7fffffff;
}

double
torture_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool
torture_word(const char *s, unsigned int k, char *out, size_t len)
{
	const char *w = text_field(s, k);
	size_t n = w != NULL ? strcspn(w, " \t\n") : 0;

	if (w == NULL || n >= len)
		return false;
	memcpy(out, w, n);
	out[n] = '\0';
	return true;
}
