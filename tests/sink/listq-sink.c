/*
 * SPDX-License-Identifier: ISC
 *
 * listq-sink: a scriptable SMTP server for listq's tests, demo and
 * benchmarks.  It listens on 127.0.0.1 only, speaks ESMTP with PIPELINING
 * (and CHUNKING with -c, STARTTLS with -T, AUTH PLAIN and LOGIN with -A,
 * a SIZE limit with -S), records or counts what it accepts, and injects
 * faults on request.
 *
 * Invariants:
 *  - A transaction is recorded (its DIR/<seq>.eml, its -L lines, the
 *    counters) if and only if a 250 end-of-data reply is produced for it,
 *    and the recording happens before that reply is queued.  An .eml file
 *    appears only by rename(2) once complete; a reader never sees half.
 *  - A connection's input is handled strictly in order and its replies go
 *    out in that order; nothing after a stalled command is handled until
 *    the stall ends.  Buffered input is handled before polling again.
 *  - Nothing waits in the event loop but poll: sockets are non-blocking
 *    and stalls are timers.  (Only file writes under -d and -L block.)
 *  - Everything is bounded: lifetime (-t), idle time per connection,
 *    input buffer, output before input handling pauses, recipients per
 *    transaction, connections.  Each pass of a loop over input consumes
 *    input or stops.
 *  - STARTTLS (RFC 3207): the 220 goes out in clear, input buffered after
 *    the STARTTLS line is discarded, and after the handshake the session
 *    starts over (no HELO, no AUTH, no transaction); from then on every
 *    byte in and out of the connection passes through its SSL.
 *
 * Usage: listq-sink [-cv] [-A user:password] [-d dir] [-F faultlog]
 *                   [-L logfile] [-m maxmsgs] [-P portfile] [-p port]
 *                   [-R seed] [-r rulesfile] [-S bytes]
 *                   [-T certfile:keyfile] [-t seconds]
 *
 * Recorded (-d): DIR/<seq>.eml, seq an 8-digit counter, holding the lines
 * "X-Sink-Mail-From: <addr>", one "X-Sink-Rcpt-To: <addr>" per accepted
 * recipient, "X-Sink-Connection: <n>", "X-Sink-Peer-Port: <port>",
 * "X-Sink-TLS: yes|no", "X-Sink-Pipelined: yes|no" (a command came after
 * MAIL before its reply), and when they apply "X-Sink-Auth: <user>" and
 * "X-Sink-Mail-Params: <params>", each ending in LF, then an empty line
 * (LF), then the message as received after dot-unstuffing.  -L adds
 * "<seq> addr" per accepted recipient.  README.md has the details.
 *
 * Rules file: one rule per line, '#' starts a comment line, words are
 * separated by blanks.  For each event the first stall rule that matches
 * delays it, then the first response rule that matches answers it.
 * Every kind also exists as KIND-once: it fires once in the sink's
 * lifetime, except rcpt-once, which fires once per address.
 *
 *   greet CODE [TEXT]            greeting; 421 closes, other 4xx/5xx refuse
 *                                the session (503 to all but QUIT)
 *   rcpt GLOB CODE [TEXT]        RCPT whose address matches GLOB (fnmatch,
 *                                case-insensitive, address without <>)
 *   cmd VERB CODE [TEXT]         answer VERB with CODE
 *   close VERB [421]             answer "421 4.3.2 closing" and close
 *   drop DATA|BDAT BYTES         close without a reply once BYTES bytes of
 *                                message data have arrived
 *   stall VERB SECONDS           answer VERB only after SECONDS (fractions
 *                                allowed)
 *
 * VERB is EHLO, HELO, MAIL, RCPT, DATA, BDAT, DOT (the end-of-data reply,
 * also for BDAT LAST), RSET, NOOP, QUIT, STARTTLS or AUTH, and for stall
 * also GREET.
 * CODE is 200-599: 2xx and 3xx let the command succeed with TEXT as its
 * reply, 4xx and 5xx refuse it.  A bad rule exits 64 with
 * "listq-sink: FILE:LINE: reason".
 *
 * Any rule may start with the qualifiers "chance PERCENT" (it matches
 * only that often, drawn from a generator seeded by -R, so a run is
 * reproducible from its seed and its order of events) and "from GLOB"
 * (only inside a transaction whose sender matches; the null sender is
 * the empty string).  -F appends one line per rule that fires: "conn
 * line kind VERB value <sender>|- <rcpt>...", value being the reply
 * code, the bytes of a drop or the milliseconds of a stall.
 */
#define _GNU_SOURCE

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define SINK_NAME	"listq-sink"
#define MAX_CONN	1024
#define INBUF_SIZE	65536		/* per connection, fixed */
#define OUT_HIGH	65536		/* pause input handling above this */
#define MAX_CMDLINE	1000		/* command line, CRLF included */
#define MAX_REPLY	1024
#define MAX_RCPTS	10000		/* per transaction */
#define MAX_RULES	10000
#define RULE_LINE_MAX	1024
#ifndef IDLE_MS
#define IDLE_MS		300000		/* overridable for testing the timeout */
#endif
#define CLOSE_MS	5000		/* to flush a last reply, then drain */
#define STOP_GRACE_MS	10000		/* after -m: let clients say QUIT */
#define ACCEPT_BURST	64
#define SERVICE_ROUNDS	8

/* Events a rule can be about; a bit each so BDAT LAST can be BDAT|DOT. */
enum {
	V_GREET = 1 << 0,
	V_EHLO	= 1 << 1,
	V_HELO	= 1 << 2,
	V_MAIL	= 1 << 3,
	V_RCPT	= 1 << 4,
	V_DATA	= 1 << 5,
	V_BDAT	= 1 << 6,
	V_DOT	= 1 << 7,
	V_RSET	= 1 << 8,
	V_NOOP	= 1 << 9,
	V_QUIT	= 1 << 10,
	V_STARTTLS = 1 << 11,
	V_AUTH	= 1 << 12,
};

static const struct {
	const char	*name;
	unsigned	 bit;
} verb_names[] = {
	{ "GREET", V_GREET }, { "EHLO", V_EHLO }, { "HELO", V_HELO },
	{ "MAIL", V_MAIL }, { "RCPT", V_RCPT }, { "DATA", V_DATA },
	{ "BDAT", V_BDAT }, { "DOT", V_DOT }, { "RSET", V_RSET },
	{ "NOOP", V_NOOP }, { "QUIT", V_QUIT }, { "STARTTLS", V_STARTTLS },
	{ "AUTH", V_AUTH },
};

enum rkind { R_GREET, R_RCPT, R_CMD, R_CLOSE, R_DROP, R_STALL };

/* Addresses already answered by an rcpt-once rule (open addressing). */
struct strset {
	char	**slot;
	size_t	  cap;
	size_t	  n;
};

struct rule {
	enum rkind	 kind;
	int		 once;
	int		 fired;
	unsigned	 verbs;
	char		*glob;
	int		 code;
	char		*text;
	unsigned long long bytes;
	long long	 ms;
	struct strset	 seen;
	unsigned	 line;		/* in the rules file, for -F */
	unsigned	 ppm;		/* chance: matches per million, 0: always */
	char		*from;		/* from: sender glob, NULL: any */
};

enum cstate {
	CS_GREET,	/* greeting not yet sent */
	CS_CMD,		/* reading command lines */
	CS_DATA,	/* reading a DATA body */
	CS_BDAT,	/* reading the bytes of a BDAT chunk */
	CS_BDAT_END,	/* chunk read, its reply not yet given */
	CS_STARTTLS,	/* flushing the 220 to STARTTLS, in clear */
	CS_TLS,		/* TLS handshake under way */
	CS_CLOSING,	/* flushing the last reply */
	CS_DRAIN,	/* write side shut, discarding input until EOF */
	CS_DEAD		/* to be closed by whoever holds it */
};

enum stop { STOP_INPUT, STOP_STALL, STOP_OUTPUT, STOP_STATE };

/* Where an AUTH exchange stands: what the next client line must be. */
enum astep { A_NONE, A_PLAIN, A_LOGIN_USER, A_LOGIN_PASS };

struct conn {
	int		 fd;
	size_t		 slot;
	unsigned long long id;
	enum cstate	 state;
	char		*in;
	size_t		 rpos, wpos;
	char		*out;
	size_t		 ooff, olen, ocap;
	int		 eof;
	int		 ready;		/* has work that no poll event will wake */
	long long	 deadline;	/* idle, or end of closing/draining */
	long long	 stall_until;
	int		 stall_passed;	/* the stalled event's turn has come */
	int		 discarding;	/* skipping the rest of a long line */
	int		 refused;	/* the greeting refused the session */
	int		 helo;
	SSL		*ssl;		/* NULL until STARTTLS */
	short		 tls_want;	/* POLLIN/POLLOUT the handshake waits for */
	int		 tls_more;	/* the SSL may hold unread input */
	enum astep	 astep;
	char		*login_user;	/* AUTH LOGIN: the name given */
	char		*auth_user;	/* authenticated as, NULL if not */
	/* the transaction */
	int		 in_tx;
	int		 chunking;	/* BDAT has started its data */
	char		*from;
	char		*params;	/* MAIL parameters, "" if none */
	int		 ahead;		/* a command came after MAIL unasked */
	char		**rcpt;
	size_t		 nrcpt, rcptcap;
	FILE		*fp;
	char		*tmppath;
	unsigned long long msgbytes;	/* stored bytes */
	unsigned long long rawbytes;	/* bytes on the wire, for drop */
	struct rule	*drop;
	int		 at_bol;	/* DATA: at the start of a line */
	int		 last_cr;	/* DATA: last byte handled was CR */
	unsigned long long bdat_left, bdat_size;
	int		 bdat_last;
	const char	*bdat_err;
};

