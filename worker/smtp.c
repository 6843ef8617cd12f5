/*
 * SPDX-License-Identifier: ISC
 *
 * smtp.c -- a batch of spooled messages to one relay, over several
 * sessions of listqd's own client (smtp_session.c) at once.
 *
 * The messages of one entry (consecutive msgs with one app pointer) make
 * a unit; a session takes a unit and sends its messages one transaction
 * at a time, then takes the next unit nobody has.  So an entry is in at
 * most one session, its transactions go in order, and the caller's done
 * callback records each one before that session starts the next
 * (invariant 4).  The first session opens alone; once the relay has
 * greeted it and taken EHLO, TLS and AUTH, the others open (up to
 * smtp_relay.sessions), so a relay that is down costs one connect.
 *
 * The relay's name is resolved once per call through a small cache (60 s),
 * before any session of the call runs, so that no lookup ever stalls a
 * session in flight.  The message source (msg_read) is the one place
 * where the list's header lines meet the spooled message: the prepend,
 * then the file from start to end with insert placed at insert_at.
 *
 * Invariants: a transaction that its session cut short (a drop, a 421, a
 * timeout) is not given to done: its outcome is filled in and the caller
 * reads it after the call, as for one never offered (untried); the
 * password is read per call, never logged, wiped after use; memory per
 * session is bounded by smtp_session.c, independent of message size.
 * Failure modes: -1 with errno when no session could take a message
 * (every message deferred with the reason); otherwise per message.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "smtp.h"
#include "smtp_io.h"

#define SESSIONS_MAX	64
#define SECRET_MAX	255
#define RESOLVE_TTL	60	/* seconds a relay's addresses are kept */
#define RELAY_LEN	SMTP_REPLY_MAX

struct unit {			/* one entry's messages */
	size_t	first, count;
	size_t	next;		/* the next to send */
};

struct src {			/* one message as msg_read streams it */
	const struct smtp_msg *m;
	off_t	off, end;
	size_t	prepos, prelen, inspos, inslen;
};

struct slot {
	struct smtp_session *s;
	struct unit	*u;
	struct smtp_msg	*m;		/* the transaction in flight */
	struct smtp_txn	 t;
	struct src	 src;
	struct run	*run;
	int		 ready;		/* greeted and set up */
};

struct run {
	const struct smtp_relay *rl;
	struct smtp_msg	*msgs;
	size_t		 n;
	struct unit	*units;
	size_t		 nunits, next_unit;
	struct slot	 slots[SESSIONS_MAX];
	size_t		 nslots, live;
	const struct addrinfo *ai;	/* the address in use */
	struct smtp_conf conf;
	char		 host[256];
	char		 relay[RELAY_LEN];	/* host[ip]:port */
	char		 why[SMTP_REPLY_MAX];	/* first session failure */
	char		 last[SMTP_REPLY_MAX];	/* how the last one ended */
	int		 err;
	int		 answered;	/* a MAIL got a reply */
	int		 had;		/* a session was set up */
	int		 cut;		/* the relay ended a set-up one early */
	int		 stop;		/* done said stop */
	char		 pass[SECRET_MAX + 2];
};

static struct smtp_stats last_stats;

/* ---- the message source ------------------------------------------- */

/*
 * Up to len bytes of the message as the relay is to get it: the prepend
 * (list headers), then the spooled message with the insert (subject
 * prefix) placed where the file reaches insert_at.
 */
static ssize_t
msg_read(void *arg, char *buf, size_t len)
{
	struct src *s = arg;
	const struct smtp_msg *m = s->m;
	off_t stop = s->end;
	size_t n;
	ssize_t r;

	if (s->prepos < s->prelen) {
		n = s->prelen - s->prepos < len ? s->prelen - s->prepos : len;
		memcpy(buf, m->prepend + s->prepos, n);
		s->prepos += n;
		return (ssize_t)n;
	}
	if (s->inspos < s->inslen && s->off >= m->insert_at) {
		n = s->inslen - s->inspos < len ? s->inslen - s->inspos : len;
		memcpy(buf, m->insert + s->inspos, n);
		s->inspos += n;
		return (ssize_t)n;
	}
	if (s->inspos < s->inslen && m->insert_at < stop)
		stop = m->insert_at;
	if (stop >= 0 && s->off >= stop)
		return 0;
	if (stop >= 0 && (off_t)len > stop - s->off)
		len = (size_t)(stop - s->off);
	if ((r = pread(m->fd, buf, len, s->off)) > 0)
		s->off += r;
	return r;
}

