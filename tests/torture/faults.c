/*
 * SPDX-License-Identifier: ISC
 *
 * Faults torture: the relay misbehaves at random.  The test sink answers
 * about 30% of the SMTP transactions with a fault -- 421 and a closed
 * connection, 451, 452, 550, 552, a connection dropped in the middle of
 * the data, a reply stalled -- drawn by its "chance" rules from a seed
 * this test prints (LISTQ_TORTURE_SEED=N repeats the sink's sequence of
 * decisions; the workers' interleaving and backoff jitter still vary).
 * Messages go through the real wrapper to lists of 1 to 5 members while
 * listqd delivers, with retries every 1-2 s so that the run converges,
 * and at most MAX_RCPTS recipients a transaction, so that an entry spans
 * several transactions and its state is saved between them.
 *
 * What it asserts (invariants 4 and 5 of the design, and the DSN policy):
 *  - every (message, member) ends delivered exactly once, or failed and
 *    named in exactly one DSN to the list's -bounces address: no
 *    duplicate, nothing lost;
 *  - failed recipients are exactly those the sink refused for good: the
 *    addresses of its 5xx refusals, counted from its fault log (-F), are
 *    those of the DSNs, one to one -- so no 4xx, drop or stall was taken
 *    for a failure (a 4xx is retried until delivered) and no 5xx was
 *    retried;
 *  - queue/, hold/ and corrupt/ end empty and listqd exits 0.
 *
 * Why the assertion can be exact.  In SMTP a client cannot tell whether
 * a message it sent was taken when the connection ends after the final
 * dot without a reply, or with a 421 in place of the end-of-data reply:
 * the server may have queued it, and a retry is then a legitimate
 * duplicate.  The faults are chosen so that no such case arises:
 *  - 421 (close) only at MAIL, RCPT and DATA, before any data;
 *  - drops only mid-DATA: after DROP_AT bytes, and every message, DSNs
 *    included, is much longer (checked), so the final dot never went;
 *  - the end-of-data reply is only ever a 2xx or an explicit 4xx/5xx
 *    refusal, after which the server has not taken the message;
 *  - stalls are either SHORT_STALL, far below listqd's timeouts
 *    (TIMEOUT_S), or LONG_STALL, far above them: the client gives up
 *    first, and the sink records nothing for a client that has left
 *    during a stall.  A stall close to the timeout lets the 250 and
 *    the client's give-up cross: "chance 8 stall DOT 2" against the 2 s
 *    timeout gave 4 duplicates in 400 messages, as SMTP allows.
 *  - 5xx only with "from ?*": never to a DSN (null sender), which would
 *    fail for good with nobody to tell and move to hold/.
 * A 552 to RCPT is temporary (RFC 5321 4.5.3.1.10) and must be retried.
 *
 * Smoke: SMOKE_MSGS messages (make check); full: FULL_MSGS (make torture).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "torture.h"

#define FULL_MSGS	5000
#define SMOKE_MSGS	400
#define LISTS		8
#define MAX_MEMBERS	5	/* list k has 1 + k % 5 members */
#define WORKERS		4
#define MAX_RCPTS	2	/* per transaction: an entry may need 3 */
#define DROP_AT		512	/* data bytes, then the sink hangs up */
#define STR_(x)		#x
#define STR(x)		STR_(x)
#define TIMEOUT_S	2	/* listqd's command and data timeouts */
#define SHORT_STALL	"0.2"
#define LONG_STALL	"5"
#define BODY_LINES	24
#define FULL_WAIT_S	1800
#define SMOKE_WAIT_S	150

/*
 * The faults.  For each event the sink tries its response rules in this
 * order, each winning its own draw; the first stall rule that wins
 * delays the event first.  The last rule answers every MAIL not refused,
 * so the fault log counts every transaction attempted.
 */