static struct {
	int		 chunking;
	int		 verbose;
	SSL_CTX		*tls;		/* -T: STARTTLS offered */
	const char	*auth_user;	/* -A: AUTH offered */
	const char	*auth_pass;
	unsigned long long size_limit;	/* -S, 0: none */
	const char	*dir;
	FILE		*log;
	unsigned long long max_msgs;
	long long	 now;
	long long	 end;
	struct rule	*rules;
	size_t		 nrules;
	uint64_t	 rng;		/* -R: state of the chance draws */
	FILE		*faults;	/* -F: one line per rule fired */
	unsigned long long seq;
	unsigned long long nconns, ntx, nrcpts, nbytes;
	struct conn	**conns;
	size_t		 nconn, maxconn;
	int		 lfd;
	long long	 listen_pause;
	int		 stopping;
	long long	 stop_end;
} g;

static volatile sig_atomic_t got_signal;

static void	conn_closing(struct conn *);

/* Utilities */

static void __attribute__((noreturn, format(printf, 2, 3)))
die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs(SINK_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static void __attribute__((format(printf, 1, 2)))
note(const char *fmt, ...)
{
	va_list ap;

	if (!g.verbose)
		return;
	fputs(SINK_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL)
		die(EX_OSERR, "out of memory");
	return p;
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n, size)) == NULL)
		die(EX_OSERR, "out of memory");
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		die(EX_OSERR, "out of memory");
	return p;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_signal(int sig)
{
	got_signal = sig;
}

/* String set, keyed case-insensitively like the globs that feed it. */

static size_t
strset_hash(const char *s)
{
	size_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)tolower((unsigned char)*s)) * 16777619u;
	return h;
}

static void
strset_grow(struct strset *s)
{
	struct strset n;
	size_t i, j;

	n.cap = s->cap ? s->cap * 2 : 64;
	n.n = s->n;
	n.slot = xcalloc(n.cap, sizeof(*n.slot));
	for (i = 0; i < s->cap; i++) {
		if (s->slot[i] == NULL)
			continue;
		j = strset_hash(s->slot[i]) & (n.cap - 1);
		while (n.slot[j] != NULL)
			j = (j + 1) & (n.cap - 1);
		n.slot[j] = s->slot[i];
	}
	free(s->slot);
	*s = n;
}

/* Returns 1 if key was added, 0 if it was there already. */
static int
strset_add(struct strset *s, const char *key)
{
	size_t i, probes;

	if (2 * (s->n + 1) > s->cap)
		strset_grow(s);
	i = strset_hash(key) & (s->cap - 1);
	for (probes = 0; probes < s->cap; probes++) {
		if (s->slot[i] == NULL) {
			s->slot[i] = xstrdup(key);
			s->n++;
			return 1;
		}
		if (strcasecmp(s->slot[i], key) == 0)
			return 0;
		i = (i + 1) & (s->cap - 1);
	}
	die(EX_SOFTWARE, "address set full");
}

/* Rules */

static void __attribute__((noreturn))
rule_error(const char *path, unsigned line, const char *what, const char *arg)
{
	if (arg != NULL)
		die(EX_USAGE, "%s:%u: %s '%s'", path, line, what, arg);
	die(EX_USAGE, "%s:%u: %s", path, line, what);
}

/* Splits off the next blank-separated word; NULL at the end of the line. */
static char *
next_word(char **pp)
{
	char *p = *pp, *w;

	p += strspn(p, " \t");
	if (*p == '\0')
		return NULL;
	w = p;
	p += strcspn(p, " \t");
	if (*p != '\0')
		*p++ = '\0';
	*pp = p;
	return w;
}

static unsigned
verb_bit(const char *w)
{
	size_t i;

	for (i = 0; i < sizeof(verb_names) / sizeof(verb_names[0]); i++)
		if (strcasecmp(w, verb_names[i].name) == 0)
			return verb_names[i].bit;
	return 0;
}

static int
parse_code(const char *w)
{
	if (w == NULL || strlen(w) != 3 || w[0] < '2' || w[0] > '5' ||
	    !isdigit((unsigned char)w[1]) || !isdigit((unsigned char)w[2]))
		return -1;
	return (w[0] - '0') * 100 + (w[1] - '0') * 10 + (w[2] - '0');
}

/* The reply text is the rest of the line; a bare code gets a neutral one. */
static char *
reply_text(char *rest, int code)
{
	char buf[32];

	rest += strspn(rest, " \t");
	if (*rest != '\0')
		return xstrdup(rest);
	if (code / 100 == 3)
		return xstrdup("go ahead");
	snprintf(buf, sizeof(buf), "%d.0.0 sink rule", code / 100);
	return xstrdup(buf);
}

/* The kinds whose first argument is a VERB; R_GREET stands for none. */
static enum rkind
verb_rule_kind(const char *kw)
{
	if (strcmp(kw, "cmd") == 0)
		return R_CMD;
	if (strcmp(kw, "close") == 0)
		return R_CLOSE;
	if (strcmp(kw, "drop") == 0)
		return R_DROP;
	if (strcmp(kw, "stall") == 0)
		return R_STALL;
	return R_GREET;
}

/*
 * The qualifiers "chance PERCENT" and "from GLOB" in front of a rule;
 * returns the word after them (the kind), NULL at the end of the line.
 */
static char *
rule_qualify(struct rule *r, char *kw, char **pp, const char *path,
    unsigned line)
{
	char *w, *end;
	double pct;

	for (; kw != NULL; kw = next_word(pp)) {
		if (strcmp(kw, "chance") != 0 && strcmp(kw, "from") != 0)
			break;
		if ((w = next_word(pp)) == NULL)
			rule_error(path, line, "missing argument after", kw);
		if ((kw[0] == 'c' ? r->ppm != 0 : r->from != NULL))
			rule_error(path, line, "repeated qualifier", kw);
		if (kw[0] == 'f') {
			r->from = xstrdup(w);
			continue;
		}
		errno = 0;
		pct = strtod(w, &end);
		if (errno != 0 || *end != '\0' || !isfinite(pct) ||
		    pct <= 0 || pct > 100)
			rule_error(path, line, "bad percentage (want more "
			    "than 0, at most 100)", w);
		r->ppm = (unsigned)(pct * 10000 + 0.5);
		if (r->ppm == 0)
			r->ppm = 1;
	}
	return kw;
}

static void
rule_parse(struct rule *r, char *p, const char *path, unsigned line)
{
	char *kw, *w, *end;
	size_t n;
	double secs;
	long long bytes;
	const char *errstr;

	r->line = line;
	if ((kw = rule_qualify(r, next_word(&p), &p, path, line)) == NULL)
		rule_error(path, line, r->ppm != 0 || r->from != NULL ?
		    "no rule after the qualifiers" : "empty rule", NULL);
	n = strlen(kw);
	if (n > 5 && strcmp(kw + n - 5, "-once") == 0) {
		r->once = 1;
		kw[n - 5] = '\0';
	}
	if (strcmp(kw, "greet") == 0) {
		r->kind = R_GREET;
		r->verbs = V_GREET;
	} else if (strcmp(kw, "rcpt") == 0) {
		r->kind = R_RCPT;
		r->verbs = V_RCPT;
		if ((w = next_word(&p)) == NULL)
			rule_error(path, line, "rcpt: missing address glob",
			    NULL);
		r->glob = xstrdup(w);
	} else if ((r->kind = verb_rule_kind(kw)) != R_GREET) {
		if ((w = next_word(&p)) == NULL)
			rule_error(path, line, "missing command after", kw);
		r->verbs = verb_bit(w);
		if (r->verbs == 0 || (r->verbs == V_GREET &&
		    r->kind != R_STALL))
			rule_error(path, line, "unknown command", w);
		if (r->kind == R_DROP && r->verbs != V_DATA &&
		    r->verbs != V_BDAT)
			rule_error(path, line, "drop applies to DATA or BDAT, "
			    "not", w);
	} else
		rule_error(path, line, "unknown rule", kw);

	switch (r->kind) {
	case R_GREET:
	case R_RCPT:
	case R_CMD:
		w = next_word(&p);
		if ((r->code = parse_code(w)) == -1)
			rule_error(path, line, "bad reply code (want 200-599)",
			    w);
		r->text = reply_text(p, r->code);
		if (strlen(r->text) > MAX_CMDLINE - 6)
			rule_error(path, line, "reply text too long", NULL);
		return;
	case R_CLOSE:
		if ((w = next_word(&p)) != NULL && strcmp(w, "421") != 0)
			rule_error(path, line, "close answers 421 only, not",
			    w);
		r->code = 421;
		break;
	case R_DROP:
		if ((w = next_word(&p)) == NULL)
			rule_error(path, line, "drop: missing byte count",
			    NULL);
		bytes = strtonum(w, 0, 1LL << 40, &errstr);
		if (errstr != NULL)
			rule_error(path, line, "bad byte count", w);
		r->bytes = (unsigned long long)bytes;
		break;
	case R_STALL:
		if ((w = next_word(&p)) == NULL)
			rule_error(path, line, "stall: missing seconds", NULL);
		errno = 0;
		secs = strtod(w, &end);
		if (errno != 0 || *end != '\0' || !isfinite(secs) ||
		    secs <= 0 || secs > 86400)
			rule_error(path, line, "bad seconds (want 0-86400)",
			    w);
		r->ms = (long long)(secs * 1000 + 0.5);
		if (r->ms == 0)
			r->ms = 1;
		break;
	}
	if ((w = next_word(&p)) != NULL)
		rule_error(path, line, "unexpected", w);
}