static void
src_init(struct src *s, const struct smtp_msg *m)
{
	memset(s, 0, sizeof(*s));
	s->m = m;
	s->off = m->start;
	s->end = m->end > 0 ? m->end : -1;
	s->prelen = m->prepend != NULL ? strlen(m->prepend) : 0;
	s->inslen = m->insert != NULL ? strlen(m->insert) : 0;
}

/* For SIZE=: the caller's figure, else prepend + the rest of the file. */
static off_t
size_estimate(const struct smtp_msg *m)
{
	struct stat sb;
	off_t n = m->prepend != NULL ? (off_t)strlen(m->prepend) : 0;

	if (m->size > 0)
		return m->size;
	if (fstat(m->fd, &sb) == 0 && sb.st_size > m->start)
		n += (m->end > 0 ? m->end : sb.st_size) - m->start;
	return n;
}

/* ---- input checks -------------------------------------------------- */

/* Header lines only: a blank line or bare CR would end the headers. */
static int
prepend_ok(const char *p)
{
	const char *nl, *q;

	for (; p != NULL && *p != '\0'; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL || nl == p ||
		    memchr(p, '\r', (size_t)(nl - p)) != NULL)
			return 0;
		if (*p == ' ' || *p == '\t')
			continue;	/* folded line */
		for (q = p; q < nl && *q > 0x20 && *q < 0x7f && *q != ':'; q++)
			;
		if (q == p || q == nl || *q != ':')
			return 0;
	}
	return 1;
}

/* An insert is short printable text: it must not start a line of its own. */
static int
insert_ok(const char *p)
{
	size_t i;

	for (i = 0; p != NULL && p[i] != '\0'; i++)
		if (i >= 1024 || (unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

/* ---- outcomes ------------------------------------------------------ */

static void
put_msg(struct smtp_msg *m, int status, int code, const char *enh,
    const char *text)
{
	size_t i;

	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].status == 0 || m->rcpts[i].status == 2) {
			m->rcpts[i].status = status;
			m->rcpts[i].code = code;
			snprintf(m->rcpts[i].enh, sizeof(m->rcpts[i].enh),
			    "%s", enh);
			snprintf(m->rcpts[i].reply, sizeof(m->rcpts[i].reply),
			    "%s", text);
		}
	m->status = status;
	snprintf(m->reply, sizeof(m->reply), "%s", text);
}

/*
 * RFC 1870: 552 to MAIL or after the data means the message is too big
 * (a 552 to RCPT, RFC 5321, is temporary and stays 4): said so.
 */
static void
too_big(struct smtp_msg *m, unsigned long size, unsigned long limit)
{
	char lim[48] = "", orig[SMTP_REPLY_MAX];
	struct smtp_rcpt *r;
	size_t i;

	if (limit > 0)
		snprintf(lim, sizeof(lim), ", limit %lu", limit);
	for (i = 0; i < m->nrcpts; i++) {
		r = &m->rcpts[i];
		if (r->status != 5 || r->code != 552)
			continue;
		strlcpy(orig, r->reply, sizeof(orig));
		snprintf(r->reply, sizeof(r->reply), "message too big for "
		    "relay (%lu bytes%.40s): %.150s", size, lim, orig);
		snprintf(r->enh, sizeof(r->enh), "5.3.4");
	}
}

/* Every message not decided here yet: deferred for one reason. */
static int
defer_all(struct smtp_msg *msgs, size_t n, int err, const char *enh,
    const char *text)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (msgs[i].status == 0)
			put_msg(&msgs[i], 4, 0, enh, text);
	errno = err;
	return -1;
}

/* ---- set-up: names, TLS, the password ------------------------------ */

static struct {
	char		 key[300];
	struct addrinfo	*ai;
	time_t		 until;
} resolved;

/*
 * The relay's addresses, from the cache while fresh.  A name looked up
 * here is looked up before the call's sessions start: none waits on it.
 */
static const struct addrinfo *
resolve(const char *host, const char *port, char *why, size_t len)
{
	struct addrinfo hints;
	char key[300];
	time_t now = time(NULL);
	int e;

	snprintf(key, sizeof(key), "%s %s", host, port);
	if (resolved.ai != NULL && now < resolved.until &&
	    strcmp(key, resolved.key) == 0)
		return resolved.ai;
	if (resolved.ai != NULL)
		freeaddrinfo(resolved.ai);
	resolved.ai = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	if ((e = getaddrinfo(host, port, &hints, &resolved.ai)) != 0) {
		resolved.ai = NULL;
		snprintf(why, len, "Host or domain name not found: %s: %s",
		    host, gai_strerror(e));
		return NULL;
	}
	snprintf(resolved.key, sizeof(resolved.key), "%s", key);
	resolved.until = now + RESOLVE_TTL;
	return resolved.ai;
}

