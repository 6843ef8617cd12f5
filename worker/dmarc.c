/*
 * SPDX-License-Identifier: ISC
 *
 * DMARC policy discovery (RFC 7489, 6.6.3) for the From: domain of a
 * post, cached per domain in the worker that owns the post.
 *
 * _dmarc.<domain> TXT and, when the domain is below its organizational
 * domain (the Public Suffix List, through libpsl), _dmarc.<org> TXT are
 * asked at once with c-ares, on the resolver of dns_resolver (or
 * resolv.conf), and the whole lookup ends after dns_timeout seconds
 * whatever the server does: a worker never waits longer for one domain.
 * The domain's own record wins; the organizational one applies (its sp=
 * if it has one) only when the domain has no DMARC record.
 *
 * Invariants: one lookup per domain while its answer's TTL lasts
 * (capped at a day; a negative answer for its SOA's negative TTL, 5
 * minutes without one; a failure for TEMPFAIL_TTL), so a thousand posts
 * from one domain cost one lookup per worker; the cache holds at most
 * CACHE_MAX domains (invariant 8).  Failure modes: SERVFAIL, REFUSED,
 * no answer in time or an unusable resolver are DMARC_TEMPFAIL; a record
 * starting v=DMARC1 without a valid p= (sp= at the organizational
 * domain), or several DMARC records at one name, are DMARC_MALFORMED.
 * What a post then becomes is mitigate.c's rule.
 */
#include <arpa/nameser.h>
#include <netinet/in.h>

#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ares.h>
#include <libpsl.h>

#include "dmarc.h"

#define CACHE_MAX	1024
#define TTL_MAX		86400
#define NEG_TTL		300	/* NXDOMAIN or no record, without an SOA */
#define TEMPFAIL_TTL	60
#define DOMAIN_MAX	253
#define RECORD_MAX	1024

struct cached {
	char		 domain[DOMAIN_MAX + 1];
	enum dmarc_policy p;
	char		 why[64];
	time_t		 until;		/* CLOCK_MONOTONIC seconds */
};

/* One query's outcome. */
struct answer {
	int		 done;
	int		 fail;		/* a temporary failure, said in why */
	int		 records;	/* v=DMARC1 records seen */
	char		 rec[RECORD_MAX];	/* the first of them */
	unsigned long	 ttl;
	char		 why[64];
};

static struct cached cache[CACHE_MAX];
static size_t ncached;

static time_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

const char *
dmarc_policy_name(enum dmarc_policy p)
{
	static const char *const names[] = { "absent", "none", "quarantine",
	    "reject", "malformed", "unknown" };

	return names[p];
}

