/*
 * SPDX-License-Identifier: ISC
 *
 * Reading and writing delivery state files (format in state.h).
 *
 * Invariants: what state_save() writes, state_load() reads back, and so
 * does every record state_record() appends; a base is replaced whole and
 * durably or not at all; a record counts only when its end line vouches
 * for every byte of it, so a crash in the middle of an append loses that
 * record alone (its transaction is sent again: the one in flight,
 * invariant 4) and never makes a recipient look done who is not; reply
 * texts are one line of printable ASCII, so a relay cannot inject lines
 * into the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "durable.h"
#include "state.h"

static const char *const state_names[] = {
	"pending", "sent", "deferred", "failed"
};

const char *
rcpt_state_name(enum rcpt_state st)
{
	return state_names[st];
}

int
state_add_rcpt(struct state *s, const char *addr)
{
	struct rcpt_status *r;

	/* Doubling, as addr_push() in list.c: O(n) for n recipients. */
	if (s->n == 0 || (s->n >= 16 && (s->n & (s->n - 1)) == 0)) {
		if ((r = reallocarray(s->r, s->n == 0 ? 16 : s->n * 2,
		    sizeof(*r))) == NULL)
			return -1;
		s->r = r;
	}
	r = &s->r[s->n];
	memset(r, 0, sizeof(*r));
	if ((r->addr = strdup(addr)) == NULL || (r->reply = strdup("")) ==
	    NULL) {
		free(r->addr);
		return -1;
	}
	s->n++;
	return 0;
}

/* Copies text as one line of printable ASCII, at most REPLY_MAX - 1. */
static void
sanitize(char *out, const char *in)
{
	size_t i, len = strnlen(in, REPLY_MAX - 1);

	for (i = 0; i < len; i++)
		if (in[i] >= 0x20 && in[i] < 0x7f)
			out[i] = in[i];
		else
			out[i] = ' ';
	out[len] = '\0';
}

void
state_set_rcpt(struct rcpt_status *r, enum rcpt_state st, int code,
    const char *dsn, const char *reply)
{
	char clean[REPLY_MAX], *copy;

	r->st = st;
	r->code = code;
	sanitize(clean, dsn != NULL ? dsn : "");
	strlcpy(r->dsn, clean[0] != '\0' && strchr(clean, ' ') == NULL ?
	    clean : "", sizeof(r->dsn));
	sanitize(clean, reply != NULL ? reply : "");
	if ((copy = strdup(clean)) != NULL) {
		free(r->reply);
		r->reply = copy;
	}
}

void
state_free(struct state *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->r[i].addr);
		free(s->r[i].reply);
	}
	free(s->r);
	memset(s, 0, sizeof(*s));
}

/* "STATE CODE DSN", shared by rcpt and outcome lines. */
static void
format_outcome(FILE *f, const struct rcpt_status *r)
{
	fprintf(f, "%s %d %s", rcpt_state_name(r->st), r->code,
	    r->dsn[0] != '\0' ? r->dsn : "-");
}

static int
format_state(FILE *f, const struct state *s)
{
	size_t i;

	fprintf(f, "listq-state: 1\nattempts: %u\ncrashes: %u\nwarned: %u\n"
	    "eightbit: %u\nfirst: %" PRId64 "\nnext: %" PRId64 "\n"
	    "sender: %s\n", s->attempts, s->crashes, s->warned, s->eightbit,
	    s->first_attempt, s->next_attempt, s->sender);
	for (i = 0; i < s->n; i++) {
		fputs("rcpt: ", f);
		format_outcome(f, &s->r[i]);
		fprintf(f, " %s %s\n", s->r[i].addr, s->r[i].reply);
	}
	return ferror(f) ? -1 : 0;
}

/* Formats what write() is to put on disk; -1 on allocation failure. */
static int
format_to(char **buf, size_t *len, int (*fmt)(FILE *, const struct state *,
    size_t, size_t), const struct state *s, size_t lo, size_t hi)
{
	FILE *f;
	int rc;

	*buf = NULL;
	*len = 0;
	if ((f = open_memstream(buf, len)) == NULL)
		return -1;
	rc = fmt(f, s, lo, hi);
	if (fclose(f) != 0)
		rc = -1;
	if (rc == -1) {
		free(*buf);
		*buf = NULL;
	}
	return rc;
}

static int
format_base(FILE *f, const struct state *s, size_t lo, size_t hi)
{
	(void)lo;
	(void)hi;
	return format_state(f, s);
}