static struct {
	SSL_CTX	*ctx;
	char	 ca[CONFIG_STR_MAX];
} tls;

/* One TLS context per CA file for the process's life. */
static SSL_CTX *
tls_context(const char *ca, char *why, size_t len)
{
	if (ca == NULL)
		ca = "";
	if (tls.ctx != NULL && strcmp(tls.ca, ca) == 0)
		return tls.ctx;
	SSL_CTX_free(tls.ctx);
	tls.ctx = smtp_tls_context(ca[0] ? ca : NULL, why, len);
	snprintf(tls.ca, sizeof(tls.ca), "%s", ca);
	return tls.ctx;
}

static int
password_error(struct run *r, const char *path, const char *what)
{
	log_msg(LOG_ERR, NULL, "smtp_auth_password_file %s: %s; mail "
	    "deferred", path, what);
	snprintf(r->why, sizeof(r->why), "local error: "
	    "smtp_auth_password_file %s: %s", path, what);
	return -1;
}

/*
 * The password: the first line of the file, read at each call so a
 * change needs no reload.  The file must be readable by the service
 * user only.  Neither its content nor its length is ever logged.
 */
static int
read_password(struct run *r, const char *path)
{
	struct stat sb;
	char what[96];
	ssize_t n;
	int fd;

	if (path == NULL || *path == '\0')
		return password_error(r, "(unset)", "smtp_auth_user needs it");
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK)) == -1)
		return password_error(r, path, strerror(errno));
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode) ||
	    (sb.st_mode & (S_IRWXG | S_IRWXO))) {
		snprintf(what, sizeof(what), "not a regular file of mode "
		    "0600 or 0400 (mode %04o)", (unsigned)(sb.st_mode & 07777));
		close(fd);
		return password_error(r, path, what);
	}
	n = read(fd, r->pass, sizeof(r->pass) - 1);
	close(fd);
	r->pass[n > 0 ? n : 0] = '\0';
	r->pass[strcspn(r->pass, "\r\n")] = '\0';
	if (n < 0)
		return password_error(r, path, strerror(errno));
	if (strlen(r->pass) > SECRET_MAX)
		return password_error(r, path,
		    "password longer than 255 bytes");
	if (r->pass[0] == '\0')
		return password_error(r, path, "no password on its first line");
	return 0;
}

static void txn_done(struct smtp_txn *, void *);
static void widen(struct run *);

/* The session configuration of the call; -1 with r->why when none. */
static int
make_conf(struct run *r, const struct smtp_relay *rl)
{
	struct smtp_conf *c = &r->conf;
	static char node[256];
	static int encrypt_noted;

	memset(c, 0, sizeof(*c));
	if (rl->helo != NULL && rl->helo[0] != '\0')
		c->helo = rl->helo;
	else {
		if (gethostname(node, sizeof(node) - 1) == -1)
			snprintf(node, sizeof(node), "localhost");
		c->helo = node;
	}
	c->peer = r->host;
	c->tls = rl->tls == TLS_NONE ? SMTP_TLS_NONE : rl->tls == TLS_MAY ?
	    SMTP_TLS_MAY : SMTP_TLS_VERIFY;
	if (rl->tls == TLS_ENCRYPT && !encrypt_noted) {
		/* Before verify existed, encrypt meant it: kept so. */
		log_msg(LOG_NOTICE, NULL, "smtp_tls = encrypt is taken as "
		    "verify: the relay's certificate is checked, as before; "
		    "write smtp_tls = verify to say so");
		encrypt_noted = 1;
	}
	c->no_pipelining = rl->no_pipelining;
	c->connect_ms = rl->connect_timeout * 1000;
	c->cmd_ms = rl->cmd_timeout * 1000;
	c->data_ms = rl->data_timeout * 1000;
	c->done = txn_done;
	if (c->tls != SMTP_TLS_NONE && (c->tls_ctx = tls_context(
	    rl->tls_ca_file, r->why, sizeof(r->why))) == NULL)
		return -1;
	if (rl->auth_user != NULL && rl->auth_user[0] != '\0') {
		if (strlen(rl->auth_user) > SECRET_MAX) {
			snprintf(r->why, sizeof(r->why), "local error: "
			    "smtp_auth_user longer than 255 bytes");
			return -1;
		}
		if (read_password(r, rl->auth_password_file) == -1)
			return -1;
		c->auth_user = rl->auth_user;
		c->auth_password = r->pass;
	}
	return 0;
}

