/*
 * SPDX-License-Identifier: ISC
 *
 * Unit tests of common/: queue ids, the bucket hash and its ownership
 * rule, the entry header, durable writes, the spool layout and the
 * reading of decimal numbers.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>


#include "durable.h"
#include "entry.h"
#include "harness.h"
#include "number.h"
#include "qid.h"
#include "spool.h"
#include "state.h"

#define FORKS		8
#define IDS_PER_FORK	2000

static int
cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, QID_LEN);
}

Test(qid, format_and_order)
{
	char prev[QID_SIZE], id[QID_SIZE];
	int i;

	qid_new(prev);
	for (i = 0; i < 10000; i++) {
		qid_new(id);
		cr_assert(qid_valid(id), "invalid id %s", id);
		cr_assert_eq(strlen(id), QID_LEN);
		cr_assert_gt(memcmp(id, prev, QID_LEN), 0,
		    "%s does not sort after %s", id, prev);
		memcpy(prev, id, QID_SIZE);
	}
	cr_assert(!qid_valid("short"));
	cr_assert(!qid_valid("AAAAAAAAAAAAAAAAA/"));
	cr_assert(!qid_valid("AAAAAAAAAAAAAAAAAAA"));
}

/* Ids made by concurrent processes never collide. */
Test(qid, unique_across_processes)
{
	static char ids[FORKS * IDS_PER_FORK][QID_LEN];
	int p[2], i, j, st;
	size_t got = 0;
	ssize_t n;

	cr_assert_eq(pipe(p), 0);
	for (i = 0; i < FORKS; i++) {
		if (fork() != 0)
			continue;
		for (j = 0; j < IDS_PER_FORK; j++) {
			char id[QID_SIZE];

			qid_new(id);
			if (write(p[1], id, QID_LEN) != QID_LEN)
				_exit(1);
		}
		_exit(0);
	}
	close(p[1]);
	while (got < sizeof(ids) &&
	    (n = read(p[0], (char *)ids + got, sizeof(ids) - got)) > 0)
		got += (size_t)n;
	for (i = 0; i < FORKS; i++) {
		cr_assert_neq(wait(&st), -1);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	cr_assert_eq(got, sizeof(ids));
	qsort(ids, (size_t)FORKS * IDS_PER_FORK, QID_LEN, cmp_id);
	for (i = 1; i < FORKS * IDS_PER_FORK; i++)
		cr_assert_neq(memcmp(ids[i - 1], ids[i], QID_LEN), 0,
		    "duplicate id %.18s", ids[i]);
}

/* 65,536 ids spread evenly: every bucket within 30% of the mean. */
Test(qid, bucket_spread)
{
	unsigned int count[QID_BUCKETS] = { 0 };
	char id[QID_SIZE];
	int i;

	for (i = 0; i < QID_BUCKETS * 256; i++) {
		qid_new(id);
		count[qid_bucket(id)]++;
	}
	for (i = 0; i < QID_BUCKETS; i++)
		cr_assert(count[i] > 256 * 7 / 10 && count[i] < 256 * 13 / 10,
		    "bucket %d holds %u of 65536 ids", i, count[i]);
}

/* The time digits alone do not choose the bucket. */
Test(qid, bucket_uses_every_digit)
{
	char a[] = "0000000000000000A0", b[] = "0000000000000000A1";
	unsigned int seen[QID_BUCKETS] = { 0 }, distinct = 0;
	int i;

	cr_assert_neq(qid_bucket(a), qid_bucket(b));
	for (i = 0; i < 62; i++) {
		a[QID_LEN - 1] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz"[i];
		if (seen[qid_bucket(a)]++ == 0)
			distinct++;
	}
	cr_assert_gt(distinct, 40);
}

/* Every bucket has exactly one owner, for every pool size 1..256. */
Test(qid, one_owner_for_every_pool_size)
{
	unsigned int n, b, w, owners, owned[QID_BUCKETS];

	for (n = 1; n <= QID_BUCKETS; n++) {
		memset(owned, 0, sizeof(owned));
		for (b = 0; b < QID_BUCKETS; b++) {
			for (owners = 0, w = 0; w < n; w++)
				if (qid_bucket_owner(b, n) == w) {
					owners++;
					owned[w]++;
				}
			cr_assert_eq(owners, 1, "bucket %u has %u owners of %u",
			    b, owners, n);
		}
		for (w = 0; w < n; w++)
			cr_assert_gt(owned[w], 0, "worker %u of %u owns nothing",
			    w, n);
	}
}

Test(entry, list_names)
{
	static const char *const good[] = { "a", "mylist", "a-b_c.d", "0x",
	    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234" };
	static const char *const bad[] = { "", "../x", "a/b", "Upper", ".a",
	    "-a", "a..b", "a b", "a\n",
	    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij12345" };
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(list_name_valid(good[i]), "%s", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(!list_name_valid(bad[i]), "%s", bad[i]);
}

static struct entry_header
sample(void)
{
	struct entry_header h = { .arrival_sec = 1764374400,
	    .arrival_usec = 42, .uid = 65534, .gid = 65534 };

	qid_new(h.id);
	strcpy(h.command, "post");
	strcpy(h.list, "mylist");
	return h;
}

Test(entry, header_round_trip)
{
	struct entry_header h = sample(), back;
	char buf[ENTRY_HEADER_MAX + 16];
	const char *why = NULL;
	size_t body;
	int n;

	n = entry_header_format(&h, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	memcpy(buf + n, "Subject: x\n", 12);
	cr_assert_eq(entry_header_parse(buf, (size_t)n + 11, &back, &body,
	    &why), 0, "%s", why);
	cr_assert_eq(body, (size_t)n);
	/* Member by member: the padding between them is not compared. */
	cr_assert_str_eq(back.id, h.id);
	cr_assert_str_eq(back.command, h.command);
	cr_assert_str_eq(back.list, h.list);
	cr_assert_eq(back.arrival_sec, h.arrival_sec);
	cr_assert_eq(back.arrival_usec, h.arrival_usec);
	cr_assert_eq(back.uid, h.uid);
	cr_assert_eq(back.gid, h.gid);
	cr_assert_str_eq(back.sender, h.sender);
	cr_assert_str_eq(back.rcpt, h.rcpt);
	strcpy(h.list, "Bad");
	cr_assert_eq(entry_header_format(&h, buf, sizeof(buf)), -1);
}

/* Replaces the first occurrence of from in a formatted header by to. */
static int
parse_mutated(const char *from, const char *to, const char **why)
{
	struct entry_header h = sample(), back;
	char buf[1024], out[1024];
	size_t body;
	char *p;

	entry_header_format(&h, buf, sizeof(buf));
	strlcat(buf, "body\n", sizeof(buf));
	if ((p = strstr(buf, from)) == NULL)
		return 99;
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - buf), buf, to,
	    p + strlen(from));
	return entry_header_parse(out, strlen(out), &back, &body, why);
}

Test(entry, header_rejects_malformed)
{
	static const char *const cases[][2] = {
		{ "listq-entry: 1", "listq-entry: 2" },
		{ "listq-entry: 1", "From: x" },
		{ "command: post", "command: POST" },
		{ "command: post", "command: run" },
		{ "list: mylist", "list: ../etc" },
		{ "list: mylist\n", "" },
		{ "list: mylist", "list: mylist\nextra: 1" },
		{ "uid: 65534", "uid: -1" },
		{ "uid: 65534", "uid: 4294967296" },
		{ "gid: 65534", "gid: x" },
		{ "arrival: 1764374400.000042", "arrival: 1764374400" },
		{ "arrival: 1764374400.000042", "arrival: 1764374400.42" },
		{ "id: ", "id: !" },
		{ "id: ", "id:" },
		{ "gid: 65534\n\n", "gid: 65534\nbody\n" },
		{ "gid: 65534\n\n", "gid: 65534" },
		{ "list: mylist", "list: my\tlist" },
	};
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why = NULL;
		cr_assert_eq(parse_mutated(cases[i][0], cases[i][1], &why), -1,
		    "case %zu (%s) accepted", i, cases[i][1]);
		cr_assert_not_null(why, "case %zu gives no reason", i);
	}
}

Test(entry, header_rejects_nul_and_truncation)
{
	struct entry_header h = sample(), back;
	char buf[ENTRY_HEADER_MAX];
	const char *why;
	size_t body;
	int n, cut;

	n = entry_header_format(&h, buf, sizeof(buf));
	for (cut = 0; cut < n; cut++)
		cr_assert_eq(entry_header_parse(buf, (size_t)cut, &back, &body,
		    &why), -1, "truncated at %d accepted", cut);
	buf[20] = '\0';
	cr_assert_eq(entry_header_parse(buf, (size_t)n, &back, &body, &why),
	    -1);
}

static char dir[] = "/tmp/listq-unit.XXXXXX";

static void
make_dir(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void
remove_dir(void)
{
	rm_tree(dir);
}

Test(durable, replace_and_commit, .init = make_dir, .fini = remove_dir)
{
	char path[256], buf[64];
	int dfd, fd;

	cr_assert_neq(dfd = open(dir, O_RDONLY | O_DIRECTORY), -1);
	cr_assert_eq(durable_replace(dfd, "state", "one", 3), 0);
	cr_assert_eq(durable_replace(dfd, "state", "second", 6), 0);
	snprintf(path, sizeof(path), "%s/state", dir);
	fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 6);
	cr_assert_eq(memcmp(buf, "second", 6), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/state.tmp", dir);
	cr_assert_eq(access(path, F_OK), -1, "temporary left behind");

	fd = openat(dfd, "new", O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_eq(write_full(fd, "abc", 3), 0);
	cr_assert_eq(durable_commit(fd, dfd, "new", dfd, "done"), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/done", dir);
	cr_assert_eq(access(path, F_OK), 0);
	/* A failed replace keeps the old file and leaves no temporary. */
	cr_assert_eq(mkdirat(dfd, "state.tmp", 0700), 0);
	cr_assert_eq(durable_replace(dfd, "state", "third", 5), -1);
	cr_assert_eq(unlinkat(dfd, "state.tmp", AT_REMOVEDIR), 0);
	snprintf(path, sizeof(path), "%s/state", dir);
	fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 6);
	close(fd);
	close(dfd);
}

Test(spool, create_and_check, .init = make_dir, .fini = remove_dir)
{
	char path[256], bad[300], why[512];
	int fd;

	snprintf(path, sizeof(path), "%s/spool", dir);
	cr_assert_eq(spool_create(path, geteuid(), getegid(), why,
	    sizeof(why)), 0, "%s", why);
	cr_assert_eq(spool_check(path, geteuid(), getegid(), why,
	    sizeof(why)), 0, "%s", why);
	cr_assert_neq(fd = spool_open(path, geteuid(), getegid()), -1);
	close(fd);
	snprintf(bad, sizeof(bad), "%s/queue/a7", path);
	cr_assert_eq(chmod(bad, 0755), 0);
	cr_assert_eq(spool_check(path, geteuid(), getegid(), why,
	    sizeof(why)), -1);
	cr_assert_not_null(strstr(why, "queue/a7"), "%s", why);
	cr_assert_not_null(strstr(why, "wrong owner or mode"), "%s", why);
	/* A symbolic link in place of the spool is refused. */
	snprintf(bad, sizeof(bad), "%s/link", dir);
	cr_assert_eq(symlink(path, bad), 0);
	cr_assert_eq(spool_open(bad, geteuid(), getegid()), -1);
	cr_assert(errno == ELOOP || errno == ENOTDIR, "%s", strerror(errno));
	cr_assert_eq(spool_open(path, geteuid() + 1, getegid()), -1);
	cr_assert_eq(errno, EPERM);
}

Test(state, round_trip_and_rejects, .init = make_dir, .fini = remove_dir)
{
	struct state s, back;
	const char *why = NULL;
	char path[300];
	int dfd;
	FILE *f;

	memset(&s, 0, sizeof(s));
	s.attempts = 3;
	s.crashes = 1;
	s.warned = 1;
	s.eightbit = 1;
	s.first_attempt = 1764374400;
	s.next_attempt = 1764378000;
	strcpy(s.sender, "list-bounces@example.org");
	cr_assert_eq(state_add_rcpt(&s, "a@example.net"), 0);
	cr_assert_eq(state_add_rcpt(&s, "b@example.net"), 0);
	state_set_rcpt(&s.r[0], RCPT_SENT, 250, "2.0.0", "250 ok\r\nX-Inj: 1");
	state_set_rcpt(&s.r[1], RCPT_DEFERRED, 451, NULL, "451 later");
	cr_assert_neq(dfd = open(dir, O_RDONLY | O_DIRECTORY), -1);
	cr_assert_eq(state_save(dfd, "1xXSlJ3KLo01NuHrmv", &s), 0);
	cr_assert_eq(state_load(dfd, "1xXSlJ3KLo01NuHrmv", &back, &why), 0,
	    "%s", why);
	cr_assert_eq(back.attempts, 3);
	cr_assert_eq(back.crashes, 1);
	cr_assert_eq(back.warned, 1);
	cr_assert_eq(back.eightbit, 1);
	cr_assert_eq(back.first_attempt, 1764374400);
	cr_assert_eq(back.next_attempt, 1764378000);
	cr_assert_str_eq(back.sender, s.sender);
	cr_assert_eq(back.n, 2);
	cr_assert_eq(back.r[0].st, RCPT_SENT);
	cr_assert_str_eq(back.r[0].reply, "250 ok  X-Inj: 1",
	    "a reply must stay one line");
	cr_assert_eq(back.r[1].st, RCPT_DEFERRED);
	cr_assert_eq(back.r[1].code, 451);
	state_free(&back);
	state_free(&s);
	cr_assert_eq(state_load(dfd, "1xXSlJ3KLo01NuHrmw", &back, &why), -1);
	cr_assert_eq(errno, ENOENT);
	snprintf(path, sizeof(path), "%s/1xXSlJ3KLo01NuHrmw.state", dir);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs("listq-state: 1\nattempts: 1\ncrashes: 0\nsender: x@y.z\n", f);
	fclose(f);
	cr_assert_eq(state_load(dfd, "1xXSlJ3KLo01NuHrmw", &back, &why), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_not_null(why);
	close(dfd);
}

/* listqd's own entries carry their envelope; MTA commands may not. */
Test(entry, send_entries_carry_their_envelope)
{
	struct entry_header h = sample(), back;
	char buf[ENTRY_HEADER_MAX];
	const char *why = NULL;
	size_t body;
	int n;

	strcpy(h.command, "send");
	strcpy(h.rcpt, "list-bounces@example.org");
	n = entry_header_format(&h, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_not_null(strstr(buf, "\nsender: \nrcpt: list-bounces@"
	    "example.org\n\n"), "%s", buf);
	cr_assert_eq(entry_header_parse(buf, (size_t)n, &back, &body, &why), 0,
	    "%s", why);
	cr_assert_str_eq(back.sender, "");
	cr_assert_str_eq(back.rcpt, "list-bounces@example.org");
	cr_assert(!entry_command_valid("send"), "the wrapper must refuse send");
	strcpy(h.rcpt, "not an address");
	cr_assert_eq(entry_header_format(&h, buf, sizeof(buf)), -1);
	strcpy(h.command, "post");
	n = entry_header_format(&h, buf, sizeof(buf));
	cr_assert_null(strstr(buf, "rcpt:"));
	cr_assert_eq(entry_header_parse(buf, (size_t)n, &back, &body, &why), 0);
}

/* Digits only, within the bound, nothing written on error. */
Test(number, digits_only_within_bound)
{
	static const char *const bad[] = { "", " 1", "+1", "-1", "1 ", "x",
	    "0x10", "18446744073709551616", "1000" };
	const char *end;
	uint64_t v;
	size_t i;

	cr_assert_eq(number_parse("0", 999, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(number_parse("999", 999, &v), 0);
	cr_assert_eq(v, 999);
	cr_assert_eq(number_parse("18446744073709551615", UINT64_MAX, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		cr_assert_eq(number_parse(bad[i], 999, &v), -1, "\"%s\"",
		    bad[i]);
		cr_assert_eq(v, 7, "\"%s\" wrote %ju", bad[i], (uintmax_t)v);
	}
	end = NULL;
	cr_assert_eq(number_scan("250-SIZE", 999, &v, &end), 0);
	cr_assert_eq(v, 250);
	cr_assert_str_eq(end, "-SIZE");
	cr_assert_eq(number_scan("-5", 999, &v, &end), -1);
	cr_assert_str_eq(end, "-SIZE", "end moved on error");
}