static const char rules[] =
    "chance 2 close MAIL 421\n"
    "chance 3 cmd MAIL 451 4.3.0 fault: try again later\n"
    "chance 0.8 close RCPT 421\n"
    "chance 1.2 rcpt * 451 4.2.0 fault: greylisted\n"
    "chance 1 rcpt * 452 4.2.2 fault: mailbox full, try later\n"
    "chance 0.8 rcpt * 552 5.5.3 fault: too many recipients\n"
    "from ?* chance 2 rcpt * 550 5.1.1 fault: no such user\n"
    "chance 2 close DATA 421\n"
    "chance 2 cmd DATA 451 4.3.0 fault: not now\n"
    "chance 2.5 cmd DOT 451 4.3.0 fault: local error\n"
    "chance 1.5 cmd DOT 452 4.3.1 fault: insufficient storage\n"
    "from ?* chance 1.2 cmd DOT 552 5.3.4 fault: message too big\n"
    "from ?* chance 0.8 cmd DOT 550 5.7.1 fault: content refused\n"
    "chance 3.5 drop DATA " STR(DROP_AT) "\n"
    "chance 1 stall MAIL " SHORT_STALL "\n"
    "chance 0.4 stall MAIL " LONG_STALL "\n"
    "chance 0.5 stall RCPT " SHORT_STALL "\n"
    "chance 0.2 stall RCPT " LONG_STALL "\n"
    "chance 1.5 stall DATA " SHORT_STALL "\n"
    "chance 0.4 stall DATA " LONG_STALL "\n"
    "chance 1 stall DOT " SHORT_STALL "\n"
    "chance 0.6 stall DOT " LONG_STALL "\n"
    "cmd MAIL 250 2.1.0 ok\n";

/* What the fault log says. */
struct faults {
	size_t	attempts, faulted;	/* transactions; with a fault */
	size_t	code[6][100];		/* refusals: [class][code % 100] */
	size_t	rcpt552;		/* of code[5][52], the temporary */
	size_t	closes, drops, short_stalls, long_stalls;
	size_t	perm[MAX_MEMBERS];	/* 5xx refusals per member */
	size_t	dsn_faults;		/* of them in DSN transactions */
};

/* A connection's transaction in the fault log. */
struct conn_tx {
	bool	stalled_mail;	/* began with a MAIL stall, reply to come */
	bool	faulted;
};

/* What the sink received. */
struct tally {
	unsigned char	*copies;	/* [msg * MAX_MEMBERS + member] */
	unsigned char	*reported;	/* the same, in DSNs */
	size_t		 dsns, shortest;
};

static struct sink S;
static struct daemon D;
static char faultlog[600];

static size_t
members_of(size_t msg)
{
	return 1 + msg % LISTS % MAX_MEMBERS;
}

static void
make_lists(void)
{
	char name[16];
	size_t k;

	for (k = 0; k < LISTS; k++) {
		snprintf(name, sizeof(name), "f%zu", k);
		make_list(name, members_of(k));
	}
}

/* About 2 KB, with leading dots for dot-stuffing; named by its number. */
static void
post(size_t i)
{
	char msg[4096], list[16];
	struct result r;
	size_t len, l;

	snprintf(list, sizeof(list), "f%zu", i % LISTS);
	len = (size_t)snprintf(msg, sizeof(msg), "From: poster@example.net\n"
	    "To: %s@example.org\nSubject: faults %zu\n"
	    "Message-ID: <%zu.faults@example.net>\nX-Torture-Msg: %zu\n\n",
	    list, i, i, i);
	for (l = 0; l < BODY_LINES; l++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len,
		    "%sline %02zu of message %06zu: the quick brown fox "
		    "jumps over the lazy dog\n", l % 7 == 3 ? "." : "", l, i);
	cr_assert_eq(run_simple("post", list, msg, len, &r), 0,
	    "enqueue %zu: %s", i, r.err);
}