/* ---- sessions ------------------------------------------------------ */

static void
format_relay(struct run *r, const struct smtp_session *s)
{
	char ip[64], port[16], buf[RELAY_LEN];

	smtp_session_peer(s, ip, sizeof(ip), port, sizeof(port));
	if (ip[0] == '\0') {
		snprintf(r->relay, sizeof(r->relay), "%s", r->host);
		return;
	}
	snprintf(buf, sizeof(buf), "%.180s[%.48s]:%.8s", r->host, ip, port);
	smtp_clean(r->relay, sizeof(r->relay), buf, strlen(buf));
}

/* One line per TLS session, as Postfix logs it. */
static void
log_tls(const struct run *r, const struct smtp_session *s)
{
	const char *desc, *why;
	int verified;

	desc = smtp_session_tls(s, &verified, &why);
	if (desc[0] == '\0')
		return;
	if (verified)
		log_msg(LOG_INFO, NULL, "Verified TLS connection established "
		    "to %s: %s", r->relay, desc);
	else
		log_msg(LOG_INFO, NULL, "Untrusted TLS connection established "
		    "to %s: %s; certificate: %s", r->relay, desc, why);
}

static int
open_slot(struct run *r)
{
	struct slot *sl;

	if (r->nslots == SESSIONS_MAX || r->ai == NULL)
		return -1;
	sl = &r->slots[r->nslots];
	memset(sl, 0, sizeof(*sl));
	sl->run = r;
	r->conf.done_arg = sl;
	if ((sl->s = smtp_session_new(&r->conf, r->ai->ai_addr,
	    r->ai->ai_addrlen)) == NULL)
		return -1;
	r->nslots++;
	r->live++;
	return 0;
}

/*
 * The session ended the transaction: give it to the caller at once if
 * the relay answered it in a session that goes on; one the session cut
 * short is read after the call.
 */
static void
txn_done(struct smtp_txn *t, void *arg)
{
	struct slot *sl = arg;
	struct run *r = sl->run;
	struct smtp_msg *m = sl->m;
	struct smtp_session_stats st;

	sl->m = NULL;
	r->answered |= t->mail_code != 0;
	m->status = t->status;
	snprintf(m->reply, sizeof(m->reply), "%s", t->reply);
	smtp_session_stats(sl->s, &st);
	too_big(m, (unsigned long)t->size, st.size_limit);
	if (smtp_session_closed(sl->s))
		return;
	if (r->rl->done == NULL) {
		if (m->status == 2)
			widen(r);
		return;
	}
	m->reported = 1;
	if (r->rl->done(m, r->relay, r->rl->done_arg) != 0)
		r->stop = 1;
	if (m->status == 2)
		widen(r);
}

/* The next message of the slot's unit, or of a unit nobody has. */
static struct smtp_msg *
next_msg(struct run *r, struct slot *sl)
{
	while (!r->stop) {
		if (sl->u != NULL && sl->u->next < sl->u->first + sl->u->count)
			return &r->msgs[sl->u->next++];
		if (r->next_unit == r->nunits)
			return NULL;
		sl->u = &r->units[r->next_unit++];
	}
	return NULL;
}

static void
start_next(struct run *r, struct slot *sl)
{
	struct smtp_msg *m;

	while ((m = next_msg(r, sl)) != NULL) {
		if (m->status != 0)
			continue;	/* refused here: not for the relay */
		sl->m = m;
		src_init(&sl->src, m);
		memset(&sl->t, 0, sizeof(sl->t));
		sl->t.sender = m->sender;
		sl->t.rcpts = m->rcpts;
		sl->t.nrcpts = m->nrcpts;
		sl->t.size = size_estimate(m);
		sl->t.eightbit = m->eightbit;
		sl->t.read = msg_read;
		sl->t.read_arg = &sl->src;
		(void)smtp_session_start(sl->s, &sl->t);
		if (sl->m != NULL || smtp_session_closed(sl->s))
			return;	/* under way, or over */
	}
	smtp_session_quit(sl->s);
}

