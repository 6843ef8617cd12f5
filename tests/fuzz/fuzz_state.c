/*
 * libFuzzer harness: the delivery state file (common/state.c).
 * state_load() reads <id>.state from a bucket directory; the input is
 * written to such a file in a private temporary directory.  What loads
 * must save and load back the same.
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
	size_t i;
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
		if (state_load(dirfd_, ID, &s2, &why) != 0 || s2.n != s.n ||
		    s2.attempts != s.attempts ||
		    s2.next_attempt != s.next_attempt ||
		    strcmp(s2.sender, s.sender) != 0)
			abort();
		for (i = 0; i < s.n; i++)
			if (strcmp(s.r[i].addr, s2.r[i].addr) != 0 ||
			    s.r[i].st != s2.r[i].st ||
			    strcmp(s.r[i].reply, s2.r[i].reply) != 0)
				abort();
		state_free(&s2);
	}
	state_free(&s);
	return 0;
}