static void
rules_load(const char *path)
{
	FILE *fp;
	char buf[RULE_LINE_MAX + 2], *p;
	size_t len;
	unsigned line = 0;

	if ((fp = fopen(path, "r")) == NULL)
		die(EX_NOINPUT, "%s: %s", path, strerror(errno));
	while (fgets(buf, sizeof(buf), fp) != NULL) {
		line++;
		len = strlen(buf);
		if (len > 0 && buf[len - 1] != '\n' && !feof(fp))
			rule_error(path, line, "line too long", NULL);
		while (len > 0 && isspace((unsigned char)buf[len - 1]))
			buf[--len] = '\0';
		p = buf + strspn(buf, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		if (g.nrules == MAX_RULES)
			rule_error(path, line, "too many rules", NULL);
		g.rules = xrealloc(g.rules, (g.nrules + 1) * sizeof(*g.rules));
		memset(&g.rules[g.nrules], 0, sizeof(*g.rules));
		rule_parse(&g.rules[g.nrules], p, path, line);
		g.nrules++;
	}
	if (ferror(fp))
		die(EX_IOERR, "%s: read error", path);
	fclose(fp);
}

/* A once rule may fire now: it marks itself spent. */
static int
rule_take(struct rule *r)
{
	if (!r->once)
		return 1;
	if (r->fired)
		return 0;
	r->fired = 1;
	return 1;
}

/* splitmix64: a small generator whose whole sequence the -R seed fixes. */
static uint64_t
rng_next(void)
{
	uint64_t z = (g.rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * The qualifiers of r hold for the event: the sender (MAIL's own address
 * at MAIL, else the transaction's) matches "from", and the "chance" draw
 * comes out.  The draw is made last, for a rule that matches otherwise,
 * so that the same seed and the same events give the same decisions.
 */
static int
rule_qualifies(const struct rule *r, const struct conn *c, unsigned ev,
    const char *addr)
{
	const char *sender = ev == V_MAIL ? addr : c->from;

	if (r->from != NULL && (sender == NULL ||
	    fnmatch(r->from, sender, FNM_CASEFOLD) != 0))
		return 0;
	if (r->ppm == 0 || r->ppm >= 1000000)
		return 1;
	return rng_next() % 1000000 < r->ppm;
}

static const char *
verb_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < sizeof(verb_names) / sizeof(verb_names[0]); i++)
		if (verb_names[i].bit == bit)
			return verb_names[i].name;
	return "?";
}

/*
 * -F: "conn line kind VERB value <sender>|- <rcpt>...": the recipient in
 * question at RCPT, else those the transaction has accepted so far.
 */
static void
rule_log(const struct conn *c, const struct rule *r, unsigned ev,
    const char *addr, long long value)
{
	static const char *const kinds[] = { "greet", "rcpt", "cmd", "close",
	    "drop", "stall" };
	const char *sender = ev == V_MAIL ? addr : c->from;
	size_t i;

	if (g.faults == NULL)
		return;
	fprintf(g.faults, "%llu %u %s %s %lld ", c->id, r->line,
	    kinds[r->kind], verb_name(r->verbs & ev), value);
	if (sender != NULL)
		fprintf(g.faults, "<%s>", sender);
	else
		fputc('-', g.faults);
	if (ev == V_RCPT && addr != NULL)
		fprintf(g.faults, " <%s>", addr);
	else
		for (i = 0; i < c->nrcpt; i++)
			fprintf(g.faults, " <%s>", c->rcpt[i]);
	fputc('\n', g.faults);
	if (fflush(g.faults) != 0)
		note("fault log: %s", strerror(errno));
}

/* The first response rule for the event, or NULL for the default answer. */
static struct rule *
rule_respond(struct conn *c, unsigned ev, const char *addr)
{
	struct rule *r;
	size_t i;

	for (i = 0; i < g.nrules; i++) {
		r = &g.rules[i];
		if (r->kind == R_DROP || r->kind == R_STALL ||
		    (r->verbs & ev) == 0 || (r->once && r->fired))
			continue;
		if (r->kind == R_RCPT && (addr == NULL ||
		    fnmatch(r->glob, addr, FNM_CASEFOLD) != 0))
			continue;
		if (!rule_qualifies(r, c, ev, addr))
			continue;
		if (r->kind == R_RCPT ? r->once && !strset_add(&r->seen, addr) :
		    !rule_take(r))
			continue;
		rule_log(c, r, ev, addr, r->code);
		return r;
	}
	return NULL;
}

static struct rule *
rule_find(struct conn *c, enum rkind kind, unsigned ev)
{
	size_t i;

	for (i = 0; i < g.nrules; i++)
		if (g.rules[i].kind == kind && (g.rules[i].verbs & ev) != 0 &&
		    !(g.rules[i].once && g.rules[i].fired) &&
		    rule_qualifies(&g.rules[i], c, ev, NULL))
			return &g.rules[i];
	return NULL;
}

/* Output */

static void
out_append(struct conn *c, const char *s, size_t n)
{
	if (c->olen + n > c->ocap) {
		if (c->ooff > 0) {
			memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
			c->olen -= c->ooff;
			c->ooff = 0;
		}
		if (c->olen + n > c->ocap) {
			c->ocap = c->ocap * 2 > c->olen + n ? c->ocap * 2 :
			    c->olen + n;
			c->out = xrealloc(c->out, c->ocap);
		}
	}
	memcpy(c->out + c->olen, s, n);
	c->olen += n;
}

static void __attribute__((format(printf, 2, 3)))
reply(struct conn *c, const char *fmt, ...)
{
	char buf[MAX_REPLY];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 3)
		n = sizeof(buf) - 3;
	if (g.verbose)
		fprintf(stderr, "sink[%llu]: > %.*s\n", c->id, n, buf);
	buf[n++] = '\r';
	buf[n++] = '\n';
	out_append(c, buf, (size_t)n);
}

static void
reply_rule(struct conn *c, const struct rule *r)
{
	reply(c, "%d %s", r->code, r->text);
}

/* SSL_read() or SSL_write() gave n <= 0: EAGAIN, 0 (EOF) or an error. */
static int
tls_errno(struct conn *c, int n)
{
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return EAGAIN;
	case SSL_ERROR_ZERO_RETURN:	/* also a TCP EOF: see tls_init */
		return 0;
	default:
		ERR_clear_error();
		return ECONNRESET;
	}
}

/* As send(2), through the SSL once TLS is on; EAGAIN: try later. */
static ssize_t
conn_send(struct conn *c, const char *p, size_t len)
{
	int n;

	if (c->ssl == NULL)
		return send(c->fd, p, len, MSG_NOSIGNAL);
	if ((n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len)) > 0)
		return n;
	if ((errno = tls_errno(c, n)) == 0)
		errno = EPIPE;
	return -1;
}

/* Returns -1 if the connection is broken. */
static int
conn_flush(struct conn *c)
{
	ssize_t n;

	while (c->ooff < c->olen) {
		n = conn_send(c, c->out + c->ooff, c->olen - c->ooff);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return 0;
			return -1;
		}
		c->ooff += (size_t)n;
	}
	c->ooff = c->olen = 0;
	return 0;
}

/* Transactions */

static void
tx_reset(struct conn *c)
{
	size_t i;

	if (c->fp != NULL) {
		fclose(c->fp);
		c->fp = NULL;
	}
	if (c->tmppath != NULL) {
		unlink(c->tmppath);
		free(c->tmppath);
		c->tmppath = NULL;
	}
	free(c->from);
	c->from = NULL;
	free(c->params);
	c->params = NULL;
	for (i = 0; i < c->nrcpt; i++)
		free(c->rcpt[i]);
	c->nrcpt = 0;
	c->in_tx = 0;
	c->chunking = 0;
	c->drop = NULL;
}

static void
tx_add_rcpt(struct conn *c, const char *addr)
{
	if (c->nrcpt == c->rcptcap) {
		c->rcptcap = c->rcptcap ? c->rcptcap * 2 : 8;
		c->rcpt = xrealloc(c->rcpt, c->rcptcap * sizeof(*c->rcpt));
	}
	c->rcpt[c->nrcpt++] = xstrdup(addr);
}

/*
 * The client's TCP port, 0 if unknown: with the connection number it
 * names the client socket, so a test that noted the ports of a process
 * it killed can tell which transactions were in flight then.
 */