/* A session has just become ready: logged. */
static void
first_ready(struct run *r, struct slot *sl)
{
	sl->ready = 1;
	r->had = 1;
	last_stats.sessions++;
	if (r->relay[0] == '\0' || strcmp(r->relay, "none") == 0)
		format_relay(r, sl->s);
	log_tls(r, sl->s);
}

/*
 * The relay took a message: the other sessions open, one per entry still
 * waiting, up to smtp_relay.sessions.  Not before: a relay that takes
 * nothing (drops at MAIL, 421) costs one session, not one per entry.
 */
static void
widen(struct run *r)
{
	while (r->nslots < r->rl->sessions && !r->stop &&
	    r->live <= r->nunits - r->next_unit)
		if (open_slot(r) == -1)
			break;
}

/* Messages from..to that no session offered: deferred, untried. */
static void
not_offered(struct run *r, size_t from, size_t to)
{
	size_t i;

	for (i = from; i < to; i++)
		if (r->msgs[i].status == 0) {
			put_msg(&r->msgs[i], 4, 0, "4.4.2", r->last[0] ?
			    r->last : "the session ended first");
			r->msgs[i].untried = 1;
		}
}

/* What is left of a unit after its session ended. */
static void
drop_unit(struct run *r, struct slot *sl)
{
	if (sl->u == NULL)
		return;
	not_offered(r, sl->u->next, sl->u->first + sl->u->count);
	sl->u->next = sl->u->first + sl->u->count;
	sl->u = NULL;
}

static void
slot_ended(struct run *r, struct slot *sl)
{
	struct smtp_session_stats st;

	if (!sl->ready && r->why[0] == '\0') {
		format_relay(r, sl->s);
		r->err = smtp_session_errno(sl->s);
		if (strncmp(smtp_session_error(sl->s), "connect failed: ",
		    16) == 0)
			snprintf(r->why, sizeof(r->why), "connect to %.180s: "
			    "%.60s", r->relay, strerror(r->err));
		else if (strncmp(smtp_session_error(sl->s), "refused ", 8) == 0)
			snprintf(r->why, sizeof(r->why), "%.100s %.150s",
			    r->relay, smtp_session_error(sl->s));
		else
			snprintf(r->why, sizeof(r->why), "%s",
			    smtp_session_error(sl->s));
	}
	if (smtp_session_error(sl->s)[0] != '\0') {
		snprintf(r->last, sizeof(r->last), "%s",
		    smtp_session_error(sl->s));
		r->cut |= sl->ready;
	}
	smtp_session_stats(sl->s, &st);
	last_stats.pipelined += st.pipelined;
	last_stats.quickacks += st.quickacks;
	drop_unit(r, sl);
	smtp_session_free(sl->s);
	sl->s = NULL;
	r->live--;
}

/* Looks at every session after a poll round. */
static void
tend(struct run *r)
{
	struct smtp_session_stats st;
	struct slot *sl;
	size_t i;

	for (i = 0; i < r->nslots; i++) {
		sl = &r->slots[i];
		if (sl->s == NULL)
			continue;
		if (!sl->ready && smtp_session_ready_once(sl->s)) {
			smtp_session_stats(sl->s, &st);
			if (last_stats.nodelay != 1)
				last_stats.nodelay = st.nodelay;
			first_ready(r, sl);
		}
		if (smtp_session_closed(sl->s))
			slot_ended(r, sl);
		else if (smtp_session_idle(sl->s) && sl->m == NULL)
			start_next(r, sl);
	}
}

/* The first session failed before greeting: the relay's next address. */
static int
next_address(struct run *r)
{
	size_t i;

	for (i = 0; i < r->nslots; i++)
		if (r->slots[i].ready)
			return 0;
	if (r->ai == NULL || r->ai->ai_next == NULL || r->live > 0)
		return 0;
	r->ai = r->ai->ai_next;
	r->why[0] = '\0';
	r->nslots = 0;
	return open_slot(r) == 0;
}

static void
drive(struct run *r)
{
	struct smtp_session *ss[SESSIONS_MAX];
	size_t i, k;

	while (r->live > 0 || next_address(r)) {
		for (i = k = 0; i < r->nslots; i++)
			if (r->slots[i].s != NULL)
				ss[k++] = r->slots[i].s;
		smtp_poll(ss, k, 1000);
		tend(r);
	}
}

