/*
 * SPDX-License-Identifier: ISC
 *
 * The delivery state file (common/state.c): a base written whole, then
 * records appended one per transaction.  These tests check that a
 * record reads back over its base, that a record cut short at any byte
 * is ignored (its transaction counts as not done: the one in flight,
 * invariant 4) while the records before it hold, that damage is refused,
 * and that the records are folded into the base before they outgrow it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>


#include "harness.h"
#include "state.h"

#define ID	"1xXSlJ3KLo01NuHrmv"
#define NRCPT	1200

static char dir[] = "/tmp/listq-state.XXXXXX";
static int dfd = -1;

static void
make_dir(void)
{
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_neq(dfd = open(dir, O_RDONLY | O_DIRECTORY), -1);
}

static void
remove_dir(void)
{
	if (dfd != -1)
		close(dfd);
	rm_tree(dir);
}

/* A fresh state of n pending recipients r<i>@example.net. */
static void
fresh(struct state *s, size_t n)
{
	char addr[64];
	size_t i;

	memset(s, 0, sizeof(*s));
	s->attempts = 1;
	s->first_attempt = 1764374400;
	strcpy(s->sender, "list-bounces@example.org");
	for (i = 0; i < n; i++) {
		snprintf(addr, sizeof(addr), "r%zu@example.net", i);
		cr_assert_eq(state_add_rcpt(s, addr), 0);
	}
}

/* Sets [lo, hi) sent, as one transaction accepted at end of data. */
static void
sent(struct state *s, size_t lo, size_t hi, const char *queued)
{
	char reply[64];
	size_t i;

	snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s", queued);
	for (i = lo; i < hi; i++)
		state_set_rcpt(&s->r[i], RCPT_SENT, 250, "2.0.0", reply);
}

static struct stat
file_stat(void)
{
	struct stat sb;

	cr_assert_eq(fstatat(dfd, ID STATE_SUFFIX, &sb, 0), 0);
	return sb;
}