static int
peer_port(int fd)
{
	struct sockaddr_in sin = { 0 };
	socklen_t len = sizeof(sin);

	if (getpeername(fd, (struct sockaddr *)&sin, &len) == -1 ||
	    sin.sin_family != AF_INET)
		return 0;
	return ntohs(sin.sin_port);
}

/* Starts the message data: the drop rule, and under -d the file. */
static int
tx_open_data(struct conn *c, unsigned ev)
{
	char path[PATH_MAX];
	size_t i;
	int fd;

	c->msgbytes = c->rawbytes = 0;
	c->drop = rule_find(c, R_DROP, ev);
	if (g.dir == NULL)
		return 0;
	if (snprintf(path, sizeof(path), "%s/tmp.%ld.%llu", g.dir,
	    (long)getpid(), c->id) >= (int)sizeof(path))
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1) {
		note("%s: %s", path, strerror(errno));
		return -1;
	}
	if ((c->fp = fdopen(fd, "w")) == NULL) {
		close(fd);
		unlink(path);
		return -1;
	}
	c->tmppath = xstrdup(path);
	setvbuf(c->fp, NULL, _IOFBF, 65536);
	fprintf(c->fp, "X-Sink-Mail-From: <%s>\n", c->from);
	for (i = 0; i < c->nrcpt; i++)
		fprintf(c->fp, "X-Sink-Rcpt-To: <%s>\n", c->rcpt[i]);
	fprintf(c->fp, "X-Sink-Connection: %llu\n", c->id);
	fprintf(c->fp, "X-Sink-Peer-Port: %d\n", peer_port(c->fd));
	fprintf(c->fp, "X-Sink-TLS: %s\n", c->ssl != NULL ? "yes" : "no");
	fprintf(c->fp, "X-Sink-Pipelined: %s\n", c->ahead ? "yes" : "no");
	if (c->auth_user != NULL)
		fprintf(c->fp, "X-Sink-Auth: %s\n", c->auth_user);
	if (c->params != NULL && *c->params != '\0')
		fprintf(c->fp, "X-Sink-Mail-Params: %s\n", c->params);
	fputc('\n', c->fp);
	return 0;
}

static void
tx_emit(struct conn *c, const char *p, size_t n)
{
	if (c->fp != NULL)
		fwrite(p, 1, n, c->fp);
	c->msgbytes += n;
}

/* Records the transaction; on failure nothing is recorded. */
static int
tx_commit(struct conn *c)
{
	char path[PATH_MAX];
	unsigned long long seq = g.seq + 1;
	size_t i;
	int bad;

	if (c->fp != NULL) {
		bad = fflush(c->fp) != 0 || ferror(c->fp);
		bad |= fclose(c->fp) != 0;
		c->fp = NULL;
		if (bad || snprintf(path, sizeof(path), "%s/%08llu.eml",
		    g.dir, seq) >= (int)sizeof(path) ||
		    rename(c->tmppath, path) == -1) {
			note("cannot store message %08llu: %s", seq,
			    strerror(errno));
			return -1;
		}
		free(c->tmppath);
		c->tmppath = NULL;
	}
	g.seq = seq;
	if (g.log != NULL) {
		for (i = 0; i < c->nrcpt; i++)
			fprintf(g.log, "%08llu %s\n", seq, c->rcpt[i]);
		if (fflush(g.log) != 0)
			note("log: %s", strerror(errno));
	}
	g.ntx++;
	g.nrcpts += c->nrcpt;
	g.nbytes += c->msgbytes;
	return 0;
}

/* The end-of-data reply: DOT, or BDAT|DOT for BDAT LAST. */
static void
tx_finish(struct conn *c, unsigned ev)
{
	struct rule *r;

	c->state = CS_CMD;
	/* Checked first, so that no -once rule is spent on the message. */
	if (g.size_limit != 0 && c->msgbytes > g.size_limit) {
		tx_reset(c);
		reply(c, "552 5.3.4 message size exceeds fixed maximum "
		    "message size (%llu)", g.size_limit);
		return;
	}
	r = rule_respond(c, ev, NULL);
	if (r != NULL && r->kind == R_CLOSE) {
		reply(c, "421 4.3.2 closing");
		conn_closing(c);
		return;
	}
	if (r != NULL && r->code >= 400) {
		tx_reset(c);
		reply_rule(c, r);
		return;
	}
	if (tx_commit(c) == -1) {
		tx_reset(c);
		reply(c, "451 4.3.0 local error: cannot store message");
		return;
	}
	tx_reset(c);
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 2.0.0 ok: queued as %08llu", g.seq);
	if (g.max_msgs != 0 && g.ntx >= g.max_msgs && !g.stopping) {
		note("%llu messages received, stopping", g.ntx);
		g.stopping = 1;
		g.stop_end = g.now + STOP_GRACE_MS;
	}
}

/* Rules at run time */

/*
 * Returns 1 if the event must wait for a stall rule; its caller then
 * leaves its input unconsumed and meets it again when the timer ends.
 */
static int
stall_check(struct conn *c, unsigned ev)
{
	struct rule *r;

	if (c->stall_passed) {
		c->stall_passed = 0;
		return 0;
	}
	if ((r = rule_find(c, R_STALL, ev)) == NULL || !rule_take(r))
		return 0;
	rule_log(c, r, ev, NULL, r->ms);
	c->stall_until = g.now + r->ms;
	note("connection %llu stalled for %lld ms", c->id, r->ms);
	return 1;
}

/*
 * Answers the event if a rule refuses it (returns 1).  Otherwise returns
 * 0 and *ok is the rule whose text a successful reply uses, or NULL.
 */
static int
rule_answer(struct conn *c, unsigned ev, const char *addr, struct rule **ok)
{
	struct rule *r = rule_respond(c, ev, addr);

	*ok = NULL;
	if (r == NULL)
		return 0;
	if (r->kind == R_CLOSE) {
		reply(c, "421 4.3.2 closing");
		conn_closing(c);
		return 1;
	}
	if (r->code >= 400) {
		reply_rule(c, r);
		return 1;
	}
	*ok = r;
	return 0;
}

/* Drops the connection once the drop rule's byte count is reached. */
static int
drop_check(struct conn *c)
{
	struct rule *r = c->drop;

	if (r == NULL || c->rawbytes < r->bytes)
		return 0;
	c->drop = NULL;
	if (!rule_take(r))
		return 0;
	rule_log(c, r, r->verbs, NULL, (long long)c->rawbytes);
	note("connection %llu dropped after %llu bytes", c->id, c->rawbytes);
	tx_reset(c);
	c->state = CS_DEAD;
	return 1;
}

/* Commands */

/*
 * Parses "FROM:<addr> params" or "TO:<addr>"; returns addr or NULL, and
 * the parameters in *params if that is not NULL.
 */
static char *
parse_path(char *arg, const char *prefix, char **params)
{
	size_t n = strlen(prefix);
	char *p, *q;

	if (strncasecmp(arg, prefix, n) != 0)
		return NULL;
	p = arg + n;
	p += strspn(p, " ");
	if (*p != '<' || (q = strchr(p + 1, '>')) == NULL ||
	    memchr(p + 1, '<', (size_t)(q - p - 1)) != NULL ||
	    (q[1] != '\0' && q[1] != ' '))
		return NULL;
	*q = '\0';
	if (params != NULL)
		*params = q + 1 + strspn(q + 1, " ");
	return p + 1;
}

static void
cmd_ehlo(struct conn *c, char *arg)
{
	const char *ext[8];
	char size[32];
	struct rule *r;
	int n = 0, i, code;

	if (*arg == '\0') {
		reply(c, "501 5.5.4 syntax: EHLO domain");
		return;
	}
	if (rule_answer(c, V_EHLO, NULL, &r))
		return;
	tx_reset(c);
	c->helo = 1;
	code = r != NULL ? r->code : 250;
	reply(c, "%d-%s", code, r != NULL ? r->text : SINK_NAME);
	if (g.size_limit != 0)
		snprintf(size, sizeof(size), "SIZE %llu", g.size_limit);
	else
		snprintf(size, sizeof(size), "SIZE");
	ext[n++] = "PIPELINING";
	ext[n++] = "8BITMIME";
	ext[n++] = size;
	ext[n++] = "ENHANCEDSTATUSCODES";
	if (g.chunking)
		ext[n++] = "CHUNKING";
	if (g.tls != NULL && c->ssl == NULL)
		ext[n++] = "STARTTLS";
	if (g.auth_user != NULL)
		ext[n++] = "AUTH PLAIN LOGIN";
	for (i = 0; i < n; i++)
		reply(c, "%d%c%s", code, i == n - 1 ? ' ' : '-', ext[i]);
}

static void
cmd_helo(struct conn *c, char *arg)
{
	struct rule *r;

	if (*arg == '\0') {
		reply(c, "501 5.5.4 syntax: HELO domain");
		return;
	}
	if (rule_answer(c, V_HELO, NULL, &r))
		return;
	tx_reset(c);
	c->helo = 1;
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 " SINK_NAME);
}

/* The SIZE= of MAIL parameters (RFC 1870), 0 if none. */
static unsigned long long
size_param(const char *params)
{
	const char *p = params;

	while (p != NULL && *p != '\0') {
		p += strspn(p, " ");
		if (strncasecmp(p, "SIZE=", 5) == 0)
			return strtoull(p + 5, NULL, 10);
		p = strchr(p, ' ');
	}
	return 0;
}

