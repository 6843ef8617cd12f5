/*
 * Reading and writing delivery state files (format in state.h).
 *
 * Invariants: what state_save() writes, state_load() reads back; a file
 * is replaced whole and durably or not at all; reply texts are one line
 * of printable ASCII, so a relay cannot inject lines into the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
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

static int
format_state(FILE *f, const struct state *s)
{
	size_t i;

	fprintf(f, "listq-state: 1\nattempts: %u\ncrashes: %u\nwarned: %u\n"
	    "eightbit: %u\nfirst: %" PRId64 "\nnext: %" PRId64 "\n"
	    "sender: %s\n", s->attempts, s->crashes, s->warned, s->eightbit,
	    s->first_attempt, s->next_attempt, s->sender);
	for (i = 0; i < s->n; i++)
		fprintf(f, "rcpt: %s %d %s %s %s\n",
		    rcpt_state_name(s->r[i].st), s->r[i].code,
		    s->r[i].dsn[0] != '\0' ? s->r[i].dsn : "-", s->r[i].addr,
		    s->r[i].reply);
	return ferror(f) ? -1 : 0;
}

int
state_save(int bucketfd, const char *id, const struct state *s)
{
	char name[64], *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	snprintf(name, sizeof(name), "%s%s", id, STATE_SUFFIX);
	if ((f = open_memstream(&buf, &len)) == NULL)
		return -1;
	rc = format_state(f, s);
	if (fclose(f) != 0)
		rc = -1;
	if (rc == 0)
		rc = durable_replace(bucketfd, name, buf, len);
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

/* "rcpt: STATE CODE DSN ADDR REPLY..." */
static const char *
parse_rcpt(char *v, struct state *s)
{
	char *st, *code, *dsn, *addr, *end;
	int ok = 1;
	long c;

	if ((st = strsep(&v, " ")) == NULL || (code = strsep(&v, " ")) ==
	    NULL || (dsn = strsep(&v, " ")) == NULL ||
	    (addr = strsep(&v, " ")) == NULL || v == NULL)
		return "short recipient line";
	c = strtol(code, &end, 10);
	if (*end != '\0' || c < 0 || c > 999)
		return "bad reply code";
	if (!address_valid(addr) || state_add_rcpt(s, addr) == -1)
		return "bad recipient address";
	state_set_rcpt(&s->r[s->n - 1], parse_rcpt_state(st, &ok), (int)c,
	    strcmp(dsn, "-") == 0 ? "" : dsn, v);
	return ok ? NULL : "bad recipient state";
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

int
state_load(int bucketfd, const char *id, struct state *s, const char **why)
{
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
		if (line[len - 1] != '\n')
			*why = "truncated line";
		else {
			line[len - 1] = '\0';
			*why = parse_line(line, lineno++, s);
		}
	}
	if (*why == NULL && lineno <= SENDER_LINE)
		*why = "truncated state";
	free(line);
	fclose(f);
	if (*why == NULL)
		return 0;
	state_free(s);
	errno = EINVAL;
	return -1;
}
