/*
 * SPDX-License-Identifier: ISC
 *
 * Bounce processing (see bounce.h).
 *
 * The parsers look for the machine-readable part first (an RFC 3464
 * message/delivery-status part, whoever wrote it: Postfix, Sendmail,
 * Exim 4, Exchange, Gmail, listq itself), then for the plain-text formats
 * that predate it (qmail's QSBMF, Exim's "following address(es) failed",
 * old Postfix and sendmail "<addr>: reason" paragraphs).
 *
 * A VERP address counts only as the MTA's local delivery wrote it: the
 * topmost Delivered-To.  Scores never disable anyone by themselves: at
 * the threshold a probe goes to the member (probe.c), and only a bounce
 * delivered to that probe's own address disables, and only a member.
 *
 * Invariants: a parser never reads past the message's NUL, never writes
 * past its buffers, and takes only addresses that address_valid()
 * accepts, so anything malformed yields no hit rather than a wrong one;
 * the list's bounce files (bounce-scores, probes, disabled) are only
 * rewritten whole (durable_replace) under an flock of the list
 * directory; nothing is added to disabled but an address found in
 * members under that flock.
 */
#include <sys/file.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bounce.h"
#include "durable.h"
#include "list.h"
#include "msghead.h"
#include "number.h"
#include "probe.h"

/* ---- small string helpers ------------------------------------------ */

/* Copies s (up to the end of its line) into out, trimmed, at most len-1. */
static void
line_copy(char *out, size_t len, const char *s)
{
	size_t n = strcspn(s, "\n");

	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n >= len)
		n = len - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* An address from "rfc822; <a@b>", "<a@b>:" or "a@b"; false if invalid. */
static bool
take_address(const char *s, char *out, size_t len)
{
	char buf[ADDR_MAX + 16], *p, *e;

	line_copy(buf, sizeof(buf), s);
	p = strchr(buf, ';') != NULL ? strchr(buf, ';') + 1 : buf;
	while (*p == ' ' || *p == '\t' || *p == '<')
		p++;
	e = p + strcspn(p, "> \t:");
	*e = '\0';
	if (!address_valid(p))
		return false;
	strlcpy(out, p, len);
	return true;
}