/* The whole file; *len its size. */
static char *
file_read(size_t *len)
{
	struct stat sb = file_stat();
	char *buf = malloc((size_t)sb.st_size + 1);
	int fd;

	cr_assert_not_null(buf);
	cr_assert_neq(fd = openat(dfd, ID STATE_SUFFIX, O_RDONLY), -1);
	cr_assert_eq(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	buf[sb.st_size] = '\0';
	*len = (size_t)sb.st_size;
	return buf;
}

static void
file_write(const char *buf, size_t len)
{
	int fd = openat(dfd, ID STATE_SUFFIX, O_WRONLY | O_CREAT | O_TRUNC,
	    0600);

	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void
assert_same(const struct state *a, const struct state *b)
{
	size_t i;

	cr_assert_eq(a->n, b->n);
	cr_assert_eq(a->attempts, b->attempts);
	cr_assert_str_eq(a->sender, b->sender);
	for (i = 0; i < a->n; i++) {
		cr_assert_str_eq(a->r[i].addr, b->r[i].addr);
		cr_assert_eq(a->r[i].st, b->r[i].st, "recipient %zu: %s, not "
		    "%s", i, rcpt_state_name(b->r[i].st),
		    rcpt_state_name(a->r[i].st));
		cr_assert_eq(a->r[i].code, b->r[i].code, "recipient %zu", i);
		cr_assert_str_eq(a->r[i].dsn, b->r[i].dsn, "recipient %zu", i);
		cr_assert_str_eq(a->r[i].reply, b->r[i].reply, "recipient %zu",
		    i);
	}
}

static void
load(struct state *back)
{
	const char *why = NULL;

	cr_assert_eq(state_load(dfd, ID, back, &why), 0, "%s", why);
}

/*
 * A base, then two transactions' records: the file grows by a line or
 * so each (the same inode: appended, not rewritten) and reads back.
 */
Test(state, append_and_reload, .init = make_dir, .fini = remove_dir)
{
	struct state s, back;
	struct stat base, after;
	size_t len;
	char *text;

	fresh(&s, NRCPT);
	cr_assert_eq(state_record(dfd, ID, &s, 0, 0), 0);
	cr_assert_eq(faccessat(dfd, ID STATE_SUFFIX, F_OK, 0), -1,
	    "an empty range wrote a file");
	/* No file yet: the first record writes the base, whole. */
	sent(&s, 0, 500, "A");
	cr_assert_eq(state_record(dfd, ID, &s, 0, 500), 0);
	base = file_stat();
	cr_assert_eq((size_t)base.st_size, s.disk_base);
	cr_assert_eq(s.disk_tail, 0);

	sent(&s, 500, 998, "B");
	state_set_rcpt(&s.r[998], RCPT_DEFERRED, 451, "4.3.0", "451 later");
	state_set_rcpt(&s.r[999], RCPT_FAILED, 550, "5.1.1", "550 no such");
	cr_assert_eq(state_record(dfd, ID, &s, 500, 1000), 0);
	after = file_stat();
	cr_assert_eq(after.st_ino, base.st_ino, "the file was replaced");
	cr_assert_lt(after.st_size - base.st_size, 300, "a record of %lld "
	    "bytes for 3 outcomes", (long long)(after.st_size - base.st_size));
	cr_assert_eq((size_t)after.st_size, s.disk_base + s.disk_tail);
	text = file_read(&len);
	cr_assert_not_null(strstr(text, "\noutcome: 500-997 sent 250 2.0.0 "
	    "250 2.0.0 Ok: queued as B\noutcome: 998 deferred 451 4.3.0 451 "
	    "later\noutcome: 999 failed 550 5.1.1 550 no such\nend: "), "%s",
	    text + s.disk_base);
	free(text);

	load(&back);
	assert_same(&s, &back);
	cr_assert_eq(back.disk_base, s.disk_base);
	cr_assert_eq(back.disk_tail, s.disk_tail);
	cr_assert_eq(back.disk_torn, 0);
	cr_assert_eq(back.r[1000].st, RCPT_PENDING);
	state_free(&back);
	state_free(&s);
}

/*
 * A crash in the middle of an append, at any byte: the records before
 * hold, the cut one is ignored (its recipients still to do), and the
 * next record rewrites the file whole rather than append after it.
 */
Test(state, torn_tail_ignored, .init = make_dir, .fini = remove_dir)
{
	struct state s, want, back;
	size_t len, end1, cut;
	char *whole;

	fresh(&s, NRCPT);
	sent(&s, 0, 500, "A");
	cr_assert_eq(state_record(dfd, ID, &s, 0, 500), 0);
	sent(&s, 500, 1000, "B");
	cr_assert_eq(state_record(dfd, ID, &s, 500, 1000), 0);
	end1 = s.disk_base + s.disk_tail;
	sent(&s, 1000, 1100, "C");
	state_set_rcpt(&s.r[1100], RCPT_DEFERRED, 421, "4.4.2", "421 bye");
	cr_assert_eq(state_record(dfd, ID, &s, 1000, 1101), 0);
	whole = file_read(&len);
	cr_assert_gt(len, end1);

	fresh(&want, NRCPT);
	sent(&want, 0, 500, "A");
	sent(&want, 500, 1000, "B");
	for (cut = end1; cut < len; cut++) {
		file_write(whole, cut);
		load(&back);
		assert_same(&want, &back);
		cr_assert_eq(back.disk_torn, cut > end1, "cut at %zu", cut);
		cr_assert_eq(back.disk_base + back.disk_tail, end1);
		state_free(&back);
	}

	/* Bytes lost inside the last record (pages not all written). */
	memset(whole + len - 60, 0, 4);
	file_write(whole, len);
	load(&back);
	assert_same(&want, &back);
	cr_assert_eq(back.disk_torn, 1);

	/* The owner's next record replaces the file: nothing after a tear. */
	sent(&back, 1000, 1101, "D");
	cr_assert_eq(state_record(dfd, ID, &back, 1000, 1101), 0);
	free(whole);
	whole = file_read(&len);
	cr_assert_null(strstr(whole, "outcome:"), "appended after a tear");
	cr_assert_eq(back.disk_base, len);
	sent(&want, 1000, 1101, "D");
	state_free(&back);
	load(&back);
	assert_same(&want, &back);
	state_free(&back);
	state_free(&want);
	state_free(&s);
	free(whole);
}

/*
 * A record that fails its check with more after it is not a tear (a
 * tear is always last) but damage: the entry is refused, not guessed.
 * So is a vouched record naming a recipient the base does not have.
 */
Test(state, damage_refused, .init = make_dir, .fini = remove_dir)
{
	struct state s, small, back;
	const char *why = NULL;
	size_t len, base, end1, blen;
	char *whole, *mixed, *bbuf;

	fresh(&s, 10);
	cr_assert_eq(state_save(dfd, ID, &s), 0);
	base = s.disk_base;
	sent(&s, 0, 5, "A");
	cr_assert_eq(state_record(dfd, ID, &s, 0, 5), 0);
	end1 = base + s.disk_tail;
	sent(&s, 5, 10, "B");
	cr_assert_eq(state_record(dfd, ID, &s, 5, 10), 0);
	whole = file_read(&len);

	whole[end1 - 30] ^= 1;
	file_write(whole, len);
	cr_assert_eq(state_load(dfd, ID, &back, &why), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(why, "damaged progress record");
	whole[end1 - 30] ^= 1;

	/* The records of 10 recipients over a base of 3. */
	fresh(&small, 3);
	cr_assert_eq(state_save(dfd, ID, &small), 0);
	bbuf = file_read(&blen);
	cr_assert_not_null(mixed = malloc(blen + len - base));
	memcpy(mixed, bbuf, blen);
	memcpy(mixed + blen, whole + base, len - base);
	file_write(mixed, blen + len - base);
	cr_assert_eq(state_load(dfd, ID, &back, &why), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(why, "bad recipient range");
	free(mixed);
	free(bbuf);
	free(whole);
	state_free(&small);
	state_free(&s);
}

/*
 * Records one recipient at a time on a small base: appended while they
 * weigh less than the base, then folded into a new base (compaction);
 * the file never holds more records than base, and always reads back.
 */
Test(state, compaction, .init = make_dir, .fini = remove_dir)
{
	struct state s, back;
	struct stat prev, now;
	int appended = 0, compacted = 0;
	char queued[32];
	size_t i;

	fresh(&s, 12);
	cr_assert_eq(state_save(dfd, ID, &s), 0);
	prev = file_stat();
	for (i = 0; i < s.n; i++) {
		snprintf(queued, sizeof(queued), "Q%zu", i);
		sent(&s, i, i + 1, queued);
		cr_assert_eq(state_record(dfd, ID, &s, i, i + 1), 0);
		now = file_stat();
		if (now.st_ino == prev.st_ino) {
			appended++;
			cr_assert_gt(s.disk_tail, 0);
		} else {
			compacted++;
			cr_assert_eq(s.disk_tail, 0);
			cr_assert_eq((size_t)now.st_size, s.disk_base);
		}
		cr_assert_leq(s.disk_tail, s.disk_base);
		cr_assert_eq((size_t)now.st_size, s.disk_base + s.disk_tail);
		load(&back);
		assert_same(&s, &back);
		state_free(&back);
		prev = now;
	}
	cr_assert_gt(appended, 0);
	cr_assert_gt(compacted, 0);
	state_free(&s);
}