/*
 * Whether the client sent a whole line after the command being handled
 * (the line at rpos) before its reply: pipelining, as far as the sink
 * can see it.
 */
static int
lines_after_command(const struct conn *c)
{
	const char *p = c->in + c->rpos, *end = c->in + c->wpos, *nl;

	if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
		return 0;
	nl++;
	return memchr(nl, '\n', (size_t)(end - nl)) != NULL;
}

static void
cmd_mail(struct conn *c, char *arg)
{
	struct rule *r;
	char *addr, *params;

	if (g.stopping) {
		reply(c, "421 4.3.2 sink is stopping, closing");
		conn_closing(c);
		return;
	}
	if (!c->helo) {
		reply(c, "503 5.5.1 send HELO or EHLO first");
		return;
	}
	if (c->in_tx) {
		reply(c, "503 5.5.1 nested MAIL command");
		return;
	}
	if ((addr = parse_path(arg, "FROM:", &params)) == NULL) {
		reply(c, "501 5.5.4 syntax: MAIL FROM:<address>");
		return;
	}
	if (size_param(params) > g.size_limit && g.size_limit != 0) {
		reply(c, "552 5.3.4 message size exceeds fixed maximum "
		    "message size (%llu)", g.size_limit);
		return;
	}
	if (rule_answer(c, V_MAIL, addr, &r))
		return;
	c->from = xstrdup(addr);
	c->params = xstrdup(params);
	c->ahead = lines_after_command(c);
	c->in_tx = 1;
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 2.1.0 ok");
}

static void
cmd_rcpt(struct conn *c, char *arg)
{
	struct rule *r;
	char *addr;

	if (!c->in_tx || c->chunking) {
		reply(c, "503 5.5.1 need MAIL command");
		return;
	}
	if ((addr = parse_path(arg, "TO:", NULL)) == NULL || *addr == '\0') {
		reply(c, "501 5.5.4 syntax: RCPT TO:<address>");
		return;
	}
	if (c->nrcpt == MAX_RCPTS) {
		reply(c, "452 4.5.3 too many recipients");
		return;
	}
	if (rule_answer(c, V_RCPT, addr, &r))
		return;
	tx_add_rcpt(c, addr);
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 2.1.5 ok");
}

static void
cmd_data(struct conn *c, char *arg)
{
	struct rule *r;

	if (*arg != '\0') {
		reply(c, "501 5.5.4 syntax: DATA");
		return;
	}
	if (!c->in_tx || c->chunking) {
		reply(c, "503 5.5.1 need MAIL command");
		return;
	}
	if (c->nrcpt == 0) {
		reply(c, "503 5.5.1 no valid recipients");
		return;
	}
	if (rule_answer(c, V_DATA, NULL, &r))
		return;
	if (tx_open_data(c, V_DATA) == -1) {
		reply(c, "451 4.3.0 local error: cannot store message");
		return;
	}
	c->state = CS_DATA;
	c->at_bol = 1;
	c->last_cr = 0;
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "354 end data with <CR><LF>.<CR><LF>");
}

/*
 * The chunk bytes follow the command whatever happens, so even a refused
 * BDAT reads them (RFC 3030); the reply comes when the chunk is complete.
 */
static void
cmd_bdat(struct conn *c, char *arg)
{
	char *size, *last, *end;
	unsigned long long n;

	size = next_word(&arg);
	last = next_word(&arg);
	if (size == NULL || !isdigit((unsigned char)*size) ||
	    (last != NULL && strcasecmp(last, "LAST") != 0) ||
	    next_word(&arg) != NULL) {
		reply(c, "501 5.5.4 syntax: BDAT size [LAST]");
		return;
	}
	errno = 0;
	n = strtoull(size, &end, 10);
	if (errno != 0 || *end != '\0') {
		reply(c, "501 5.5.4 syntax: BDAT size [LAST]");
		return;
	}
	c->bdat_left = c->bdat_size = n;
	c->bdat_last = last != NULL;
	c->bdat_err = NULL;
	c->state = CS_BDAT;
	if (!c->in_tx)
		c->bdat_err = "503 5.5.1 need MAIL command";
	else if (c->nrcpt == 0)
		c->bdat_err = "503 5.5.1 no valid recipients";
	else if (!c->chunking) {
		if (tx_open_data(c, V_BDAT) == -1)
			c->bdat_err = "451 4.3.0 local error: "
			    "cannot store message";
		c->chunking = 1;
	}
}

/*
 * STARTTLS: the 220 is flushed in clear, then conn_service() starts the
 * handshake (tls_start).  Whatever the client sent after this line is
 * dropped by conn_command(): RFC 3207 forbids acting on it.
 */
static void
cmd_starttls(struct conn *c, char *arg)
{
	struct rule *r;

	if (*arg != '\0') {
		reply(c, "501 5.5.4 syntax: STARTTLS");
		return;
	}
	if (c->ssl != NULL) {
		reply(c, "503 5.5.1 TLS already active");
		return;
	}
	if (rule_answer(c, V_STARTTLS, NULL, &r))
		return;
	reply(c, "220 2.0.0 ready to start TLS");
	c->state = CS_STARTTLS;
}

/* Base64 to bytes, NUL-terminated; the length, or -1 if invalid. */
static int
b64_decode(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in), pad = 0;
	int r;

	if (strcmp(in, "=") == 0) {	/* RFC 4954: an empty response */
		out[0] = '\0';
		return 0;
	}
	if (n == 0 || n % 4 != 0 || n / 4 * 3 >= outlen)
		return -1;
	pad = (in[n - 1] == '=') + (in[n - 2] == '=');
	if ((r = EVP_DecodeBlock((unsigned char *)out,
	    (const unsigned char *)in, (int)n)) < 0)
		return -1;
	r -= (int)pad;
	out[r] = '\0';
	return r;
}

/* The end of every AUTH exchange: 235 or 535 (RFC 4954). */
static void
auth_check(struct conn *c, const char *user, const char *pass)
{
	c->astep = A_NONE;
	if (pass == NULL || strcmp(user, g.auth_user) != 0 ||
	    strcmp(pass, g.auth_pass) != 0) {
		free(c->login_user);
		c->login_user = NULL;
		note("connection %llu: authentication failed", c->id);
		reply(c, "535 5.7.8 authentication credentials invalid");
		return;
	}
	c->auth_user = xstrdup(user);
	free(c->login_user);
	c->login_user = NULL;
	reply(c, "235 2.7.0 authentication successful");
}

/* PLAIN: base64 of "authzid NUL user NUL password" (RFC 4616). */
static void
auth_plain(struct conn *c, const char *resp)
{
	char buf[MAX_CMDLINE], *user, *pass;
	int n = b64_decode(resp, buf, sizeof(buf)), ok;

	if (n < 0 || (user = memchr(buf, '\0', (size_t)n)) == NULL ||
	    (pass = memchr(user + 1, '\0', (size_t)(buf + n - user - 1))) ==
	    NULL) {
		c->astep = A_NONE;
		reply(c, "501 5.5.2 cannot decode AUTH PLAIN response");
		return;
	}
	user++;
	pass++;
	/* No acting as someone else, no NUL inside the password. */
	ok = (buf[0] == '\0' || strcmp(buf, user) == 0) &&
	    strlen(pass) == (size_t)(buf + n - pass);
	auth_check(c, user, ok ? pass : NULL);
}

/* LOGIN: the user name, then the password, each base64 on its own. */
static void
auth_login(struct conn *c, const char *resp)
{
	char buf[MAX_CMDLINE];

	if (b64_decode(resp, buf, sizeof(buf)) < 0 ||
	    strlen(buf) == 0) {
		c->astep = A_NONE;
		reply(c, "501 5.5.2 cannot decode AUTH LOGIN response");
		return;
	}
	if (c->astep == A_LOGIN_PASS) {
		auth_check(c, c->login_user, buf);
		return;
	}
	c->login_user = xstrdup(buf);
	c->astep = A_LOGIN_PASS;
	reply(c, "334 UGFzc3dvcmQ6");	/* "Password:" */
}

/* A client line while an AUTH exchange is under way. */
static void
auth_line(struct conn *c, const char *line)
{
	if (strcmp(line, "*") == 0) {
		c->astep = A_NONE;
		free(c->login_user);
		c->login_user = NULL;
		reply(c, "501 5.7.0 AUTH aborted");
	} else if (c->astep == A_PLAIN)
		auth_plain(c, line);
	else
		auth_login(c, line);
}

static void
cmd_auth(struct conn *c, char *arg)
{
	char *mech = next_word(&arg), *resp = next_word(&arg);
	struct rule *r;

	if (!c->helo || c->auth_user != NULL || c->in_tx) {
		reply(c, "503 5.5.1 AUTH not allowed now");
		return;
	}
	if (mech == NULL || next_word(&arg) != NULL) {
		reply(c, "501 5.5.4 syntax: AUTH mechanism [initial-response]");
		return;
	}
	if (rule_answer(c, V_AUTH, NULL, &r))
		return;
	if (strcasecmp(mech, "PLAIN") == 0)
		c->astep = A_PLAIN;
	else if (strcasecmp(mech, "LOGIN") == 0)
		c->astep = A_LOGIN_USER;
	else {
		reply(c, "504 5.5.4 mechanism not supported");
		return;
	}
	if (resp != NULL)
		auth_line(c, resp);
	else if (c->astep == A_PLAIN)
		reply(c, "334 ");
	else
		reply(c, "334 VXNlcm5hbWU6");	/* "Username:" */
}