/* Length of an enhanced status code "c.s.d" at p (RFC 3463), or 0. */
static size_t
status_len(const char *p)
{
	size_t i = 2, part;

	if ((*p != '2' && *p != '4' && *p != '5') || p[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		size_t d = strspn(p + i, "0123456789");

		if (d == 0 || d > 3)
			return 0;
		i += d;
		if (part == 0 && p[i++] != '.')
			return 0;
	}
	return p[i] == '.' || isdigit((unsigned char)p[i]) ? 0 : i;
}

/* The first enhanced status code in s (to the end of s), or def. */
static void
find_status(const char *s, const char *def, char out[16])
{
	const char *p;
	size_t n;

	for (p = s; *p != '\0'; p++)
		if ((p == s || (!isdigit((unsigned char)p[-1]) && p[-1] != '.')) &&
		    (n = status_len(p)) > 0) {
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
	if (out != def)
		strlcpy(out, def, 16);
}

static struct bounce_hit *
add_hit(struct bounce_hit *hits, size_t *n, size_t max, const char *addr,
    const char *how)
{
	struct bounce_hit *h;

	if (*n >= max)
		return NULL;
	h = &hits[(*n)++];
	memset(h, 0, sizeof(*h));
	strlcpy(h->addr, addr, sizeof(h->addr));
	h->how = how;
	h->kind = BOUNCE_HARD;
	strlcpy(h->status, "5.0.0", sizeof(h->status));
	return h;
}

/* ---- RFC 3464 ------------------------------------------------------ */

struct dsn_group {
	char	addr[ADDR_MAX + 1];
	char	action[16];
	char	status[16];
	char	diag[200];
};

/* Applies one (unfolded) field line of a per-recipient group. */
static void
dsn_field(struct dsn_group *g, const char *line)
{
	if (strncasecmp(line, "Final-Recipient:", 16) == 0)
		take_address(line + 16, g->addr, sizeof(g->addr));
	else if (strncasecmp(line, "Original-Recipient:", 19) == 0 &&
	    g->addr[0] == '\0')
		take_address(line + 19, g->addr, sizeof(g->addr));
	else if (strncasecmp(line, "Action:", 7) == 0)
		line_copy(g->action, sizeof(g->action), line + 7);
	else if (strncasecmp(line, "Status:", 7) == 0)
		find_status(line + 7, "", g->status);
	else if (strncasecmp(line, "Diagnostic-Code:", 16) == 0) {
		const char *v = strchr(line + 16, ';');

		line_copy(g->diag, sizeof(g->diag), v != NULL ? v + 1 :
		    line + 16);
	}
}

static void
dsn_flush(struct dsn_group *g, struct bounce_hit *hits, size_t *n,
    size_t max)
{
	struct bounce_hit *h;
	bool failed = strcasecmp(g->action, "failed") == 0;

	if (g->addr[0] != '\0' && (failed || strcasecmp(g->action,
	    "delayed") == 0) && (h = add_hit(hits, n, max, g->addr, "dsn")) !=
	    NULL) {
		if (g->status[0] == '\0')
			strlcpy(g->status, failed ? "5.0.0" : "4.0.0",
			    sizeof(g->status));
		strlcpy(h->status, g->status, sizeof(h->status));
		strlcpy(h->diag, g->diag, sizeof(h->diag));
		h->kind = failed && g->status[0] == '5' ? BOUNCE_HARD :
		    BOUNCE_SOFT;
	}
	memset(g, 0, sizeof(*g));
}

/* The body of the message/delivery-status part, or NULL. */
static char *
dsn_part(char *m)
{
	char *p = m, *line, *body;

	while ((p = strcasestr(p, "message/delivery-status")) != NULL) {
		for (line = p; line > m && line[-1] != '\n'; line--)
			continue;
		if (strncasecmp(line, "Content-Type:", 13) == 0 &&
		    (body = strstr(p, "\n\n")) != NULL)
			return body + 2;
		p += 23;
	}
	return NULL;
}

static size_t
parse_dsn(char *m, struct bounce_hit *hits, size_t max)
{
	struct dsn_group g;
	char *body = dsn_part(m), *end, *line, *next, field[1024];
	size_t n = 0, flen = 0;

	if (body == NULL)
		return 0;
	if ((end = strstr(body, "\n--")) != NULL)
		end[1] = '\0';
	memset(&g, 0, sizeof(g));
	field[0] = '\0';
	for (line = body; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if ((*line == ' ' || *line == '\t') && flen > 0) {
			flen += (size_t)snprintf(field + flen, flen <
			    sizeof(field) ? sizeof(field) - flen : 0, " %s",
			    line + strspn(line, " \t"));
			if (flen >= sizeof(field))
				flen = sizeof(field) - 1;
			continue;
		}
		if (flen > 0)
			dsn_field(&g, field);
		flen = strlcpy(field, line, sizeof(field));
		if (flen >= sizeof(field))
			flen = sizeof(field) - 1;
		if (*line == '\0')
			dsn_flush(&g, hits, &n, max);
	}
	if (flen > 0)
		dsn_field(&g, field);
	dsn_flush(&g, hits, &n, max);
	return n;
}

/* ---- plain-text reports -------------------------------------------- */

/* Cuts m where the returned copy of the original message begins. */
static void
cut_original(char *m)
{
	static const char *const marks[] = {
		"\n--- Below this line is a copy of the message",
		"\n--- Enclosed is a copy of the message",
		"\n------ This is a copy of the message",
		"\n   ----- Original message -----",
		"\n------ Original message ------",
	};
	size_t i;
	char *p;

	for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		if ((p = strstr(m, marks[i])) != NULL)
			*p = '\0';
}

/*
 * Paragraphs that open with "<addr>:" (qmail's QSBMF, old Postfix and
 * sendmail texts); the rest of the paragraph is the reason.
 */
static size_t
parse_angle_paragraphs(const char *m, const char *how,
    struct bounce_hit *hits, size_t max)
{
	struct bounce_hit *h;
	const char *line, *para_end, *gt;
	char addr[ADDR_MAX + 1];
	size_t n = 0;

	for (line = m; line != NULL && *line != '\0'; line = strchr(line,
	    '\n'), line = line != NULL ? line + 1 : NULL) {
		if (*line != '<' || (gt = strchr(line, '>')) == NULL ||
		    gt[1] != ':' || memchr(line, '\n', (size_t)(gt - line)) !=
		    NULL || !take_address(line, addr, sizeof(addr)))
			continue;
		if ((h = add_hit(hits, &n, max, addr, how)) == NULL)
			break;
		para_end = strstr(line, "\n\n");
		line_copy(h->diag, sizeof(h->diag), gt + 2);
		if (h->diag[0] == '\0' && strchr(gt, '\n') != NULL)
			line_copy(h->diag, sizeof(h->diag), strchr(gt, '\n') + 1);
		{
			char para[2048];
			size_t len = para_end != NULL ? (size_t)(para_end -
			    line) : strlen(line);

			if (len >= sizeof(para))
				len = sizeof(para) - 1;
			memcpy(para, line, len);
			para[len] = '\0';
			find_status(strchr(para, '#') != NULL ?
			    strchr(para, '#') : gt + 2, "5.0.0", h->status);
		}
		if (h->status[0] == '4')
			h->kind = BOUNCE_SOFT;
	}
	return n;
}

/* Exim's "The following address(es) failed:" list. */
static size_t
parse_exim(const char *m, struct bounce_hit *hits, size_t max)
{
	const char *p = strcasestr(m, "following address(es) failed:");
	struct bounce_hit *h = NULL;
	char addr[ADDR_MAX + 1];
	size_t n = 0;

	if (p == NULL && (p = strcasestr(m, "following address failed:")) ==
	    NULL)
		return 0;
	for (p = strchr(p, '\n'); p != NULL && *++p != '\0';
	    p = strchr(p, '\n')) {
		if (*p == '\n')
			continue;
		if (strncmp(p, "    ", 4) == 0 && h != NULL) {
			char line[512];

			if (h->diag[0] == '\0')
				line_copy(h->diag, sizeof(h->diag), p);
			line_copy(line, sizeof(line), p);
			if (strcmp(h->status, "5.0.0") == 0)
				find_status(line, h->status, h->status);
		} else if (strncmp(p, "  ", 2) == 0 && take_address(p, addr,
		    sizeof(addr))) {
			if ((h = add_hit(hits, &n, max, addr, "exim")) == NULL)
				break;
		} else
			break;
	}
	return n;
}

size_t
bounce_parse(const char *msg, struct bounce_hit *hits, size_t max)
{
	size_t len = strnlen(msg, BOUNCE_MAX), i, o = 0, n;
	char *m = malloc(len + 1);

	if (m == NULL)
		return 0;
	for (i = 0; i < len; i++)
		if (msg[i] != '\r')
			m[o++] = msg[i];
	m[o] = '\0';
	if ((n = parse_dsn(m, hits, max)) == 0) {
		cut_original(m);
		if (strstr(m, "Hi. This is the qmail-send program") != NULL)
			n = parse_angle_paragraphs(m, "qmail", hits, max);
		else if ((n = parse_exim(m, hits, max)) == 0 &&
		    (strstr(m, "This is the mail system at host") != NULL ||
		    strstr(m, "The Postfix program") != NULL ||
		    strstr(m, "The original message was received at") != NULL))
			n = parse_angle_paragraphs(m, "text", hits, max);
	}
	free(m);
	return n;
}

/* ---- the envelope recipient ---------------------------------------- */

bool
bounce_envelope_ext(const char *headers, const char *local,
    const char *domain, char delim, char *ext, size_t len)
{
	char addr[ADDR_MAX + 1], *at;
	const char *from = headers, *v;
	size_t llen = strlen(local);

	/*
	 * Only the topmost Delivered-To: the one the MTA's local delivery
	 * prepended.  Any below it, and every To: or X-Original-To:, are
	 * the sender's to write.
	 */
	if (headers == NULL || (v = msghead_next(&from, "Delivered-To")) ==
	    NULL || !take_address(v, addr, sizeof(addr)) ||
	    strncasecmp(addr, local, llen) != 0 || addr[llen] != delim ||
	    (at = strrchr(addr, '@')) == NULL || strcasecmp(at + 1, domain) !=
	    0 || at == addr + llen + 1)
		return false;
	*at = '\0';
	strlcpy(ext, addr + llen + 1, len);
	return true;
}

bool
bounce_verp_member(const char *ext, char *member, size_t len)
{
	char addr[ADDR_MAX + 1], *eq;

	if (strlcpy(addr, ext, sizeof(addr)) >= sizeof(addr) ||
	    (eq = strrchr(addr, '=')) == NULL)
		return false;
	*eq = '@';
	if (!address_valid(addr))
		return false;
	strlcpy(member, addr, len);
	return true;
}

/* ---- recording ----------------------------------------------------- */

struct score {
	char		 addr[ADDR_MAX + 1];
	unsigned long	 tenths;
	long long	 last;
};

/*
 * One line "addr tenths last" of bounce-scores; -1 when it is not one
 * (bad address, a number that is negative, out of range or followed by
 * anything but the line end).
 */
static int
score_parse(char *line, struct score *s)
{
	char *addr, *t, *l, *save;
	uint64_t tenths, last;

	if ((addr = strtok_r(line, " \t\r\n", &save)) == NULL ||
	    (t = strtok_r(NULL, " \t\r\n", &save)) == NULL ||
	    (l = strtok_r(NULL, " \t\r\n", &save)) == NULL ||
	    strtok_r(NULL, " \t\r\n", &save) != NULL)
		return -1;
	if (strlen(addr) > ADDR_MAX || !address_valid(addr) ||
	    number_parse(t, ULONG_MAX, &tenths) == -1 ||
	    number_parse(l, INT64_MAX, &last) == -1)
		return -1;
	strlcpy(s->addr, addr, sizeof(s->addr));
	s->tenths = (unsigned long)tenths;
	s->last = (long long)last;
	return 0;
}

/* Reads bounce-scores ("addr tenths last") into *v; missing is empty. */
static int
scores_load(int dirfd, struct score **v, size_t *n)
{
	char line[512];
	struct score s, *nv;
	FILE *f;
	int fd;

	*v = NULL;
	*n = 0;
	if ((fd = openat(dirfd, "bounce-scores", O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (score_parse(line, &s) == -1)
			continue;
		if ((nv = reallocarray(*v, *n + 1, sizeof(**v))) == NULL)
			break;
		*v = nv;
		(*v)[(*n)++] = s;
	}
	fclose(f);
	return 0;
}

struct scores {
	const struct score	*v;
	size_t			 n;
};

static void
scores_emit(FILE *f, const void *arg)
{
	const struct scores *s = arg;
	size_t i;

	for (i = 0; i < s->n; i++)
		fprintf(f, "%s %lu %lld\n", s->v[i].addr, s->v[i].tenths,
		    s->v[i].last);
}

static int
scores_save(int dirfd, const struct score *v, size_t n)
{
	struct scores s = { v, n };

	return durable_replace_with(dirfd, "bounce-scores", scores_emit, &s);
}

struct disabled_file {
	const struct addr_list	*off;
	const char		*member;
};

static void
disabled_emit(FILE *f, const void *arg)
{
	const struct disabled_file *d = arg;
	size_t i;

	for (i = 0; i < d->off->n; i++)
		fprintf(f, "%s\n", d->off->v[i]);
	fprintf(f, "%s\n", d->member);
}

/* Adds member to the list's disabled file unless it is there already. */
static int
disable_member(const char *listdir, const char *list, int dirfd,
    const char *member)
{
	struct addr_list off;
	struct disabled_file d = { &off, member };
	char err[256];
	size_t bad, i;
	int rc;

	if (list_addresses(listdir, list, "disabled", &off, &bad, err,
	    sizeof(err)) == -1)
		memset(&off, 0, sizeof(off));
	for (i = 0; i < off.n; i++)
		if (address_equal(off.v[i], member)) {
			addr_list_free(&off);
			return 0;
		}
	rc = durable_replace_with(dirfd, "disabled", disabled_emit, &d);
	addr_list_free(&off);
	return rc == 0 ? 1 : -1;
}

static void
log_bounce(int dirfd, const char *member, const struct bounce_hit *hit,
    time_t now, const char *outcome)
{
	char line[600];
	int fd, n;

	n = snprintf(line, sizeof(line), "%lld %s %s %s %s %s: %s\n",
	    (long long)now, member, hit->kind == BOUNCE_HARD ? "hard" : "soft",
	    hit->status, hit->how, outcome, hit->diag);
	if ((fd = openat(dirfd, "bounces", O_WRONLY | O_CREAT | O_APPEND |
	    O_CLOEXEC, 0600)) == -1)
		return;
	/* A lost line of the log is no reason to lose the bounce. */
	if (n > 0)
		(void)write_full(fd, line, (size_t)n < sizeof(line) ?
		    (size_t)n : sizeof(line) - 1);
	close(fd);
}

/* Finds or adds member's score; NULL when out of memory. */
static struct score *
score_of(struct score **v, size_t *n, const char *member)
{
	struct score *nv;
	size_t i;

	for (i = 0; i < *n; i++)
		if (address_equal((*v)[i].addr, member))
			return &(*v)[i];
	if ((nv = reallocarray(*v, *n + 1, sizeof(**v))) == NULL)
		return NULL;
	*v = nv;
	memset(&nv[*n], 0, sizeof(nv[*n]));
	strlcpy(nv[*n].addr, member, sizeof(nv[*n].addr));
	return &nv[(*n)++];
}

/*
 * Updates the score under the list's lock; returns as bounce_record.
 * Reaching the threshold sends a probe (one at a time per member) and
 * starts the score again: only the probe's own bounce disables.
 */
static int
update_score(int dirfd, const char *member, const struct bounce_hit *hit,
    const struct config *c, time_t now, char token[PROBE_TOKEN_LEN + 1])
{
	struct score *v, *s;
	const char *outcome = "counted";
	size_t n;
	int rc = 0;

	if (scores_load(dirfd, &v, &n) == -1 || (s = score_of(&v, &n,
	    member)) == NULL) {
		free(v);
		return -1;
	}
	if (s->last != 0 && now - s->last < 86400) {
		log_bounce(dirfd, member, hit, now, "already counted today");
		free(v);
		return 0;
	}
	if (s->last != 0 && now - s->last > (time_t)c->bounce_info_stale_after)
		s->tenths = 0;
	s->tenths += hit->kind == BOUNCE_HARD ? 10 : 5;
	s->last = now;
	if (s->tenths >= c->bounce_score_threshold) {
		rc = probe_add(dirfd, member, now,
		    (time_t)c->bounce_info_stale_after, token);
		outcome = rc == 1 ? "probe sent" : "probe pending";
		if (rc == 1)
			s->tenths = 0;
	}
	if (rc != -1 && scores_save(dirfd, v, n) == -1)
		rc = -1;
	if (rc != -1)
		log_bounce(dirfd, member, hit, now, outcome);
	free(v);
	return rc;
}

/* Opens and flocks LISTDIR/<list>; -1 with err set. */
static int
list_lock(const char *listdir, const char *list, char *err, size_t errlen)
{
	char path[1024];
	int dirfd;

	snprintf(path, sizeof(path), "%s/%s", listdir, list);
	if ((dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    flock(dirfd, LOCK_EX) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (dirfd != -1)
			close(dirfd);
		return -1;
	}
	return dirfd;
}

int
bounce_record(const char *listdir, const char *list, const char *member,
    const struct bounce_hit *hit, const struct config *c, time_t now,
    char token[PROBE_TOKEN_LEN + 1], char *err, size_t errlen)
{
	int dirfd, rc;

	if ((dirfd = list_lock(listdir, list, err, errlen)) == -1)
		return -1;
	rc = update_score(dirfd, member, hit, c, now, token);
	if (rc == -1)
		snprintf(err, errlen, "%s/%s: updating bounce scores: %s",
		    listdir, list, strerror(errno));
	close(dirfd);
	return rc;
}

/* Is member in the list's members file (read under the caller's lock)? */
static bool
still_member(const char *listdir, const char *list, const char *member)
{
	struct addr_list l;
	char err[256];
	size_t bad, i;
	bool found = false;

	if (list_addresses(listdir, list, "members", &l, &bad, err,
	    sizeof(err)) == -1)
		return false;
	for (i = 0; i < l.n && !found; i++)
		found = address_equal(l.v[i], member);
	addr_list_free(&l);
	return found;
}

/* Disables member if it still is one: 1 now, 2 not, -1 on failure. */
static int
disable_probed(const char *listdir, const char *list, int dirfd,
    const char *member)
{
	int rc;

	if (!still_member(listdir, list, member))
		return 2;
	rc = disable_member(listdir, list, dirfd, member);
	return rc == 0 ? 2 : rc;
}

int
bounce_probe_failed(const char *listdir, const char *list, const char *token,
    const struct config *c, time_t now, char *member, size_t len, char *err,
    size_t errlen)
{
	struct bounce_hit hit = { .status = "5.0.0", .kind = BOUNCE_HARD,
	    .how = "probe" };
	int dirfd, rc;

	member[0] = '\0';
	if ((dirfd = list_lock(listdir, list, err, errlen)) == -1)
		return -1;
	rc = probe_take(dirfd, token, now, (time_t)c->bounce_info_stale_after,
	    member, len);
	if (rc == 1)
		rc = disable_probed(listdir, list, dirfd, member);
	if (rc == -1)
		snprintf(err, errlen, "%s/%s: probe %s: %s", listdir, list, token,
		    strerror(errno));
	else if (rc != 0)
		log_bounce(dirfd, member, &hit, now, rc == 1 ? "disabled" :
		    "not a member, or disabled already");
	close(dirfd);
	return rc;
}
