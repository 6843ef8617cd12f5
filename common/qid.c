/*
 * SPDX-License-Identifier: ISC
 *
 * Queue ids and the bucket hash (see qid.h for the format).
 *
 * Invariants: every id has QID_LEN characters of the base-62 alphabet;
 * two ids made by one process never repeat (the clock is forced forward
 * when it does not move); the bucket of an id depends on all of its
 * characters and is the same in every process.
 */
#include <sys/time.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qid.h"

static const char b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Writes v as exactly n base-62 digits, most significant first. */
static void
put_b62(char *out, size_t n, uint64_t v)
{
	while (n-- > 0) {
		out[n] = b62[v % 62];
		v /= 62;
	}
}

void
qid_new(char out[QID_SIZE])
{
	static uint64_t last_us;
	struct timeval tv;
	uint64_t us;
	uint32_t rnd;

	gettimeofday(&tv, NULL);
	us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
	if (us <= last_us)
		us = last_us + 1;
	last_us = us;
	arc4random_buf(&rnd, sizeof(rnd));

	put_b62(out, 6, us / 1000000);
	put_b62(out + 6, 4, us % 1000000);
	put_b62(out + 10, 4, (uint64_t)getpid());
	put_b62(out + 14, 4, rnd);
	out[QID_LEN] = '\0';
}

bool
qid_valid(const char *s)
{
	size_t i;

	for (i = 0; i < QID_LEN; i++)
		if (s[i] == '\0' || strchr(b62, s[i]) == NULL)
			return false;
	return s[QID_LEN] == '\0';
}

/* FNV-1a over the id, then the 64-bit finalizer of MurmurHash3 to mix. */
unsigned int
qid_bucket(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *id != '\0'; id++) {
		h ^= (unsigned char)*id;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (unsigned int)(h >> 56);
}

void
qid_bucket_name(unsigned int bucket, char out[3])
{
	static const char hex[] = "0123456789abcdef";

	out[0] = hex[(bucket >> 4) & 0xf];
	out[1] = hex[bucket & 0xf];
	out[2] = '\0';
}

unsigned int
qid_bucket_owner(unsigned int bucket, unsigned int nworkers)
{
	return bucket % nworkers;
}