int
state_save(int bucketfd, const char *id, struct state *s)
{
	char name[64], *buf;
	size_t len;
	int rc;

	snprintf(name, sizeof(name), "%s%s", id, STATE_SUFFIX);
	if (format_to(&buf, &len, format_base, s, 0, 0) == -1)
		return -1;
	rc = durable_replace(bucketfd, name, buf, len);
	free(buf);
	if (rc == 0) {
		s->disk_base = len;
		s->disk_tail = 0;
		s->disk_torn = 0;
	}
	return rc;
}

/* FNV-1a, 64 bits, continued from sum: a record's check. */
static uint64_t
record_sum(uint64_t sum, const char *p, size_t len)
{
	while (len-- > 0) {
		sum ^= (unsigned char)*p++;
		sum *= 0x100000001b3ULL;
	}
	return sum;
}

#define RECORD_SUM_INIT	0xcbf29ce484222325ULL

static int
same_outcome(const struct rcpt_status *a, const struct rcpt_status *b)
{
	return a->st == b->st && a->code == b->code &&
	    strcmp(a->dsn, b->dsn) == 0 && strcmp(a->reply, b->reply) == 0;
}

/*
 * The outcome lines of a record for recipients [lo, hi): one per run of
 * neighbours with the same outcome (one line for a transaction that went
 * through).
 */
static int
format_outcomes(FILE *f, const struct state *s, size_t lo, size_t hi)
{
	size_t i, j;

	for (i = lo; i < hi; i = j + 1) {
		for (j = i; j + 1 < hi && same_outcome(&s->r[i], &s->r[j + 1]);
		    j++)
			;
		if (j > i)
			fprintf(f, "outcome: %zu-%zu ", i, j);
		else
			fprintf(f, "outcome: %zu ", i);
		format_outcome(f, &s->r[i]);
		fprintf(f, " %s\n", s->r[i].reply);
	}
	return ferror(f) ? -1 : 0;
}

/* A record: its outcome lines and the end line that vouches for them. */
static int
format_record(char **buf, size_t *len, const struct state *s, size_t lo,
    size_t hi)
{
	char end[64], *p;
	int n;

	if (format_to(buf, len, format_outcomes, s, lo, hi) == -1)
		return -1;
	n = snprintf(end, sizeof(end), "end: %zu %016" PRIx64 "\n", *len,
	    record_sum(RECORD_SUM_INIT, *buf, *len));
	if ((p = realloc(*buf, *len + (size_t)n + 1)) == NULL) {
		free(*buf);
		return -1;
	}
	memcpy(p + *len, end, (size_t)n + 1);
	*buf = p;
	*len += (size_t)n;
	return 0;
}

/*
 * One write, one fdatasync.  On failure the file may end with part of
 * the record: the next record rewrites it whole instead of appending.
 */
static int
append_record(int bucketfd, const char *name, struct state *s,
    const char *buf, size_t len)
{
	int fd, saved;

	fd = openat(bucketfd, name, O_WRONLY | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1)
		return -1;
	if (write_full(fd, buf, len) == 0 && fdatasync(fd) == 0) {
		s->disk_tail += len;
		return close(fd);
	}
	saved = errno;
	s->disk_torn = 1;
	close(fd);
	errno = saved;
	return -1;
}

int
state_record(int bucketfd, const char *id, struct state *s, size_t lo,
    size_t hi)
{
	char name[64], *buf;
	size_t len;
	int rc;

	if (hi > s->n)
		hi = s->n;
	if (lo >= hi)
		return 0;
	if (s->disk_base == 0 || s->disk_torn)
		return state_save(bucketfd, id, s);
	if (format_record(&buf, &len, s, lo, hi) == -1)
		return -1;
	/* Compaction: the records never outweigh the base. */
	if (s->disk_tail + len > s->disk_base)
		rc = state_save(bucketfd, id, s);
	else {
		snprintf(name, sizeof(name), "%s%s", id, STATE_SUFFIX);
		rc = append_record(bucketfd, name, s, buf, len);
	}
	free(buf);
	return rc;
}