static size_t
dir_count(const char *sub)
{
	char path[600];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", T.spool, sub);
	cr_assert_not_null(d = opendir(path), "%s: %s", path, strerror(errno));
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static bool
queue_empty(void *arg)
{
	(void)arg;
	return queue_count(NULL, 0) == 0;
}

/* "<mN@members.example>" -> N, or -1. */
static int
member_index(const char *addr)
{
	const char *rest;
	uint64_t m;

	if (strncmp(addr, "<m", 2) != 0 || (rest = text_scan(addr + 2,
	    MAX_MEMBERS - 1, &m, "@members.example>")) == NULL || *rest != '\0')
		return -1;
	return (int)m;
}

static struct conn_tx *
conn_slot(struct conn_tx **v, size_t *n, unsigned long id)
{
	size_t cap = *n;

	if (id >= cap) {
		while (cap <= id)
			cap = cap == 0 ? 1024 : cap * 2;
		cr_assert_not_null(*v = reallocarray(*v, cap, sizeof(**v)));
		memset(*v + *n, 0, (cap - *n) * sizeof(**v));
		*n = cap;
	}
	return &(*v)[id];
}

/*
 * Transactions attempted, and those with a fault: a MAIL stall or a MAIL
 * reply starts one (the reply after a stall is the same one), and every
 * other line of the connection belongs to the last one started.
 */
static void
count_attempt(struct faults *f, struct conn_tx *t, const char *kind,
    const char *verb, bool fault)
{
	bool stall = strcmp(kind, "stall") == 0;

	if (strcmp(verb, "MAIL") != 0) {
		if (fault && !t->faulted)
			f->faulted++;
		t->faulted |= fault;
	} else if (t->stalled_mail && !stall)
		t->stalled_mail = false;
	else {
		f->attempts++;
		f->faulted += fault;
		t->stalled_mail = stall;
		t->faulted = fault;
	}
}

/* The next word of *p (words separated by blanks), or NULL. */
static char *
next_word(char **p)
{
	char *w;

	while ((w = strsep(p, " ")) != NULL && *w == '\0')
		continue;
	return w;
}

/* One fault-log line: "conn line kind VERB value sender rcpt...". */
static void
count_line(struct faults *f, struct conn_tx *t, char *line)
{
	char *w[6], *p = line, *a;
	const char *kind, *verb, *sender, *rest;
	uint64_t value;
	size_t i;
	int m;
	bool fault;

	for (i = 0; i < 6; i++)
		cr_assert_not_null(w[i] = next_word(&p), "fault log: %s", line);
	kind = w[2];
	verb = w[3];
	sender = w[5];
	cr_assert((rest = text_scan(w[4], INT32_MAX, &value, "")) != NULL &&
	    *rest == '\0', "fault log: value %s", w[4]);
	fault = strcmp(kind, "rcpt") != 0 && strcmp(kind, "cmd") != 0 ?
	    true : value >= 400;
	count_attempt(f, t, kind, verb, fault);
	if (!fault)
		return;
	f->dsn_faults += strcmp(sender, "<>") == 0;
	if (strcmp(kind, "close") == 0) {
		f->closes++;
		return;
	}
	if (strcmp(kind, "drop") == 0) {
		f->drops++;
		return;
	}
	if (strcmp(kind, "stall") == 0) {
		if (value > (uint64_t)TIMEOUT_S * 1000)
			f->long_stalls++;
		else
			f->short_stalls++;
		return;
	}
	cr_assert_lt(value, 600, "fault log: code %s", w[4]);
	f->code[value / 100][value % 100]++;
	if (value == 552 && strcmp(verb, "RCPT") == 0)
		f->rcpt552++;
	/* Permanent: every other 5xx, for each address it names. */
	if (value / 100 != 5 || (value == 552 && strcmp(verb, "RCPT") == 0))
		return;
	while ((a = next_word(&p)) != NULL) {
		cr_assert_geq(m = member_index(a), 0, "refused %s", a);
		f->perm[m]++;
	}
}

static void
read_faults(struct faults *f)
{
	struct conn_tx *tx = NULL;
	size_t ntx = 0, len = 0;
	uint64_t id;
	char *line = NULL;
	FILE *fp;

	memset(f, 0, sizeof(*f));
	cr_assert_not_null(fp = fopen(faultlog, "r"), "%s: %s", faultlog,
	    strerror(errno));
	while (getline(&line, &len, fp) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#')
			continue;
		cr_assert_not_null(text_scan(line, ULONG_MAX, &id, " "), "%s",
		    line);
		count_line(f, conn_slot(&tx, &ntx, id), line);
	}
	free(line);
	free(tx);
	fclose(fp);
}

/* The number in "X-Torture-Msg: N" of a message or a DSN's headers part. */
static size_t
msg_of(const struct txn *t, size_t msgs)
{
	const char *p = strstr(t->data, "\nX-Torture-Msg: ");
	unsigned long n;

	cr_assert_not_null(p, "a transaction names no message:\n%.400s",
	    t->data);
	n = strtoul(p + 16, NULL, 10);
	cr_assert_lt(n, msgs, "unknown message %lu", n);
	return n;
}

static void
count_dsn(struct tally *y, const struct txn *t, size_t msgs)
{
	const char *key = "Final-Recipient: rfc822; ", *p = t->data;
	char want[64], addr[80];
	size_t i = msg_of(t, msgs);
	int m;

	snprintf(want, sizeof(want), "<f%zu-bounces@example.org>", i % LISTS);
	cr_assert(t->nrcpt == 1 && strcmp(t->rcpt[0], want) == 0,
	    "DSN for message %zu not to %s", i, want);
	cr_assert_not_null(strstr(t->data, "\r\nAction: failed\r\n"));
	y->dsns++;
	while ((p = strstr(p, key)) != NULL) {
		p += strlen(key);
		snprintf(addr, sizeof(addr), "<%.*s>", (int)strcspn(p, "\r"),
		    p);
		cr_assert_geq(m = member_index(addr), 0, "DSN names %s", addr);
		y->reported[i * MAX_MEMBERS + (size_t)m]++;
	}
}

static void
count_copies(struct tally *y, const struct txn *t, size_t msgs)
{
	size_t i = msg_of(t, msgs), k;
	char want[64];
	int m;

	snprintf(want, sizeof(want), "<f%zu-bounces@example.org>", i % LISTS);
	cr_assert_str_eq(t->from, want, "message %zu", i);
	for (k = 0; k < t->nrcpt; k++) {
		m = member_index(t->rcpt[k]);
		cr_assert(m >= 0 && (size_t)m < members_of(i),
		    "message %zu went to %s", i, t->rcpt[k]);
		y->copies[i * MAX_MEMBERS + (size_t)m]++;
	}
}

static void
read_sink(struct tally *y, size_t msgs)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i;

	memset(y, 0, sizeof(*y));
	cr_assert_gt(msgs, 0);
	y->copies = calloc(msgs * MAX_MEMBERS, 1);
	y->reported = calloc(msgs * MAX_MEMBERS, 1);
	cr_assert(y->copies != NULL && y->reported != NULL);
	y->shortest = SIZE_MAX;
	for (i = 0; i < n; i++) {
		if (t[i].len < y->shortest)
			y->shortest = t[i].len;
		if (strcmp(t[i].from, "<>") == 0)
			count_dsn(y, &t[i], msgs);
		else
			count_copies(y, &t[i], msgs);
	}
	txns_free(t, n);
}

