/*
 * SPDX-License-Identifier: ISC
 *
 * The torture suite (tests/torture/): invariants 1-8 of the design under
 * load, faults, a full disk and a large spool.  Each test has two sizes:
 * the full one that make torture runs (LISTQ_TORTURE=full) and a bounded
 * smoke that make check runs.  Figures a reader needs (kills, duplicates
 * and the transactions that explain them, timings) are printed as lines
 * starting with "torture:".
 */
#ifndef LISTQ_TEST_TORTURE_H
#define LISTQ_TEST_TORTURE_H

#include <stdbool.h>
#include <stddef.h>

/* True under make torture; false for the smoke of make check. */
bool	torture_full(void);
/* full under make torture, smoke otherwise. */
size_t	torture_size(size_t full, size_t smoke);
/* One "torture: NAME: ..." line on stdout, flushed at once. */
void	torture_report(const char *name, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* LISTQ_TORTURE_SEED, or a random seed (printed by the caller). */
unsigned long long torture_seed(void);
/* Seconds on the monotonic clock, for the durations reported. */
double	torture_now(void);
/* A copy of the k-th field of s into out; false if none or too long. */
bool	torture_word(const char *s, unsigned int k, char *out, size_t len);

#endif