static enum rcpt_state
parse_rcpt_state(const char *w, int *ok)
{
	size_t i;

	for (i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
		if (strcmp(w, state_names[i]) == 0)
			return (enum rcpt_state)i;
	*ok = 0;
	return RCPT_PENDING;
}

struct outcome {
	enum rcpt_state	 st;
	int		 code;
	const char	*dsn;		/* "" for none */
};

/* "STATE CODE DSN " at *v, which is left at what follows. */
static const char *
parse_outcome(char **v, struct outcome *o)
{
	char *st, *code, *dsn, *end;
	int ok = 1;
	long c;

	if ((st = strsep(v, " ")) == NULL || (code = strsep(v, " ")) ==
	    NULL || (dsn = strsep(v, " ")) == NULL || *v == NULL)
		return "short recipient line";
	c = strtol(code, &end, 10);
	if (*end != '\0' || end == code || c < 0 || c > 999)
		return "bad reply code";
	o->st = parse_rcpt_state(st, &ok);
	o->code = (int)c;
	o->dsn = strcmp(dsn, "-") == 0 ? "" : dsn;
	return ok ? NULL : "bad recipient state";
}

/* "rcpt: STATE CODE DSN ADDR REPLY..." */
static const char *
parse_rcpt(char *v, struct state *s)
{
	struct outcome o;
	const char *bad;
	char *addr;

	if ((bad = parse_outcome(&v, &o)) != NULL)
		return bad;
	if ((addr = strsep(&v, " ")) == NULL || v == NULL)
		return "short recipient line";
	if (!address_valid(addr) || state_add_rcpt(s, addr) == -1)
		return "bad recipient address";
	state_set_rcpt(&s->r[s->n - 1], o.st, o.code, o.dsn, v);
	return NULL;
}

/* A recipient index of the base: digits only, below n. */
static const char *
parse_index(const char *w, size_t n, size_t *out)
{
	unsigned long long i;
	char *end;

	if (*w < '0' || *w > '9')
		return "bad recipient range";
	errno = 0;
	i = strtoull(w, &end, 10);
	if (errno != 0 || *end != '\0' || i >= n)
		return "bad recipient range";
	*out = (size_t)i;
	return NULL;
}

/* "outcome: FIRST[-LAST] STATE CODE DSN REPLY...", of a vouched record. */
static const char *
parse_outcome_line(char *line, struct state *s)
{
	char *v = line, *range, *last;
	struct outcome o;
	const char *bad;
	size_t lo, hi, i;

	if (strncmp(v, "outcome: ", 9) != 0)
		return "unknown key";
	v += 9;
	if ((range = strsep(&v, " ")) == NULL || v == NULL)
		return "short outcome line";
	if ((last = strchr(range, '-')) != NULL)
		*last++ = '\0';
	if ((bad = parse_index(range, s->n, &lo)) != NULL ||
	    (bad = parse_index(last != NULL ? last : range, s->n, &hi)) !=
	    NULL)
		return bad;
	if (lo > hi)
		return "bad recipient range";
	if ((bad = parse_outcome(&v, &o)) != NULL)
		return bad;
	for (i = lo; i <= hi; i++)
		state_set_rcpt(&s->r[i], o.st, o.code, o.dsn, v);
	return NULL;
}

static const char *
parse_number_field(const char *v, int64_t *out)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v || n < 0)
		return "bad number";
	*out = n;
	return NULL;
}

/* The numeric lines that open a state file, in order. */
static const struct {
	const char	*key;
	size_t		 off;
	int		 wide;		/* int64_t, else unsigned int */
} numbers[] = {
	{ "listq-state", 0, 0 },
	{ "attempts", offsetof(struct state, attempts), 0 },
	{ "crashes", offsetof(struct state, crashes), 0 },
	{ "warned", offsetof(struct state, warned), 0 },
	{ "eightbit", offsetof(struct state, eightbit), 0 },
	{ "first", offsetof(struct state, first_attempt), 1 },
	{ "next", offsetof(struct state, next_attempt), 1 },
};
#define NNUMBERS	(sizeof(numbers) / sizeof(numbers[0]))
#define SENDER_LINE	NNUMBERS

static const char *
parse_line(char *line, size_t lineno, struct state *s)
{
	char *v = strchr(line, ':'), *base = (char *)s;
	int64_t n = 0;
	const char *bad;

	if (v == NULL || v[1] != ' ')
		return "malformed line";
	*v = '\0';
	v += 2;
	if (lineno > SENDER_LINE)
		return strcmp(line, "rcpt") == 0 ? parse_rcpt(v, s) :
		    "unknown key";
	if (lineno == SENDER_LINE) {
		if (strcmp(line, "sender") != 0)
			return "missing or misplaced key";
		if (*v != '\0' && !address_valid(v))
			return "bad sender";
		strlcpy(s->sender, v, sizeof(s->sender));
		return NULL;
	}
	if (strcmp(line, numbers[lineno].key) != 0)
		return "missing or misplaced key";
	if ((bad = parse_number_field(v, &n)) != NULL)
		return bad;
	if (lineno == 0)
		return n == 1 ? NULL : "unsupported state version";
	if (numbers[lineno].wide)
		*(int64_t *)(void *)(base + numbers[lineno].off) = n;
	else if (n > UINT32_MAX)
		return "number out of range";
	else
		*(unsigned int *)(void *)(base + numbers[lineno].off) =
		    (unsigned int)n;
	return NULL;
}