/* The sink with the rules, then listqd; both live at most about life s. */
static void
start(unsigned long long seed, int life)
{
	char seedarg[32], lifearg[16], conf[512];
	const char *extra[] = { "-R", seedarg, "-F", faultlog, "-t", lifearg,
	    NULL };

	snprintf(seedarg, sizeof(seedarg), "%llu", seed);
	snprintf(lifearg, sizeof(lifearg), "%d", life);
	snprintf(faultlog, sizeof(faultlog), "%s.faults", T.spool);
	unlink(faultlog);
	sink_start_args(&S, rules, 0, false, extra);
	snprintf(conf, sizeof(conf), "command_timeout = %ds\n"
	    "data_timeout = %ds\nrelay_retry_time = 1s\n"
	    "delay_warning_time = 0\nmax_rcpts_per_transaction = %d\n",
	    TIMEOUT_S, TIMEOUT_S, MAX_RCPTS);
	daemon_config(&D, S.port, conf);
	daemon_start(&D, WORKERS);
}

/* Per (message, member): one copy, or one DSN naming it. */
struct outcome {
	size_t	rcpts, delivered, failed, dups, lost;
	size_t	reported[MAX_MEMBERS];	/* failures in DSNs per member */
};

static void
count_outcomes(const struct tally *y, size_t msgs, struct outcome *o)
{
	size_t i, m, got, dsn;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < msgs; i++)
		for (m = 0; m < members_of(i); m++) {
			got = y->copies[i * MAX_MEMBERS + m];
			dsn = y->reported[i * MAX_MEMBERS + m];
			o->rcpts++;
			o->delivered += got;
			o->failed += dsn;
			o->reported[m] += dsn;
			o->dups += got + dsn > 1 ? got + dsn - 1 : 0;
			if (got + dsn == 0 && o->lost++ < 10)
				torture_report("faults", "lost: message %zu "
				    "(list f%zu) to m%zu", i, i % LISTS, m);
		}
}

