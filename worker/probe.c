/*
 * SPDX-License-Identifier: ISC
 *
 * VERP probes: the pending probes of a list (see probe.h).
 *
 * LISTDIR/<list>/probes holds one line "token member sent" per probe
 * sent and not yet answered by a bounce.  The token is 128 bits from
 * arc4random_buf, in hex: it cannot be guessed, so a bounce can only be
 * matched to it by coming back to the address the probe went out from.
 *
 * Invariants: the file is only rewritten whole (durable_replace), by a
 * caller holding the list directory's flock; a token is taken at most
 * once; a line that does not parse is dropped when the file is next
 * written, never read as a probe.  Failure modes: a file that cannot be
 * read or written (-1, errno), out of memory (-1, ENOMEM).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "durable.h"
#include "number.h"
#include "probe.h"

#define PROBES_FILE	"probes"

_Static_assert(PROBE_TOKEN_LEN == 2 * PROBE_TOKEN_BYTES, "a token is hex");

struct probe {
	char		token[PROBE_TOKEN_LEN + 1];
	char		member[ADDR_MAX + 1];
	long long	sent;
};

struct probes {
	struct probe	*v;
	size_t		 n;
};

static bool
token_valid(const char *t)
{
	size_t i;

	for (i = 0; i < PROBE_TOKEN_LEN; i++)
		if (!isdigit((unsigned char)t[i]) && (t[i] < 'a' || t[i] > 'f'))
			return false;
	return t[i] == '\0';
}

/* One line "token member sent"; -1 when it is not one. */
static int
probe_parse(char *line, struct probe *p)
{
	char *t, *m, *s, *save;
	uint64_t sent;

	if ((t = strtok_r(line, " \t\r\n", &save)) == NULL ||
	    (m = strtok_r(NULL, " \t\r\n", &save)) == NULL ||
	    (s = strtok_r(NULL, " \t\r\n", &save)) == NULL ||
	    strtok_r(NULL, " \t\r\n", &save) != NULL)
		return -1;
	if (!token_valid(t) || strlen(m) > ADDR_MAX || !address_valid(m) ||
	    number_parse(s, INT64_MAX, &sent) == -1)
		return -1;
	strlcpy(p->token, t, sizeof(p->token));
	strlcpy(p->member, m, sizeof(p->member));
	p->sent = (long long)sent;
	return 0;
}

static int
probes_push(struct probes *ps, const struct probe *p)
{
	struct probe *nv;

	if ((nv = reallocarray(ps->v, ps->n + 1, sizeof(*nv))) == NULL)
		return -1;
	ps->v = nv;
	ps->v[ps->n++] = *p;
	return 0;
}

/* The pending probes not older than lifetime; a missing file is none. */
static int
probes_load(int dirfd, time_t now, time_t lifetime, struct probes *ps)
{
	char *line = NULL;
	size_t cap = 0;
	struct probe p;
	FILE *f;
	int fd, rc = 0;

	memset(ps, 0, sizeof(*ps));
	if ((fd = openat(dirfd, PROBES_FILE, O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	while (rc == 0 && getline(&line, &cap, f) > 0)
		if (probe_parse(line, &p) == 0 && now - p.sent <= lifetime &&
		    p.sent <= now)
			rc = probes_push(ps, &p);
	free(line);
	fclose(f);
	if (rc == -1) {
		free(ps->v);
		errno = ENOMEM;
	}
	return rc;
}

static void
probes_emit(FILE *f, const void *arg)
{
	const struct probes *ps = arg;
	size_t i;

	for (i = 0; i < ps->n; i++)
		fprintf(f, "%s %s %lld\n", ps->v[i].token, ps->v[i].member,
		    ps->v[i].sent);
}

static int
probes_save(int dirfd, const struct probes *ps)
{
	return durable_replace_with(dirfd, PROBES_FILE, probes_emit, ps);
}

static void
token_new(char token[PROBE_TOKEN_LEN + 1])
{
	unsigned char rnd[PROBE_TOKEN_BYTES];
	size_t i;

	arc4random_buf(rnd, sizeof(rnd));
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(token + 2 * i, 3, "%02x", rnd[i]);
}

int
probe_add(int dirfd, const char *member, time_t now, time_t lifetime,
    char token[PROBE_TOKEN_LEN + 1])
{
	struct probes ps;
	struct probe p;
	size_t i;
	int rc;

	if (probes_load(dirfd, now, lifetime, &ps) == -1)
		return -1;
	for (i = 0; i < ps.n; i++)
		if (address_equal(ps.v[i].member, member)) {
			free(ps.v);
			return 0;
		}
	memset(&p, 0, sizeof(p));
	token_new(p.token);
	strlcpy(p.member, member, sizeof(p.member));
	p.sent = (long long)now;
	rc = probes_push(&ps, &p) == -1 ? -1 : probes_save(dirfd, &ps);
	free(ps.v);
	if (rc == -1)
		return -1;
	strlcpy(token, p.token, PROBE_TOKEN_LEN + 1);
	return 1;
}

int
probe_take(int dirfd, const char *token, time_t now, time_t lifetime,
    char *member, size_t len)
{
	struct probes ps;
	size_t i;
	int rc = 0;

	if (probes_load(dirfd, now, lifetime, &ps) == -1)
		return -1;
	for (i = 0; i < ps.n; i++)
		if (strcmp(ps.v[i].token, token) == 0)
			break;
	if (i < ps.n) {
		strlcpy(member, ps.v[i].member, len);
		ps.v[i] = ps.v[--ps.n];
		rc = probes_save(dirfd, &ps) == -1 ? -1 : 1;
	}
	free(ps.v);
	return rc;
}

bool
probe_token_of(const char *ext, char token[PROBE_TOKEN_LEN + 1])
{
	size_t tag = strlen(PROBE_TAG), i;

	if (strncasecmp(ext, PROBE_TAG, tag) != 0 ||
	    strlen(ext + tag) != PROBE_TOKEN_LEN)
		return false;
	strlcpy(token, ext + tag, PROBE_TOKEN_LEN + 1);
	for (i = 0; i < PROBE_TOKEN_LEN; i++)
		token[i] = (char)tolower((unsigned char)token[i]);
	return token_valid(token);
}