/* The records after the base, read one line at a time. */
struct records {
	char		**lines;	/* of the record being read */
	size_t		  n, cap;
	size_t		  bytes;	/* its bytes so far */
	uint64_t	  sum;
	int		  bad;		/* one failed its check: it is last */
};

static void
records_reset(struct records *rd)
{
	size_t i;

	for (i = 0; i < rd->n; i++)
		free(rd->lines[i]);
	rd->n = 0;
	rd->bytes = 0;
	rd->sum = RECORD_SUM_INIT;
}

static int
records_keep(struct records *rd, const char *line, size_t len)
{
	char **v;

	if (rd->n == rd->cap) {
		if ((v = reallocarray(rd->lines, rd->cap == 0 ? 4 : rd->cap * 2,
		    sizeof(*v))) == NULL)
			return -1;
		rd->lines = v;
		rd->cap = rd->cap == 0 ? 4 : rd->cap * 2;
	}
	if ((rd->lines[rd->n] = strndup(line, len)) == NULL)
		return -1;
	rd->n++;
	return 0;
}

/* Does "end: BYTES SUM" vouch for the record read so far? */
static int
record_vouched(const struct records *rd, const char *end)
{
	char want[64];

	snprintf(want, sizeof(want), "end: %zu %016" PRIx64 "\n", rd->bytes,
	    rd->sum);
	return strcmp(end, want) == 0;
}

/*
 * One line (len bytes, newline included if it has one) after the base.
 * A record's lines are kept until its end line; a whole, vouched record
 * is applied; one that is not is an append cut short, ignored, after
 * which nothing may follow.
 */
static const char *
read_record_line(struct records *rd, const char *line, size_t len,
    struct state *s)
{
	const char *bad = NULL;
	size_t i;

	if (rd->bad)
		return "damaged progress record";
	if (line[len - 1] != '\n' || strncmp(line, "end: ", 5) != 0) {
		rd->sum = record_sum(rd->sum, line, len);
		rd->bytes += len;
		return records_keep(rd, line, len - (line[len - 1] == '\n')) ==
		    -1 ? "out of memory" : NULL;
	}
	if (!record_vouched(rd, line)) {
		rd->bad = 1;
		s->disk_torn = 1;
	} else {
		for (i = 0; i < rd->n && bad == NULL; i++)
			bad = parse_outcome_line(rd->lines[i], s);
		s->disk_tail += rd->bytes + len;
	}
	records_reset(rd);
	return bad;
}

/* One line of the base, newline included; *lineno counts them. */
static const char *
read_base_line(char *line, size_t len, size_t *lineno, struct state *s)
{
	if (line[len - 1] != '\n')
		return "truncated line";
	line[len - 1] = '\0';
	s->disk_base += len;
	return parse_line(line, (*lineno)++, s);
}

int
state_load(int bucketfd, const char *id, struct state *s, const char **why)
{
	struct records rd = { .sum = RECORD_SUM_INIT };
	char name[64], *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	FILE *f;
	int fd;

	memset(s, 0, sizeof(*s));
	*why = NULL;
	snprintf(name, sizeof(name), "%s%s", id, STATE_SUFFIX);
	if ((fd = openat(bucketfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) ==
	    -1)
		return -1;
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	while (*why == NULL && (len = getline(&line, &cap, f)) > 0) {
		/* The base ends at the first line that is not a recipient. */
		if (s->disk_tail == 0 && !rd.bad && rd.n == 0 &&
		    (lineno <= SENDER_LINE || strncmp(line, "rcpt: ", 6) == 0))
			*why = read_base_line(line, (size_t)len, &lineno, s);
		else
			*why = read_record_line(&rd, line, (size_t)len, s);
	}
	if (*why == NULL && lineno <= SENDER_LINE)
		*why = "truncated state";
	if (rd.n > 0)
		s->disk_torn = 1;	/* a record without its end line */
	records_reset(&rd);
	free(rd.lines);
	free(line);
	fclose(f);
	if (*why == NULL)
		return 0;
	state_free(s);
	errno = EINVAL;
	return -1;
}