/* Skips spaces and tabs (RFC 7489's WSP). */
static const char *
wsp(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Does rec start with the tag v=DMARC1? */
static int
is_dmarc(const char *rec)
{
	const char *p = wsp(rec);

	if (*p != 'v')
		return 0;
	p = wsp(p + 1);
	if (*p != '=')
		return 0;
	p = wsp(p + 1);
	if (strncmp(p, "DMARC1", 6) != 0)
		return 0;
	p = wsp(p + 6);
	return *p == ';' || *p == '\0';
}

/* The value of tag name in rec, trimmed, into out; 0 if absent. */
static int
tag_value(const char *rec, const char *name, char *out, size_t len)
{
	const char *p = rec, *eq, *end;
	size_t n, nlen = strlen(name);

	for (; p != NULL && *p != '\0'; p = strchr(p, ';'), p = p ? p + 1 :
	    NULL) {
		p = wsp(p);
		if (strncasecmp(p, name, nlen) != 0)
			continue;
		eq = wsp(p + nlen);
		if (*eq != '=')
			continue;
		eq = wsp(eq + 1);
		end = eq + strcspn(eq, ";");
		while (end > eq && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		n = (size_t)(end - eq) < len - 1 ? (size_t)(end - eq) : len - 1;
		memcpy(out, eq, n);
		out[n] = '\0';
		return 1;
	}
	return 0;
}

static enum dmarc_policy
policy_word(const char *w)
{
	if (strcasecmp(w, "none") == 0)
		return DMARC_P_NONE;
	if (strcasecmp(w, "quarantine") == 0)
		return DMARC_P_QUARANTINE;
	if (strcasecmp(w, "reject") == 0)
		return DMARC_P_REJECT;
	return DMARC_MALFORMED;
}

enum dmarc_policy
dmarc_parse_record(const char *rec, int org)
{
	char p[32], sp[32];
	enum dmarc_policy pol;

	if (!tag_value(rec, "p", p, sizeof(p)))
		return DMARC_MALFORMED;
	pol = policy_word(p);
	if (org && pol != DMARC_MALFORMED && tag_value(rec, "sp", sp,
	    sizeof(sp)))
		pol = policy_word(sp);
	return pol;
}

/* The TXT record rr as one string (its character-strings joined). */
static int
txt_string(const ns_rr *rr, char *out, size_t len)
{
	const unsigned char *p = ns_rr_rdata(*rr), *end = p + ns_rr_rdlen(*rr);
	size_t o = 0, n;

	while (p < end) {
		n = *p++;
		if (n > (size_t)(end - p) || o + n >= len)
			return -1;
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
	return 0;
}

/* The negative TTL of an answer without data: its SOA's, RFC 2308. */
static unsigned long
negative_ttl(ns_msg *msg)
{
	ns_rr rr;
	unsigned long ttl, min;
	int i;

	for (i = 0; i < ns_msg_count(*msg, ns_s_ns); i++) {
		if (ns_parserr(msg, ns_s_ns, i, &rr) == -1 ||
		    ns_rr_type(rr) != ns_t_soa || ns_rr_rdlen(rr) < 20)
			continue;
		ttl = ns_rr_ttl(rr);
		min = ns_get32(ns_rr_rdata(rr) + ns_rr_rdlen(rr) - 4);
		return ttl < min ? ttl : min;
	}
	return NEG_TTL;
}

/* Reads the DMARC records and the TTL out of a reply. */
static void
read_reply(struct answer *a, const unsigned char *buf, int len)
{
	char txt[RECORD_MAX];
	ns_msg msg;
	ns_rr rr;
	int i;

	if (ns_initparse(buf, len, &msg) == -1) {
		a->fail = 1;
		snprintf(a->why, sizeof(a->why), "unreadable reply");
		return;
	}
	a->ttl = TTL_MAX;
	for (i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
		if (ns_parserr(&msg, ns_s_an, i, &rr) == -1 ||
		    ns_rr_type(rr) != ns_t_txt)
			continue;
		if (ns_rr_ttl(rr) < a->ttl)
			a->ttl = ns_rr_ttl(rr);
		if (txt_string(&rr, txt, sizeof(txt)) == -1 || !is_dmarc(txt))
			continue;
		if (a->records++ == 0)
			strlcpy(a->rec, txt, sizeof(a->rec));
	}
	if (a->records == 0)
		a->ttl = negative_ttl(&msg);
}

static void
on_reply(void *arg, int status, int timeouts, unsigned char *buf, int len)
{
	struct answer *a = arg;

	(void)timeouts;
	a->done = 1;
	if ((status == ARES_SUCCESS || status == ARES_ENODATA ||
	    status == ARES_ENOTFOUND) && buf != NULL) {
		read_reply(a, buf, len);
		return;
	}
	if (status == ARES_ENODATA || status == ARES_ENOTFOUND) {
		a->ttl = NEG_TTL;
		return;
	}
	a->fail = 1;
	snprintf(a->why, sizeof(a->why), "%s", status == ARES_ESERVFAIL ?
	    "SERVFAIL" : status == ARES_EREFUSED ? "REFUSED" :
	    status == ARES_ETIMEOUT || status == ARES_ECANCELLED ? "timeout" :
	    ares_strerror(status));
}

/*
 * The poll events c-ares wants on socket i of ares_getsock()'s bits; its
 * own ARES_GETSOCK_WRITABLE shifts a signed 1 into the sign bit for the
 * last sockets (undefined behaviour), so the masks are unsigned here.
 */
static short
sock_events(unsigned int bits, int i)
{
	return (short)((bits & (1u << i) ? POLLIN : 0) |
	    (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0));
}

/* Runs the channel until both answers are in or the deadline passed. */
static void
wait_answers(ares_channel ch, const struct answer *a, size_t n,
    unsigned int timeout)
{
	struct pollfd pf[ARES_GETSOCK_MAXNUM];
	ares_socket_t s[ARES_GETSOCK_MAXNUM];
	struct timespec t0, t;
	long left;
	int bits, i, k;
	size_t j, pending;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (pending = 0, j = 0; j < n; j++)
			pending += !a[j].done;
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = (long)timeout * 1000 - ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (pending == 0)
			return;
		if (left <= 0)
			break;
		bits = ares_getsock(ch, s, ARES_GETSOCK_MAXNUM);
		for (k = 0, i = 0; i < ARES_GETSOCK_MAXNUM; i++)
			if ((pf[k].events = sock_events((unsigned)bits, i)))
				pf[k++].fd = s[i];
		if (poll(pf, (nfds_t)k, left > 100 ? 100 : (int)left) <= 0) {
			ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (i = 0; i < k; i++)
			ares_process_fd(ch, pf[i].revents & (POLLIN | POLLERR |
			    POLLHUP) ? pf[i].fd : ARES_SOCKET_BAD,
			    pf[i].revents & POLLOUT ? pf[i].fd : ARES_SOCKET_BAD);
	}
	ares_cancel(ch);	/* what is still pending: "timeout" */
}

/* A channel on the configured resolver; -1 with why if none. */
static int
open_channel(const struct config *c, ares_channel *ch, char *why,
    size_t len)
{
	struct ares_options o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.timeout = (int)c->dns_timeout * 1000;
	o.tries = 1;
	o.flags = ARES_FLAG_NOCHECKRESP;	/* SERVFAIL said as such */
	if ((rc = ares_init_options(ch, &o, ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_FLAGS)) != ARES_SUCCESS) {
		snprintf(why, len, "resolver: %s", ares_strerror(rc));
		return -1;
	}
	if (c->dns_resolver[0] != '\0' && (rc = ares_set_servers_ports_csv(*ch,
	    c->dns_resolver)) != ARES_SUCCESS) {
		snprintf(why, len, "dns_resolver: %s", ares_strerror(rc));
		ares_destroy(*ch);
		return -1;
	}
	return 0;
}

/* The organizational domain of domain (itself when it is one). */
static const char *
org_domain(const char *domain)
{
	static const psl_ctx_t *psl;
	const char *org;

	if (psl == NULL && (psl = psl_latest(NULL)) == NULL)
		psl = psl_builtin();
	if (psl == NULL || (org = psl_registrable_domain(psl, domain)) ==
	    NULL)
		return domain;
	return org;
}

/* The policy from the two answers, and how long it holds. */
static enum dmarc_policy
decide(const struct answer *a, int asked_org, char *why, size_t len,
    unsigned long *ttl)
{
	const struct answer *d = &a[0], *o = &a[1];

	*ttl = d->ttl;
	if (d->fail || (d->records == 0 && asked_org && o->fail)) {
		snprintf(why, len, "%s", d->fail ? d->why : o->why);
		*ttl = TEMPFAIL_TTL;
		return DMARC_TEMPFAIL;
	}
	if (d->records == 0 && asked_org) {
		d = o;
		*ttl = a[0].ttl < o->ttl ? a[0].ttl : o->ttl;
	}
	if (d->records > 1) {
		snprintf(why, len, "%d DMARC records", d->records);
		return DMARC_MALFORMED;
	}
	if (d->records == 0)
		return DMARC_ABSENT;
	snprintf(why, len, "\"%.50s\"", d->rec);
	return dmarc_parse_record(d->rec, d == o);
}

/* Asks DNS: _dmarc.<domain> and, below it, _dmarc.<org> at once. */
static enum dmarc_policy
lookup(const struct config *c, const char *domain, char *why, size_t len,
    unsigned long *ttl)
{
	static int ready;
	struct answer a[2];
	ares_channel ch;
	const char *org = org_domain(domain);
	char name[2][DOMAIN_MAX + 8];
	size_t i, n = strcmp(org, domain) != 0 ? 2 : 1;

	*ttl = TEMPFAIL_TTL;
	if (!ready && ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS)
		ready = 1;
	if (!ready || open_channel(c, &ch, why, len) == -1) {
		if (!ready)
			snprintf(why, len, "resolver library not ready");
		return DMARC_TEMPFAIL;
	}
	memset(a, 0, sizeof(a));
	snprintf(name[0], sizeof(name[0]), "_dmarc.%s", domain);
	snprintf(name[1], sizeof(name[1]), "_dmarc.%s", org);
	for (i = 0; i < n; i++)
		ares_query(ch, name[i], ns_c_in, ns_t_txt, on_reply, &a[i]);
	wait_answers(ch, a, n, c->dns_timeout);
	ares_destroy(ch);
	return decide(a, n == 2, why, len, ttl);
}

/* The cache slot of domain, or the one to reuse for it. */
static struct cached *
slot(const char *domain, time_t now, int *hit)
{
	struct cached *victim = NULL;
	size_t i;

	*hit = 0;
	for (i = 0; i < ncached; i++) {
		if (strcmp(cache[i].domain, domain) == 0) {
			*hit = cache[i].until > now;
			return &cache[i];
		}
		if (victim == NULL || cache[i].until < victim->until)
			victim = &cache[i];
	}
	if (ncached < CACHE_MAX)
		return &cache[ncached++];
	return victim;
}

enum dmarc_policy
dmarc_policy(const struct config *c, const char *domain, char *why,
    size_t whylen)
{
	char d[DOMAIN_MAX + 1];
	unsigned long ttl;
	time_t now = mono_now();
	struct cached *e;
	size_t i;
	int hit;

	for (i = 0; i < DOMAIN_MAX && domain[i] != '\0'; i++)
		d[i] = (char)tolower((unsigned char)domain[i]);
	d[i] = '\0';
	if (i > 0 && d[i - 1] == '.')
		d[i - 1] = '\0';
	e = slot(d, now, &hit);
	if (!hit) {
		strlcpy(e->domain, d, sizeof(e->domain));
		e->why[0] = '\0';
		e->p = lookup(c, d, e->why, sizeof(e->why), &ttl);
		e->until = now + (time_t)(ttl > TTL_MAX ? TTL_MAX : ttl);
	}
	strlcpy(why, e->why, whylen);
	return e->p;
}