static void
cmd_rset(struct conn *c, char *arg)
{
	struct rule *r;

	(void)arg;
	if (rule_answer(c, V_RSET, NULL, &r))
		return;
	tx_reset(c);
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 2.0.0 ok");
}

static void
cmd_noop(struct conn *c, char *arg)
{
	struct rule *r;

	(void)arg;
	if (rule_answer(c, V_NOOP, NULL, &r))
		return;
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 2.0.0 ok");
}

static void
cmd_quit(struct conn *c, char *arg)
{
	struct rule *r;

	(void)arg;
	if (rule_answer(c, V_QUIT, NULL, &r))
		return;
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "221 2.0.0 bye");
	conn_closing(c);
}

static const struct cmd {
	const char	*name;
	unsigned	 verb;
	void		(*fn)(struct conn *, char *);
} cmds[] = {
	{ "EHLO", V_EHLO, cmd_ehlo }, { "HELO", V_HELO, cmd_helo },
	{ "MAIL", V_MAIL, cmd_mail }, { "RCPT", V_RCPT, cmd_rcpt },
	{ "DATA", V_DATA, cmd_data }, { "BDAT", V_BDAT, cmd_bdat },
	{ "RSET", V_RSET, cmd_rset }, { "NOOP", V_NOOP, cmd_noop },
	{ "QUIT", V_QUIT, cmd_quit }, { "STARTTLS", V_STARTTLS, cmd_starttls },
	{ "AUTH", V_AUTH, cmd_auth },
};

/* Commands that exist only when an option turned them on. */
static int
cmd_offered(unsigned verb)
{
	if (verb == V_BDAT)
		return g.chunking;
	if (verb == V_STARTTLS)
		return g.tls != NULL;
	if (verb == V_AUTH)
		return g.auth_user != NULL;
	return 1;
}

/* Returns 0 when the line is handled, -1 when it waits for a stall. */
static int
cmd_dispatch(struct conn *c, char *line)
{
	const struct cmd *cmd = NULL;
	char *verb = line, *arg;
	size_t i;

	if (c->astep != A_NONE) {	/* credentials: never traced */
		auth_line(c, line);
		return 0;
	}
	/* A stalled line comes back when its stall ends: trace it once. */
	if (g.verbose && !c->stall_passed)
		fprintf(stderr, "sink[%llu]: < %.*s\n", c->id,
		    strncasecmp(line, "AUTH ", 5) == 0 ? 4 : MAX_CMDLINE, line);
	arg = line + strcspn(line, " ");
	if (*arg != '\0')
		*arg++ = '\0';
	arg += strspn(arg, " ");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcasecmp(verb, cmds[i].name) == 0)
			cmd = &cmds[i];
	if (cmd == NULL || !cmd_offered(cmd->verb)) {
		reply(c, "500 5.5.2 command not recognized");
		return 0;
	}
	if (c->refused && cmd->verb != V_QUIT) {
		reply(c, "503 5.5.1 session refused");
		return 0;
	}
	/* BDAT stalls its reply, after its chunk: see conn_bdat_end(). */
	if (cmd->verb != V_BDAT && stall_check(c, cmd->verb))
		return -1;
	cmd->fn(c, arg);
	return 0;
}

/* Input handling: each step consumes input or returns 0. */

static int
conn_greet(struct conn *c)
{
	struct rule *r;

	if (stall_check(c, V_GREET))
		return 0;
	c->state = CS_CMD;
	r = rule_respond(c, V_GREET, NULL);
	if (r == NULL) {
		reply(c, "220 " SINK_NAME " ESMTP");
	} else if (r->kind == R_CLOSE || r->code == 421) {
		reply(c, "421 %s", r->kind == R_CLOSE ? "4.3.2 closing" :
		    r->text);
		conn_closing(c);
	} else {
		reply_rule(c, r);
		c->refused = r->code >= 400;
	}
	return 1;
}

static int
conn_command(struct conn *c)
{
	char line[MAX_CMDLINE + 1], *p = c->in + c->rpos, *nl;
	size_t avail = c->wpos - c->rpos, len, n;

	nl = memchr(p, '\n', avail);
	if (c->discarding) {
		if (nl == NULL) {
			c->rpos = c->wpos;
			return avail > 0;
		}
		c->rpos += (size_t)(nl - p) + 1;
		c->discarding = 0;
		reply(c, "500 5.5.2 line too long");
		return 1;
	}
	if (nl == NULL) {
		if (avail < MAX_CMDLINE)
			return 0;
		c->discarding = 1;
		c->rpos = c->wpos;
		return 1;
	}
	len = (size_t)(nl - p) + 1;
	if (len > MAX_CMDLINE) {
		c->rpos += len;
		reply(c, "500 5.5.2 line too long");
		return 1;
	}
	n = len - 1;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	memcpy(line, p, n);
	line[n] = '\0';
	if (cmd_dispatch(c, line) == -1)
		return 0;
	c->rpos += len;
	if (c->state == CS_STARTTLS)	/* RFC 3207: not to be acted on */
		c->rpos = c->wpos;
	return 1;
}

static int
conn_data_end(struct conn *c)
{
	if (stall_check(c, V_DOT))
		return 0;
	c->rpos += 3;
	c->rawbytes += 3;
	if (drop_check(c))
		return 1;
	tx_finish(c, V_DOT);
	return 1;
}

/*
 * DATA body: a line "." ends it, a leading dot is removed from any other
 * line.  Only CRLF ends a line here, so a bare LF never ends the data.
 */
static int
conn_data(struct conn *c)
{
	const char *p = c->in + c->rpos, *nl;
	size_t avail = c->wpos - c->rpos, n;

	if (avail == 0)
		return 0;
	if (c->at_bol && p[0] == '.') {
		if (avail >= 3 && p[1] == '\r' && p[2] == '\n')
			return conn_data_end(c);
		if (avail == 1 || (avail == 2 && p[1] == '\r'))
			return 0;
		c->rpos++;
		c->rawbytes++;
		c->at_bol = 0;
		c->last_cr = 0;
		drop_check(c);
		return 1;
	}
	nl = memchr(p, '\n', avail);
	n = nl != NULL ? (size_t)(nl - p) + 1 : avail;
	tx_emit(c, p, n);
	if (nl != NULL)
		c->at_bol = n >= 2 ? p[n - 2] == '\r' : c->last_cr;
	else
		c->at_bol = 0;
	c->last_cr = p[n - 1] == '\r';
	c->rpos += n;
	c->rawbytes += n;
	drop_check(c);
	return 1;
}

static int
conn_bdat(struct conn *c)
{
	size_t avail = c->wpos - c->rpos, n;

	if (c->bdat_left == 0) {
		c->state = CS_BDAT_END;
		return 1;
	}
	if (avail == 0)
		return 0;
	n = avail < c->bdat_left ? avail : (size_t)c->bdat_left;
	if (c->bdat_err == NULL) {
		tx_emit(c, c->in + c->rpos, n);
		c->rawbytes += n;
	}
	c->rpos += n;
	c->bdat_left -= n;
	if (c->bdat_err == NULL && drop_check(c))
		return 1;
	if (c->bdat_left == 0)
		c->state = CS_BDAT_END;
	return 1;
}

static int
conn_bdat_end(struct conn *c)
{
	unsigned ev = V_BDAT | (c->bdat_last ? V_DOT : 0);
	struct rule *r;

	if (c->bdat_err != NULL) {
		c->state = CS_CMD;
		reply(c, "%s", c->bdat_err);
		c->bdat_err = NULL;
		tx_reset(c);
		return 1;
	}
	if (stall_check(c, ev))
		return 0;
	if (c->bdat_last) {
		tx_finish(c, ev);
		return 1;
	}
	c->state = CS_CMD;
	if (rule_answer(c, ev, NULL, &r)) {
		tx_reset(c);
		return 1;
	}
	if (r != NULL)
		reply_rule(c, r);
	else
		reply(c, "250 2.0.0 %llu octets received", c->bdat_size);
	return 1;
}

static int
conn_step(struct conn *c)
{
	switch (c->state) {
	case CS_GREET:
		return conn_greet(c);
	case CS_CMD:
		return conn_command(c);
	case CS_DATA:
		return conn_data(c);
	case CS_BDAT:
		return conn_bdat(c);
	case CS_BDAT_END:
		return conn_bdat_end(c);
	default:
		return 0;
	}
}

/*
 * Handles buffered input until it needs more, a stall starts, replies
 * pile up, or the session ends.  Terminates: a step that returns 1
 * consumes input or moves GREET/BDAT_END to a state that needs input.
 */