/* The entries: runs of messages with one app pointer. */
static int
make_units(struct run *r)
{
	size_t i;

	if ((r->units = calloc(r->n + 1, sizeof(*r->units))) == NULL)
		return -1;
	for (i = 0; i < r->n; i++) {
		if (i == 0 || r->msgs[i].app != r->msgs[i - 1].app ||
		    r->msgs[i].app == NULL) {
			r->units[r->nunits].first = i;
			r->units[r->nunits++].next = i;
		}
		r->units[r->nunits - 1].count++;
	}
	return 0;
}

static void
reset(struct smtp_msg *msgs, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		msgs[i].status = msgs[i].untried = msgs[i].reported = 0;
		msgs[i].reply[0] = '\0';
		for (j = 0; j < msgs[i].nrcpts; j++) {
			msgs[i].rcpts[j].status = msgs[i].rcpts[j].code = 0;
			msgs[i].rcpts[j].enh[0] = '\0';
			msgs[i].rcpts[j].reply[0] = '\0';
		}
		if (!prepend_ok(msgs[i].prepend) || !insert_ok(msgs[i].insert))
			put_msg(&msgs[i], 4, 0, "4.3.0", "local error: "
			    "invalid prepend header lines");
	}
}

/* The host without the brackets of an IPv6 literal. */
static int
set_host(struct run *r, const char *host)
{
	size_t len = strlen(host);

	if (host[0] == '[' && len > 2 && host[len - 1] == ']')
		snprintf(r->host, sizeof(r->host), "%.*s", (int)(len - 2),
		    host + 1);
	else
		snprintf(r->host, sizeof(r->host), "%s", host);
	return r->host[0] != '\0' && len < sizeof(r->host) ? 0 : -1;
}

/*
 * After the sessions: 1 when a session was set up and the relay ended
 * one early, 0 when they ran; with no session set up and no MAIL
 * answered, nothing was tried (-1, see smtp.h).
 */
static int
conclude(struct run *r, char *relay_out, size_t relay_len)
{
	size_t i;

	if (relay_out != NULL && relay_len > 0 && r->relay[0] != '\0')
		snprintf(relay_out, relay_len, "%s", r->relay);
	/* entries no session took */
	not_offered(r, r->next_unit < r->nunits ?
	    r->units[r->next_unit].first : r->n, r->n);
	if (r->answered || r->stop || r->had)
		return r->cut && !r->stop;
	for (i = 0; i < r->n; i++)	/* no reply came: none was tried */
		if (!r->msgs[i].untried && r->msgs[i].status == 4 &&
		    r->why[0] == '\0')
			snprintf(r->why, sizeof(r->why), "%s",
			    r->msgs[i].reply);
	for (i = 0; i < r->n; i++)
		if (r->msgs[i].untried || r->msgs[i].status == 4) {
			r->msgs[i].status = 0;
			r->msgs[i].untried = 0;
		}
	return defer_all(r->msgs, r->n, r->err ? r->err : EPROTO, "4.4.1",
	    r->why[0] ? r->why : "no session with the relay");
}

int
smtp_deliver(const struct smtp_relay *rl, struct smtp_msg *msgs, size_t n,
    char *relay_out, size_t relay_len)
{
	struct run *r;
	int rv;

	memset(&last_stats, 0, sizeof(last_stats));
	last_stats.nodelay = -1;
	if (relay_out != NULL && relay_len > 0)
		snprintf(relay_out, relay_len, "none");
	reset(msgs, n);
	if (rl == NULL || rl->host == NULL || *rl->host == '\0')
		return defer_all(msgs, n, EINVAL, "4.3.0",
		    "no relay host configured");
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return defer_all(msgs, n, ENOMEM, "4.3.0",
		    "local error: out of memory");
	r->rl = rl;
	r->msgs = msgs;
	r->n = n;
	if (set_host(r, rl->host) == -1)
		snprintf(r->why, sizeof(r->why), "invalid relay host");
	else if (make_conf(r, rl) == 0 && (r->ai = resolve(r->host,
	    rl->port != NULL ? rl->port : "25", r->why, sizeof(r->why))) !=
	    NULL && make_units(r) == 0 && open_slot(r) == 0)
		drive(r);
	if (r->nslots == 0 && r->why[0] == '\0')
		snprintf(r->why, sizeof(r->why), "local error: %s",
		    strerror(errno));
	if (r->nslots == 0)
		r->err = r->ai == NULL ? EHOSTUNREACH : EPROTO;
	rv = conclude(r, relay_out, relay_len);
	explicit_bzero(r->pass, sizeof(r->pass));
	free(r->units);
	free(r);
	return rv;
}

void
smtp_last_stats(struct smtp_stats *st)
{
	*st = last_stats;
}
