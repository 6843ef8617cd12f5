/*
 * SPDX-License-Identifier: ISC
 *
 * libFuzzer harness: the delivery state file (common/state.c).
 * state_load() reads <id>.state from a bucket directory; the input is
 * written to such a file in a private temporary directory.  What loads
 * must save and load back the same, and so must outcomes recorded after
 * it (an appended record, or the whole file rewritten).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state.h"

#define ID	"fuzz"

static int dirfd_ = -1;

/* Aborts unless a and b agree on everything the file holds. */
static void
same(const struct state *a, const struct state *b)
{
	size_t i;

	if (a->n != b->n || a->attempts != b->attempts ||
	    a->next_attempt != b->next_attempt ||
	    strcmp(a->sender, b->sender) != 0)
		abort();
	for (i = 0; i < a->n; i++)
		if (strcmp(a->r[i].addr, b->r[i].addr) != 0 ||
		    a->r[i].st != b->r[i].st || a->r[i].code != b->r[i].code ||
		    strcmp(a->r[i].dsn, b->r[i].dsn) != 0 ||
		    strcmp(a->r[i].reply, b->r[i].reply) != 0)
			abort();
}

/* Records the first half of s's recipients as sent; reads it back. */
static void
record_half(struct state *s)
{
	struct state back;
	const char *why;
	size_t i;

	for (i = 0; i < s->n / 2; i++)
		state_set_rcpt(&s->r[i], RCPT_SENT, 250, "2.0.0", "250 ok");
	if (state_record(dirfd_, ID, s, 0, s->n / 2) != 0 ||
	    state_load(dirfd_, ID, &back, &why) != 0)
		abort();
	same(s, &back);
	state_free(&back);
}
static char dir[64];

static void
cleanup(void)
{
	if (dirfd_ != -1) {
		unlinkat(dirfd_, ID STATE_SUFFIX, 0);
		rmdir(dir);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state s, s2;
	const char *why;
	int fd;

	if (dirfd_ == -1) {
		const char *t = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/listq-fuzz-XXXXXX",
		    t != NULL && strlen(t) < 32 ? t : "/tmp");
		if (mkdtemp(dir) == NULL || (dirfd_ = open(dir,
		    O_RDONLY | O_DIRECTORY)) == -1)
			abort();
		atexit(cleanup);
	}
	if ((fd = openat(dirfd_, ID STATE_SUFFIX, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600)) == -1)
		abort();
	if (write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (state_load(dirfd_, ID, &s, &why) == 0) {
		if (state_save(dirfd_, ID, &s) != 0)
			abort();
		if (state_load(dirfd_, ID, &s2, &why) != 0)
			abort();
		same(&s, &s2);
		record_half(&s2);
		state_free(&s2);
	}
	state_free(&s);
	return 0;
}