static void
report(const struct faults *f, const struct tally *y,
    const struct outcome *o, double t_enq, double t_done)
{
	torture_report("faults", "attempts=%zu faulted=%zu (%.1f%%): "
	    "421=%zu 451=%zu 452=%zu 550=%zu 552=%zu (%zu to RCPT) drop=%zu "
	    "stall<%ds=%zu stall>%ds=%zu (%zu of them on DSNs)", f->attempts,
	    f->faulted, f->attempts ? 100.0 * (double)f->faulted /
	    (double)f->attempts : 0.0, f->closes, f->code[4][51],
	    f->code[4][52], f->code[5][50], f->code[5][52], f->rcpt552,
	    f->drops, TIMEOUT_S, f->short_stalls, TIMEOUT_S, f->long_stalls,
	    f->dsn_faults);
	torture_report("faults", "recipients=%zu delivered=%zu "
	    "failed_with_dsn=%zu dsns=%zu duplicates=%zu lost=%zu "
	    "deferrals=%zu enqueue=%.1fs duration=%.1fs", o->rcpts,
	    o->delivered, o->failed, y->dsns, o->dups, o->lost,
	    log_count(&D, "status=deferred"), t_enq, t_done);
}

/* The faults did happen, of each class the assertions are about. */
static void
assert_faults_seen(const struct faults *f, const struct outcome *o)
{
	cr_assert_gt(f->code[4][51] + f->code[4][52] + f->rcpt552, 0);
	cr_assert_gt(o->failed, 0);
	cr_assert_gt(f->closes + f->drops + f->long_stalls, 0);
	cr_assert(f->faulted * 5 >= f->attempts &&
	    f->faulted * 5 <= f->attempts * 2,
	    "faults in %zu of %zu transactions, not 20-40%%", f->faulted,
	    f->attempts);
}

/* Ends what the test started; then invariant 6 over what it left. */
static void
teardown(void)
{
	daemon_teardown();
	spool_sweep();
}

Test(faults, each_recipient_once_or_dsn, .init = spool_reset,
    .fini = teardown, .timeout = FULL_WAIT_S + 600)
{
	size_t msgs = torture_size(FULL_MSGS, SMOKE_MSGS), i, m;
	unsigned long long seed = torture_seed();
	int wait_s = (int)torture_size(FULL_WAIT_S, SMOKE_WAIT_S);
	double t0 = torture_now(), t_enq, t_done;
	struct outcome o;
	struct faults f;
	struct tally y;

	torture_report("faults", "seed=%llu messages=%zu lists=%d workers=%d",
	    seed, msgs, LISTS, WORKERS);
	make_lists();
	start(seed, wait_s + 600);
	for (i = 0; i < msgs; i++)
		post(i);
	t_enq = torture_now() - t0;
	/* Invariant 6 mid-run, over deferred entries and their states. */
	cr_assert(log_wait(&D, "status=deferred", 1, wait_s * 1000));
	spool_sweep();
	cr_assert(wait_until(queue_empty, NULL, wait_s * 1000), "after %d s, "
	    "%zu entries left in queue/", wait_s, queue_count(NULL, 0));
	t_done = torture_now() - t0;
	cr_assert_eq(daemon_stop(&D), 0, "listqd did not exit 0");
	sink_stop(&S);

	read_faults(&f);
	read_sink(&y, msgs);
	count_outcomes(&y, msgs, &o);
	report(&f, &y, &o, t_enq, t_done);
	cr_assert_eq(o.dups, 0, "duplicates (seed %llu)", seed);
	cr_assert_eq(o.lost, 0, "lost recipients (seed %llu)", seed);
	for (m = 0; m < MAX_MEMBERS; m++)
		cr_assert_eq(o.reported[m], f.perm[m], "m%zu: %zu failures in "
		    "DSNs, %zu permanent refusals (seed %llu)", m,
		    o.reported[m], f.perm[m], seed);
	cr_assert_gt(y.shortest, (size_t)2 * DROP_AT, "a message of %zu bytes: a drop "
	    "could come after its final dot", y.shortest);
	cr_assert_eq(dir_count("hold"), 0, "entries in hold/");
	cr_assert_eq(dir_count("corrupt"), 0, "entries in corrupt/");
	cr_assert_eq(tmp_count(), 0, "files left in tmp/");
	assert_faults_seen(&f, &o);
	free(y.copies);
	free(y.reported);
}