static enum stop
conn_process(struct conn *c)
{
	for (;;) {
		if (c->state >= CS_CLOSING)
			return STOP_STATE;
		if (c->stall_until != 0)
			return STOP_STALL;
		if (c->olen - c->ooff >= OUT_HIGH)
			return STOP_OUTPUT;
		if (!conn_step(c))
			return c->stall_until != 0 ? STOP_STALL : STOP_INPUT;
	}
}

/* Connections */

static void
conn_closing(struct conn *c)
{
	tx_reset(c);
	c->state = CS_CLOSING;
	c->deadline = g.now + CLOSE_MS;
}

static struct conn *
conn_new(int fd)
{
	struct conn *c;

	c = xcalloc(1, sizeof(*c));
	c->in = xcalloc(1, INBUF_SIZE);
	c->fd = fd;
	c->id = ++g.nconns;
	c->state = CS_GREET;
	c->deadline = g.now + IDLE_MS;
	c->slot = g.nconn;
	g.conns[g.nconn++] = c;
	note("connection %llu opened", c->id);
	return c;
}

static void
conn_close(struct conn *c)
{
	tx_reset(c);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	free(c->login_user);
	free(c->auth_user);
	close(c->fd);
	note("connection %llu closed", c->id);
	g.conns[c->slot] = NULL;
	free(c->rcpt);
	free(c->in);
	free(c->out);
	free(c);
}

/* As recv(2), through the SSL once TLS is on; 0 at EOF. */
static ssize_t
conn_recv(struct conn *c, char *p, size_t len)
{
	int n;

	if (c->ssl == NULL)
		return recv(c->fd, p, len, 0);
	n = SSL_read(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
	c->tls_more = SSL_has_pending(c->ssl);
	if (n > 0)
		return n;
	return (errno = tls_errno(c, n)) == 0 ? 0 : -1;
}

static void
conn_read(struct conn *c)
{
	ssize_t n;

	if (c->rpos == c->wpos)
		c->rpos = c->wpos = 0;
	else if (c->rpos > 0) {
		memmove(c->in, c->in + c->rpos, c->wpos - c->rpos);
		c->wpos -= c->rpos;
		c->rpos = 0;
	}
	if (c->wpos == INBUF_SIZE)
		return;
	n = conn_recv(c, c->in + c->wpos, INBUF_SIZE - c->wpos);
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			c->state = CS_DEAD;
		return;
	}
	if (n == 0) {
		c->eof = 1;
		return;
	}
	if (c->state == CS_DRAIN)
		return;
	c->wpos += (size_t)n;
	c->deadline = g.now + IDLE_MS;
}

/*
 * RFC 3207 4.2: after the handshake the client starts over, so the
 * sink forgets the greeting, the transaction and any authentication.
 */
static void
tls_step(struct conn *c)
{
	int r = SSL_accept(c->ssl);

	if (r == 1) {
		note("connection %llu: TLS %s", c->id, SSL_get_version(c->ssl));
		c->state = CS_CMD;
		c->tls_more = 1;	/* EHLO may have come with Finished */
		c->ready = 1;
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->tls_want = POLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		c->tls_want = POLLOUT;
		break;
	default:
		note("connection %llu: TLS handshake failed: %s", c->id,
		    ERR_reason_error_string(ERR_peek_last_error()));
		ERR_clear_error();
		c->state = CS_DEAD;
	}
}

static void
tls_start(struct conn *c)
{
	tx_reset(c);
	c->helo = 0;
	free(c->auth_user);
	c->auth_user = NULL;
	c->rpos = c->wpos = 0;
	if ((c->ssl = SSL_new(g.tls)) == NULL ||
	    SSL_set_fd(c->ssl, c->fd) != 1) {
		note("connection %llu: SSL_new failed", c->id);
		c->state = CS_DEAD;
		return;
	}
	c->state = CS_TLS;
	tls_step(c);
}

/* Handles input, sends replies, and moves the connection towards close. */
static void
conn_service(struct conn *c)
{
	enum stop why = STOP_STATE;
	int round;

	c->ready = 0;
	if (c->state == CS_TLS)
		tls_step(c);
	for (round = 0; c->state != CS_DEAD && c->state != CS_TLS; round++) {
		why = conn_process(c);
		if (conn_flush(c) == -1) {
			c->state = CS_DEAD;
			break;
		}
		if (why != STOP_OUTPUT || c->olen != 0)
			break;
		if (round == SERVICE_ROUNDS) {
			c->ready = 1;
			break;
		}
	}
	if (c->state == CS_STARTTLS && c->olen == 0)
		tls_start(c);
	if (c->state == CS_CLOSING && c->olen == 0) {
		if (c->eof)
			c->state = CS_DEAD;
		else {
			if (c->ssl != NULL)
				(void)SSL_shutdown(c->ssl);	/* best effort */
			shutdown(c->fd, SHUT_WR);
			c->state = CS_DRAIN;
			c->rpos = c->wpos = 0;
			c->deadline = g.now + CLOSE_MS;
		}
	}
	if (c->eof && c->state == CS_DRAIN)
		c->state = CS_DEAD;
	/* The client left: what it sent last can never complete. */
	if (c->eof && c->state < CS_CLOSING &&
	    (why == STOP_INPUT || why == STOP_STALL)) {
		if (c->olen == 0)
			c->state = CS_DEAD;
		else
			conn_closing(c);
	}
	if (c->state == CS_DEAD) {
		conn_close(c);
		return;
	}
	/* Input the SSL holds wakes no poll: come back for it. */
	if (c->tls_more && c->state < CS_STARTTLS && (c->rpos > 0 ||
	    c->wpos < INBUF_SIZE))
		c->ready = 1;
}

static void
conn_timers(struct conn *c)
{
	if (c->stall_until != 0 && g.now >= c->stall_until) {
		c->stall_until = 0;
		c->stall_passed = 1;
		c->ready = 1;
	}
	if (g.now < c->deadline)
		return;
	/* No 421 in clear in the middle of a handshake: just go. */
	if (c->state >= CS_CLOSING || c->state == CS_STARTTLS ||
	    c->state == CS_TLS) {
		c->state = CS_DEAD;
		c->ready = 1;
		return;
	}
	note("connection %llu idle", c->id);
	c->stall_until = 0;
	reply(c, "421 4.4.2 idle timeout, closing");
	conn_closing(c);
	c->ready = 1;
}

static void
conn_event(struct conn *c, short revents)
{
	if ((revents & POLLIN) && c->state != CS_TLS &&
	    c->state != CS_STARTTLS)
		conn_read(c);
	/* An error, or a hang-up with nothing more to read, ends it. */
	if ((revents & (POLLERR | POLLNVAL)) ||
	    ((revents & POLLHUP) && !(revents & POLLIN)))
		c->state = CS_DEAD;
	conn_service(c);
}

static short
conn_events(const struct conn *c)
{
	short ev = 0;

	if (c->state == CS_TLS)
		return c->tls_want;
	if (c->state != CS_CLOSING && c->state != CS_STARTTLS && !c->eof &&
	    (c->rpos > 0 || c->wpos < INBUF_SIZE))
		ev |= POLLIN;
	if (c->olen > c->ooff)
		ev |= POLLOUT;
	return ev;
}

/* Listening and the event loop */

static void
accept_burst(void)
{
	struct conn *c;
	int fd, i, one = 1;

	for (i = 0; i < ACCEPT_BURST && g.nconn < g.maxconn; i++) {
		fd = accept4(g.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				note("accept: %s", strerror(errno));
				g.listen_pause = g.now + 100;
			}
			return;
		}
		/* Replies must not wait for the client's delayed ACK. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = conn_new(fd);
		conn_service(c);
	}
}

static void
compact_conns(void)
{
	size_t i, j = 0;

	for (i = 0; i < g.nconn; i++) {
		if (g.conns[i] == NULL)
			continue;
		g.conns[j] = g.conns[i];
		g.conns[j]->slot = j;
		j++;
	}
	g.nconn = j;
}

static long long
next_wakeup(void)
{
	long long t = g.end;
	const struct conn *c;
	size_t i;

	if (g.stopping && g.stop_end < t)
		t = g.stop_end;
	if (g.listen_pause > g.now && g.listen_pause < t)
		t = g.listen_pause;
	for (i = 0; i < g.nconn; i++) {
		c = g.conns[i];
		if (c->ready)
			return g.now;
		if (c->deadline < t)
			t = c->deadline;
		if (c->stall_until != 0 && c->stall_until < t)
			t = c->stall_until;
	}
	return t;
}

static int
serve_done(void)
{
	if (got_signal) {
		note("signal %d, exiting", (int)got_signal);
		return 1;
	}
	if (g.now >= g.end) {
		note("lifetime over, exiting");
		return 1;
	}
	if (g.stopping && (g.nconn == 0 || g.now >= g.stop_end))
		return 1;
	return 0;
}

static void
serve(const sigset_t *pollmask)
{
	struct pollfd *pfd;
	struct timespec ts;
	struct conn *c;
	size_t i, nfds, *map;
	long long wait;
	int n, listening;

	pfd = xcalloc(g.maxconn + 1, sizeof(*pfd));
	map = xcalloc(g.maxconn + 1, sizeof(*map));
	for (;;) {
		g.now = now_ms();
		for (i = 0; i < g.nconn; i++)
			if (g.conns[i] != NULL)
				conn_timers(g.conns[i]);
		for (i = 0; i < g.nconn; i++) {
			if ((c = g.conns[i]) == NULL || !c->ready)
				continue;
			if (c->tls_more && c->state < CS_STARTTLS)
				conn_read(c);
			conn_service(c);
		}
		compact_conns();
		if (serve_done())
			break;
		/* After -m, new clients are refused rather than left waiting. */
		if (g.stopping && g.lfd != -1) {
			close(g.lfd);
			g.lfd = -1;
		}
		nfds = 0;
		listening = !g.stopping && g.nconn < g.maxconn &&
		    g.listen_pause <= g.now;
		if (listening) {
			pfd[nfds].fd = g.lfd;
			pfd[nfds].events = POLLIN;
			nfds++;
		}
		for (i = 0; i < g.nconn; i++) {
			pfd[nfds].fd = g.conns[i]->fd;
			pfd[nfds].events = conn_events(g.conns[i]);
			map[nfds] = i;
			nfds++;
		}
		wait = next_wakeup() - g.now;
		if (wait < 0)
			wait = 0;
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (wait % 1000) * 1000000;
		n = ppoll(pfd, nfds, &ts, pollmask);
		g.now = now_ms();
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die(EX_OSERR, "poll: %s", strerror(errno));
		}
		for (i = listening ? 1 : 0; i < nfds; i++)
			if (pfd[i].revents != 0 &&
			    (c = g.conns[map[i]]) != NULL)
				conn_event(c, pfd[i].revents);
		if (listening && (pfd[0].revents & POLLIN))
			accept_burst();
	}
	free(pfd);
	free(map);
}

/* Start-up */

static int
listen_loopback(int port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die(EX_OSERR, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		die(EX_OSERR, "bind 127.0.0.1:%d: %s", port, strerror(errno));
	if (listen(fd, 1024) == -1)
		die(EX_OSERR, "listen: %s", strerror(errno));
	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		die(EX_OSERR, "getsockname: %s", strerror(errno));
	g.lfd = fd;
	return ntohs(sin.sin_port);
}

/* Written aside and renamed, so a poller never reads half a number. */
static void
write_portfile(const char *path, int port)
{
	char tmp[PATH_MAX], buf[16];
	int fd, n;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		die(EX_USAGE, "%s: name too long", path);
	n = snprintf(buf, sizeof(buf), "%d\n", port);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		die(EX_CANTCREAT, "%s: %s", tmp, strerror(errno));
	if (write(fd, buf, (size_t)n) != n || close(fd) == -1)
		die(EX_IOERR, "%s: write error", tmp);
	if (rename(tmp, path) == -1)
		die(EX_CANTCREAT, "%s: %s", path, strerror(errno));
}

/* Numbering continues after the files already there: nothing is lost. */
static void
dir_init(const char *dir)
{
	struct dirent *de;
	unsigned long long n;
	char *end;
	DIR *d;

	if (mkdir(dir, 0755) == -1 && errno != EEXIST)
		die(EX_CANTCREAT, "%s: %s", dir, strerror(errno));
	if ((d = opendir(dir)) == NULL)
		die(EX_NOINPUT, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		errno = 0;
		n = strtoull(de->d_name, &end, 10);
		if (errno == 0 && strcmp(end, ".eml") == 0 && n > g.seq)
			g.seq = n;
	}
	closedir(d);
	g.dir = dir;
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t want = 2 * MAX_CONN + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= want)
		g.maxconn = MAX_CONN;
	else if (rl.rlim_cur > 80)
		g.maxconn = (size_t)(rl.rlim_cur - 64) / 2;
	else
		g.maxconn = 8;
}

/* SIGTERM and SIGINT are seen only inside ppoll, so never mid-update. */
static void
signals_init(sigset_t *pollmask)
{
	struct sigaction sa;
	sigset_t block;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, pollmask);
	sigdelset(pollmask, SIGTERM);
	sigdelset(pollmask, SIGINT);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: " SINK_NAME " [-cv] [-A user:password] "
	    "[-d dir] [-F faultlog] [-L logfile]\n"
	    "                  [-m maxmsgs] [-P portfile] [-p port] "
	    "[-R seed] [-r rulesfile]\n"
	    "                  [-S bytes] [-T certfile:keyfile] "
	    "[-t seconds]\n");
	exit(EX_USAGE);
}

/* -T CERTFILE:KEYFILE: the server side of STARTTLS. */
static void
tls_init(char *arg)
{
	char *key = strchr(arg, ':');

	if (key == NULL || key == arg || key[1] == '\0')
		die(EX_USAGE, "-T wants certfile:keyfile");
	*key++ = '\0';
	if ((g.tls = SSL_CTX_new(TLS_server_method())) == NULL)
		die(EX_SOFTWARE, "SSL_CTX_new failed");
	if (SSL_CTX_use_certificate_chain_file(g.tls, arg) != 1 ||
	    SSL_CTX_use_PrivateKey_file(g.tls, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(g.tls) != 1)
		die(EX_NOINPUT, "%s, %s: %s", arg, key,
		    ERR_reason_error_string(ERR_peek_last_error()));
	/* A client that closes without close_notify reads as EOF. */
	SSL_CTX_set_options(g.tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Replies are appended between retries of a blocked SSL_write. */
	SSL_CTX_set_mode(g.tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* -A USER:PASSWORD (a test password: it shows in ps). */
static void
auth_init(char *arg)
{
	char *pass = strchr(arg, ':');

	if (pass == NULL || pass == arg || pass[1] == '\0')
		die(EX_USAGE, "-A wants user:password");
	*pass++ = '\0';
	g.auth_user = arg;
	g.auth_pass = pass;
}

/*
 * -R and -F: the seed of the chance draws (without -R, a random one),
 * told on the fault log's first line so that a run can be repeated.
 */
static void
faults_init(const char *path, long long seed)
{
	if (seed < 0)
		seed = (long long)(arc4random() & 0x7fffffff);
	g.rng = (uint64_t)seed;
	note("chance seed %lld", seed);
	if (path == NULL)
		return;
	if ((g.faults = fopen(path, "a")) == NULL)
		die(EX_CANTCREAT, "%s: %s", path, strerror(errno));
	fprintf(g.faults, "# seed %lld\n", seed);
	fflush(g.faults);
}

static long long
num_arg(const char *s, long long min, long long max, const char *what)
{
	const char *errstr;
	long long n;

	n = strtonum(s, min, max, &errstr);
	if (errstr != NULL)
		die(EX_USAGE, "%s %s: %s", what, s, errstr);
	return n;
}

int
main(int argc, char *argv[])
{
	const char *portfile = NULL, *logpath = NULL, *dir = NULL;
	const char *faultpath = NULL;
	long long lifetime = 600, seed = -1;
	sigset_t pollmask;
	size_t i;
	int ch, port = 0;

	while ((ch = getopt(argc, argv, "A:cd:F:L:m:P:p:R:r:S:T:t:v")) != -1) {
		switch (ch) {
		case 'A':
			auth_init(optarg);
			break;
		case 'c':
			g.chunking = 1;
			break;
		case 'S':
			g.size_limit = (unsigned long long)num_arg(optarg, 1,
			    LLONG_MAX, "-S");
			break;
		case 'T':
			tls_init(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'L':
			logpath = optarg;
			break;
		case 'F':
			faultpath = optarg;
			break;
		case 'R':
			seed = num_arg(optarg, 0, LLONG_MAX, "-R");
			break;
		case 'm':
			g.max_msgs = (unsigned long long)num_arg(optarg, 1,
			    LLONG_MAX, "-m");
			break;
		case 'P':
			portfile = optarg;
			break;
		case 'p':
			port = (int)num_arg(optarg, 0, 65535, "-p");
			break;
		case 'r':
			rules_load(optarg);
			break;
		case 't':
			lifetime = num_arg(optarg, 1, 7LL * 86400, "-t");
			break;
		case 'v':
			g.verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if (dir != NULL)
		dir_init(dir);
	if (logpath != NULL && (g.log = fopen(logpath, "a")) == NULL)
		die(EX_CANTCREAT, "%s: %s", logpath, strerror(errno));
	faults_init(faultpath, seed);
	raise_fd_limit();
	/* An array of pointers: the size of one pointer is meant. */
	// NOLINTNEXTLINE(bugprone-sizeof-expression)
	g.conns = xcalloc(g.maxconn, sizeof(*g.conns));
	signals_init(&pollmask);
	port = listen_loopback(port);
	if (portfile != NULL)
		write_portfile(portfile, port);
	if (g.verbose) {
		printf("%d\n", port);
		fflush(stdout);
	}
	g.now = now_ms();
	g.end = g.now + lifetime * 1000;

	serve(&pollmask);

	for (i = 0; i < g.nconn; i++) {
		if (g.conns[i] == NULL)
			continue;
		conn_flush(g.conns[i]);
		conn_close(g.conns[i]);
	}
	if (g.lfd != -1)
		close(g.lfd);
	if (g.log != NULL)
		fclose(g.log);
	if (g.faults != NULL)
		fclose(g.faults);
	printf("sink: connections=%llu transactions=%llu recipients=%llu "
	    "bytes=%llu\n", g.nconns, g.ntx, g.nrcpts, g.nbytes);
	fflush(stdout);
	return 0;
}
