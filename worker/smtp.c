/*
 * smtp.c -- send batches of spooled messages over one SMTP session with
 * libESMTP, byte for byte, and report every recipient's outcome.
 *
 * libESMTP 1.1 cannot be told to leave headers alone.  It adds Date:
 * and From: (both "required": Hdr_PROHIBIT is refused with
 * SMTP_ERR_INVAL) and Message-Id: (Hdr_PROHIBIT drops the message's own
 * but still generates one when it has none), strips Return-Path: (no
 * option is accepted for it) and drops every repeated To:, Cc:, From:,
 * Date:...  So the message callback first hands libESMTP a fixed decoy
 * header block: libESMTP's header pass consumes it, finds Date, From and
 * Message-Id present, adds nothing and sends the decoy verbatim; the
 * real message follows as what libESMTP takes for the body, which it
 * only dot-stuffs.  The write hook (sockopt.c) drops exactly the decoy
 * from the first write of the data phase, and refuses the write (the
 * connection drops, the mail is deferred) if the decoy is not there.
 * libESMTP sends headers as a BDAT chunk of their own when the server
 * offers CHUNKING, so the read hook renames that keyword in the EHLO
 * reply and libESMTP always uses DATA.
 *
 * Invariants:
 *  - the server receives prepend + message, LF -> CRLF, dot-stuffed;
 *  - no message byte is sent unless the socket hooks are in effect;
 *  - memory does not grow with message size (64 KiB in, 128 KiB out);
 *  - every recipient ends with status 2, 4 or 5 and a one-line reply of
 *    printable ASCII.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libesmtp.h>

#include "smtp.h"
#include "sockopt.h"

#define IN_CHUNK	(64 * 1024)
#define ADDR_MAX	512
#define KW_LEN		12	/* "250-CHUNKING" */

/* What libESMTP's header pass eats; it is never sent (see above). */
static const char decoy[] =
    "Date: listq\r\n"
    "From: listq\r\n"
    "Message-Id: listq-decoy\r\n"
    "\r\n";
#define DECOY_LEN	(sizeof(decoy) - 1)

enum phase { P_DECOY, P_DATA, P_TAIL, P_EOF };

struct ctx;

struct src {			/* one message as the callback streams it */
	struct ctx		*c;
	struct smtp_msg		*msg;
	off_t			 start, off;
	size_t			 prelen, prepos;
	enum phase		 phase;
	int			 prev;	/* last input byte, -1 before any */
	int			 inserted; /* msg->insert was sent */
	int			 err;	/* local error (errno), 0 if none */
};

struct item {
	smtp_message_t		 m;	/* NULL: not sent (refused input) */
	smtp_recipient_t	*r;	/* NULL entry: refused address */
	struct src		 src;
};

struct wire {			/* state of the socket hooks */
	int	native;
	int	live;		/* a server byte came through read() */
	int	strip;		/* the next write must start with decoy */
	int	ehlo_done;
	size_t	col;		/* column in the current server line */
	char	kw[KW_LEN];
	char	cur[SMTP_REPLY_MAX], last[SMTP_REPLY_MAX];
};

struct why {			/* why something was not delivered */
	int	status, code, err;
	char	enh[16];
	char	text[SMTP_REPLY_MAX];
};

struct ctx {
	smtp_session_t		 session;
	struct item		*items;
	size_t			 n;
	char			*in, *out;
	char			 relay[SMTP_REPLY_MAX];	/* host[ip]:port */
	const char		*host;
	int			 connected;
	struct wire		 w;
};

/* ---- text ---------------------------------------------------------- */

/* One line of printable ASCII: no CR/LF, so no header injection. */
static void
clean(char *dst, size_t len, const char *src)
{
	size_t		o = 0;
	int		sp = 0;
	unsigned char	ch;

	for (; src != NULL && *src != '\0' && o + 1 < len; src++) {
		ch = (unsigned char)*src;
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			sp = 1;
			continue;
		}
		if (sp && o > 0 && o + 2 < len)
			dst[o++] = ' ';
		sp = 0;
		dst[o++] = (ch > 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[o] = '\0';
}

static void
set_why(struct why *y, int status, int code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
set_why(struct why *y, int status, int code, const char *enh,
    const char *fmt, ...)
{
	char	buf[SMTP_REPLY_MAX];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	y->status = status;
	y->code = code;
	snprintf(y->enh, sizeof(y->enh), "%s", enh);
	clean(y->text, sizeof(y->text), buf);
}

/* A server reply as the decision: class 4 forced for 552 to RCPT. */
static void
why_reply(struct why *y, const smtp_status_t *st, int rcpt)
{
	char	enh[16];
	int	cls = st->code / 100;

	if (cls != 2 && cls != 5)
		cls = 4;
	if (rcpt && st->code == 552)
		cls = 4;	/* RFC 5321 4.5.3.1.10 */
	if (st->enh_class == st->code / 100 && st->enh_subject >= 0 &&
	    st->enh_subject < 1000 && st->enh_detail >= 0 &&
	    st->enh_detail < 1000)
		snprintf(enh, sizeof(enh), "%d.%d.%d", cls,
		    st->enh_subject, st->enh_detail);
	else
		snprintf(enh, sizeof(enh), "%d.0.0", cls);
	if (st->enh_class != 0)
		set_why(y, cls, st->code, enh, "%d %d.%d.%d %s", st->code,
		    st->enh_class, st->enh_subject, st->enh_detail,
		    st->text != NULL ? st->text : "");
	else
		set_why(y, cls, st->code, enh, "%d %s", st->code,
		    st->text != NULL ? st->text : "");
}

static void
put_rcpt(struct smtp_rcpt *r, const struct why *y)
{
	r->status = y->status;
	r->code = y->code;
	snprintf(r->enh, sizeof(r->enh), "%s", y->enh);
	snprintf(r->reply, sizeof(r->reply), "%s", y->text);
}

static void
put_msg(struct smtp_msg *m, int status, const char *text)
{
	m->status = status;
	snprintf(m->reply, sizeof(m->reply), "%s", text);
}

/* ---- input checks -------------------------------------------------- */

/* Printable, no '<' '>': nothing can end the SMTP command early. */
static int
addr_ok(const char *a, int empty_ok)
{
	size_t	i;

	if (a == NULL || (*a == '\0' && !empty_ok))
		return 0;
	for (i = 0; a[i] != '\0'; i++)
		if (i >= ADDR_MAX || a[i] <= 0x20 || a[i] >= 0x7f ||
		    a[i] == '<' || a[i] == '>')
			return 0;
	return 1;
}

/* Header lines only: a blank line or bare CR would end the headers. */
static int
prepend_ok(const char *p)
{
	const char	*nl, *q;

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
	size_t	i;

	for (i = 0; p != NULL && p[i] != '\0'; i++)
		if (i >= 1024 || (unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

/* ---- message stream ------------------------------------------------ */

/* LF -> CRLF; a CR already before the LF (even across chunks) stays. */
static size_t
crlf(const char *p, size_t n, char *out, int *prev)
{
	const char	*end = p + n, *lf;
	size_t		 o = 0, seg;
	int		 before;

	while (p < end) {
		if ((lf = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			memcpy(out + o, p, (size_t)(end - p));
			o += (size_t)(end - p);
			*prev = (unsigned char)end[-1];
			break;
		}
		seg = (size_t)(lf - p);
		memcpy(out + o, p, seg);
		o += seg;
		before = seg > 0 ? (unsigned char)lf[-1] : *prev;
		if (before != '\r')
			out[o++] = '\r';
		out[o++] = '\n';
		*prev = '\n';
		p = lf + 1;
	}
	return o;
}

/*
 * The insert text (one line, checked by insert_ok) once the stream has
 * reached its offset; 0 otherwise.
 */
static size_t
src_insert(struct src *s)
{
	size_t n;

	if (s->msg->insert == NULL || s->inserted ||
	    s->off != s->msg->insert_at || (n = strlen(s->msg->insert)) == 0)
		return 0;
	s->inserted = 1;
	memcpy(s->c->out, s->msg->insert, n);
	s->prev = (unsigned char)s->msg->insert[n - 1];
	return n;
}

/* Next converted piece: prepend, then the spool file (and any insert). */
static ssize_t
src_fill(struct src *s)
{
	const char	*pre = s->msg->prepend;
	ssize_t		 r;
	size_t		 n;

	if (s->prepos < s->prelen) {
		n = s->prelen - s->prepos;
		if (n > IN_CHUNK)
			n = IN_CHUNK;
		s->prepos += n;
		return (ssize_t)crlf(pre + s->prepos - n, n, s->c->out,
		    &s->prev);
	}
	if ((n = src_insert(s)) > 0)
		return (ssize_t)n;
	n = IN_CHUNK;
	if (s->msg->insert != NULL && !s->inserted &&
	    s->msg->insert_at > s->off && s->msg->insert_at - s->off < IN_CHUNK)
		n = (size_t)(s->msg->insert_at - s->off);
	do
		r = pread(s->msg->fd, s->c->in, n, s->off);
	while (r == -1 && errno == EINTR);
	if (r <= 0)
		return r;
	s->off += r;
	return (ssize_t)crlf(s->c->in, (size_t)r, s->c->out, &s->prev);
}

static void
src_rewind(struct src *s)
{
	s->off = s->start;
	s->prepos = 0;
	s->inserted = 0;
	s->prev = -1;
	s->phase = s->c->w.native ? P_DATA : P_DECOY;
	/* From here, libESMTP's first write is the decoy: drop it. */
	s->c->w.strip = !s->c->w.native;
	if (!s->c->w.native && !s->c->w.live)
		s->err = ENOTCONN;	/* hooks not on this socket */
}

static const char *
src_next(struct src *s, int *len)
{
	ssize_t	n;

	*len = 0;
	if (s->err != 0) {
		errno = s->err;	/* libESMTP drops the connection */
		return NULL;
	}
	switch (s->phase) {
	case P_DECOY:
		s->phase = P_DATA;
		*len = (int)DECOY_LEN;
		return decoy;
	case P_DATA:
		if ((n = src_fill(s)) > 0) {
			*len = (int)n;
			return s->c->out;
		}
		if (n < 0) {
			s->err = errno;
			return NULL;
		}
		s->phase = P_TAIL;
		/* FALLTHROUGH */
	case P_TAIL:
		s->phase = P_EOF;
		if (s->prev != -1 && s->prev != '\n') {
			*len = 2;	/* same in DATA and BDAT mode */
			return "\r\n";
		}
		/* FALLTHROUGH */
	default:
		return NULL;
	}
}

/* libESMTP's message callback: len == NULL means "rewind". */
static const char *
msg_cb(void **ctx, int *len, void *arg)
{
	(void)ctx;	/* libESMTP free()s it: unused */
	if (len == NULL) {
		src_rewind(arg);
		return NULL;
	}
	return src_next(arg, len);
}

/* ---- socket hooks ---------------------------------------------------- */

static int
is_chunking(const char *kw)
{
	return memcmp(kw, "250", 3) == 0 && (kw[3] == '-' || kw[3] == ' ') &&
	    strncasecmp(kw + 4, "CHUNKING", 8) == 0;
}

static void
end_line(struct wire *w)
{
	w->cur[w->col < sizeof(w->cur) ? w->col : sizeof(w->cur) - 1] = '\0';
	memcpy(w->last, w->cur, sizeof(w->last));
	if (w->col >= 4 && memcmp(w->kw, "250 ", 4) == 0)
		w->ehlo_done = 1;	/* last line of the EHLO reply */
	w->col = 0;
}

/* Keep the last server line; hide CHUNKING from libESMTP. */
static void
rx_hook(void *arg, char *buf, size_t len)
{
	struct wire	*w = arg;
	size_t		 i;

	w->live = 1;
	for (i = 0; i < len; i++) {
		if (w->col < KW_LEN)
			w->kw[w->col] = buf[i];
		if (w->col == KW_LEN - 1 && !w->ehlo_done && !w->native &&
		    is_chunking(w->kw))
			buf[i] = 'X';	/* "CHUNKINX": unknown keyword */
		if (w->col < sizeof(w->cur) - 1)
			w->cur[w->col] = buf[i];
		w->col++;
		if (buf[i] == '\n')
			end_line(w);
	}
}

static ssize_t
tx_hook(void *arg, const char *buf, size_t len)
{
	struct wire	*w = arg;

	if (!w->strip)
		return 0;
	if (len >= DECOY_LEN && memcmp(buf, decoy, DECOY_LEN) == 0)
		return (ssize_t)DECOY_LEN;
	return -1;
}

static void
txdone_hook(void *arg, size_t dropped)
{
	struct wire	*w = arg;

	if (dropped > 0)
		w->strip = 0;
}

/* ---- session ------------------------------------------------------- */

static long
ms(int secs, int dflt)
{
	return (secs > 0 ? secs : dflt) * 1000L;
}

static int
setup_session(struct ctx *c, const struct smtp_relay *rl)
{
	char	hostport[512];
	long	cmd = ms(rl->cmd_timeout, 300), data = ms(rl->data_timeout, 600);
	int	o = Timeout_OVERRIDE_RFC2822_MINIMUM;

	/* libESMTP splits at the first ':' and defaults to port 587. */
	if (strchr(rl->host, ':') != NULL || snprintf(hostport,
	    sizeof(hostport), "%s:%s", rl->host, rl->port != NULL ?
	    rl->port : "25") >= (int)sizeof(hostport)) {
		errno = EINVAL;
		return -1;
	}
	if ((c->session = smtp_create_session()) == NULL ||
	    !smtp_set_server(c->session, hostport) ||
	    (rl->helo != NULL && *rl->helo != '\0' &&
	    !smtp_set_hostname(c->session, rl->helo))) {
		errno = ENOMEM;
		return -1;
	}
	/* The default, said aloud: the smarthost is on a trusted path. */
	(void)smtp_starttls_enable(c->session, Starttls_DISABLED);
	smtp_set_timeout(c->session, Timeout_GREETING | o, cmd);
	smtp_set_timeout(c->session, Timeout_ENVELOPE | o, cmd);
	smtp_set_timeout(c->session, Timeout_DATA | o, cmd);
	smtp_set_timeout(c->session, Timeout_TRANSFER | o, data);
	smtp_set_timeout(c->session, Timeout_DATA2 | o, data);
	return 0;
}

static void
fail_rcpts(struct smtp_msg *m, const struct why *y)
{
	size_t	i;

	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].status == 0)
			put_rcpt(&m->rcpts[i], y);
}

static unsigned long
size_estimate(const struct smtp_msg *m, off_t start)
{
	struct stat	sb;
	unsigned long	n = m->prepend != NULL ? strlen(m->prepend) : 0;

	if (fstat(m->fd, &sb) == 0 && sb.st_size > start)
		n += (unsigned long)(sb.st_size - start);
	return n;
}

/* Add one message; refused input is decided here and not sent. */
static int
add_message(struct ctx *c, struct item *it, struct smtp_msg *m)
{
	struct why	y;
	size_t		i, good = 0;

	it->src.c = c;
	it->src.msg = m;
	it->src.prelen = m->prepend != NULL ? strlen(m->prepend) : 0;
	if (!addr_ok(m->sender, 1)) {
		set_why(&y, 5, 0, "5.1.7", "invalid envelope sender address");
		fail_rcpts(m, &y);
		put_msg(m, 5, y.text);
		return 0;
	}
	if (!prepend_ok(m->prepend) || !insert_ok(m->insert))
		set_why(&y, 4, 0, "4.3.0", "local error: invalid prepend "
		    "header lines");
	else if ((it->src.start = lseek(m->fd, 0, SEEK_CUR)) == -1)
		set_why(&y, 4, 0, "4.3.0", "local error: spool file: %s",
		    strerror(errno));
	else
		y.status = 0;
	if (y.status != 0) {
		fail_rcpts(m, &y);
		put_msg(m, 4, y.text);
		return 0;
	}
	if ((it->r = calloc(m->nrcpts + 1, sizeof(*it->r))) == NULL)
		return -1;
	for (i = 0; i < m->nrcpts; i++) {
		if (addr_ok(m->rcpts[i].addr, 0)) {
			good++;
			continue;
		}
		set_why(&y, 5, 0, "5.1.3", "invalid recipient address");
		put_rcpt(&m->rcpts[i], &y);
	}
	if (good == 0) {
		put_msg(m, 5, "no valid recipient");
		return 0;
	}
	if ((it->m = smtp_add_message(c->session)) == NULL ||
	    !smtp_set_reverse_path(it->m, m->sender) ||
	    !smtp_set_messagecb(it->m, msg_cb, &it->src) ||
	    !smtp_size_set_estimate(it->m, size_estimate(m, it->src.start)))
		return -1;
	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].status == 0 && (it->r[i] =
		    smtp_add_recipient(it->m, m->rcpts[i].addr)) == NULL)
			return -1;
	return 1;
}

static void
format_relay(struct ctx *c, const struct sockopt_stats *st)
{
	char	ip[64], port[16], buf[SMTP_REPLY_MAX];

	if (st->peerlen == 0 || getnameinfo((const struct sockaddr *)
	    &st->peer, st->peerlen, ip, sizeof(ip), port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(c->relay, sizeof(c->relay), "%s", c->host);
		return;
	}
	snprintf(buf, sizeof(buf), "%.180s[%.48s]:%.8s", c->host, ip, port);
	clean(c->relay, sizeof(c->relay), buf);
}

/* Greeting or EHLO refused: deferred, with the server's own codes. */
static void
refused(struct ctx *c, struct why *y)
{
	char	enh[16] = "4.4.0";
	int	code = 0, sub, det;

	if (sscanf(c->w.last, "%3d %*1d.%3d.%3d", &code, &sub, &det) == 3)
		snprintf(enh, sizeof(enh), "4.%d.%d", sub, det);
	else if (sscanf(c->w.last, "%3d", &code) != 1)
		code = 0;
	set_why(y, 4, code, enh, "%s refused to talk to me: %s", c->relay,
	    c->w.last);
}

/* No session at all: connection refused, timeout, 421 greeting... */
static void
why_no_session(struct ctx *c, const struct sockopt_stats *st,
    struct why *y)
{
	int	e = smtp_errno();
	char	buf[128];

	if (!st->connected && st->connect_errno != 0) {
		set_why(y, 4, 0, "4.4.1", "connect to %s: %s", c->relay,
		    strerror(st->connect_errno));
		y->err = st->connect_errno;
	} else if (!st->connected && e >= SMTP_ERR_EAI_ADDRFAMILY &&
	    e <= SMTP_ERR_EAI_SOCKTYPE) {
		set_why(y, 4, 0, "4.4.4", "Host or domain name not found: %s",
		    smtp_strerror(e, buf, sizeof(buf)));
		y->err = EHOSTUNREACH;
	} else if (c->w.last[0] != '\0' && c->w.last[0] != '2') {
		refused(c, y);
		y->err = EPROTO;
	} else if (st->timedout) {
		set_why(y, 4, 0, "4.4.2", "conversation with %s timed out",
		    c->relay);
		y->err = ETIMEDOUT;
	} else {
		set_why(y, 4, 0, "4.4.2", "lost connection with %s: %s",
		    c->relay, st->read_errno != 0 ? strerror(st->read_errno) :
		    smtp_strerror(e, buf, sizeof(buf)));
		y->err = st->read_errno != 0 ? st->read_errno : ECONNRESET;
	}
}

static int
is_421(const smtp_status_t *st, int rcpt, struct why *y)
{
	if (st->code != 421)
		return 0;
	why_reply(y, st, rcpt);
	return 1;
}

/* First 421 the server gave, if any: it ended the session. */
static int
find_421(struct ctx *c, struct why *y)
{
	struct item	*it;
	size_t		 i, j;

	for (i = 0; i < c->n; i++) {
		if ((it = &c->items[i])->m == NULL)
			continue;
		if (is_421(smtp_reverse_path_status(it->m), 0, y))
			return 1;
		for (j = 0; j < it->src.msg->nrcpts; j++)
			if (it->r[j] != NULL &&
			    is_421(smtp_recipient_status(it->r[j]), 1, y))
				return 1;
		if (is_421(smtp_message_transfer_status(it->m), 0, y))
			return 1;
	}
	return 0;
}

/* The session ran but ended before some transactions did. */
static void
why_cut_short(struct ctx *c, const struct sockopt_stats *st, struct why *y)
{
	char	buf[128];

	if (find_421(c, y))
		return;
	if (st->timedout)
		set_why(y, 4, 0, "4.4.2", "conversation with %s timed out",
		    c->relay);
	else if (st->eof || st->read_errno != 0)
		set_why(y, 4, 0, "4.4.2", "lost connection with %s%s%s",
		    c->relay, st->read_errno != 0 ? ": " : "",
		    st->read_errno != 0 ? strerror(st->read_errno) : "");
	else
		set_why(y, 4, 0, "4.4.2", "session with %s ended early: %s",
		    c->relay, smtp_strerror(smtp_errno(), buf, sizeof(buf)));
}

/* A reply that ends the transaction; the 354 to DATA does not. */
static int
final(const smtp_status_t *st)
{
	return st->code / 100 == 2 || st->code / 100 == 4 ||
	    st->code / 100 == 5;
}

/* One recipient after the session: RCPT reply, then end of data. */
static void
rcpt_outcome(const smtp_status_t *rs, const smtp_status_t *ds,
    const struct why *cut, struct why *y)
{
	if (rs->code == 0)
		*y = *cut;			/* never tried */
	else if (rs->code / 100 != 2)
		why_reply(y, rs, 1);		/* refused at RCPT */
	else if (final(ds))
		why_reply(y, ds, 0);		/* DATA or end-of-data reply */
	else
		*y = *cut;			/* no end-of-data reply */
}

/* MAIL refused, never tried, or the spool file failed: all alike. */
static int
whole_msg(struct item *it, const struct why *cut)
{
	const smtp_status_t	*ms = smtp_reverse_path_status(it->m);
	const smtp_status_t	*ds = smtp_message_transfer_status(it->m);
	struct why		 y;

	if (it->src.err != 0 && !final(ds))
		set_why(&y, 4, 0, "4.3.0", "local error reading message: %s",
		    strerror(it->src.err));
	else if (ms->code == 0)
		y = *cut;
	else if (ms->code / 100 != 2)
		why_reply(&y, ms, 0);
	else
		return 0;
	fail_rcpts(it->src.msg, &y);
	put_msg(it->src.msg, y.status, y.text);
	return 1;
}

static void
msg_outcome(struct item *it, const struct why *cut)
{
	struct smtp_msg		*m = it->src.msg;
	const smtp_status_t	*ds = smtp_message_transfer_status(it->m);
	struct why		 y;
	size_t			 i, ok = 0, tmp = 0;

	if (whole_msg(it, cut))
		return;
	for (i = 0; i < m->nrcpts; i++) {
		if (it->r[i] == NULL)
			continue;	/* refused before sending */
		rcpt_outcome(smtp_recipient_status(it->r[i]), ds, cut, &y);
		put_rcpt(&m->rcpts[i], &y);
		ok += smtp_recipient_status(it->r[i])->code / 100 == 2;
		tmp += y.status == 4;
	}
	if (ok > 0 && final(ds))
		why_reply(&y, ds, 0);
	else if (ok > 0)
		y = *cut;
	else
		set_why(&y, tmp > 0 ? 4 : 5, 0, "", "no recipient accepted");
	put_msg(m, y.status, y.text);
}

static void
fail_all(struct ctx *c, const struct why *y)
{
	size_t	i;

	for (i = 0; i < c->n; i++) {
		if (c->items[i].m == NULL)
			continue;
		fail_rcpts(c->items[i].src.msg, y);
		put_msg(c->items[i].src.msg, y->status, y->text);
	}
}

static int
any_tried(const struct ctx *c)
{
	size_t	i;

	for (i = 0; i < c->n; i++)
		if (c->items[i].m != NULL &&
		    smtp_reverse_path_status(c->items[i].m)->code != 0)
			return 1;
	return 0;
}

/* Run the session and turn libESMTP's statuses into outcomes. */
static int
run(struct ctx *c, const struct smtp_relay *rl)
{
	struct sockopt_hooks	h = { rx_hook, tx_hook, txdone_hook, &c->w };
	struct sockopt_stats	st;
	struct why		y;
	size_t			i;
	int			opts = SOCKOPT_NODELAY | SOCKOPT_QUICKACK;

	if (rl->flags & SMTP_F_NO_NODELAY)
		opts &= ~SOCKOPT_NODELAY;
	if (rl->flags & SMTP_F_NO_QUICKACK)
		opts &= ~SOCKOPT_QUICKACK;
	sockopt_arm(opts, (int)ms(rl->connect_timeout, 30), &h);
	/* Its result says little: 1 after a greeting timeout, 1 when every
	   recipient was refused.  Only the statuses below tell. */
	(void)smtp_start_session(c->session);
	sockopt_stats(&st);
	sockopt_disarm();
	c->connected = st.connected;
	format_relay(c, &st);
	if (!any_tried(c)) {		/* no MAIL FROM got a reply */
		why_no_session(c, &st, &y);
		fail_all(c, &y);
		errno = y.err;
		return -1;
	}
	why_cut_short(c, &st, &y);
	for (i = 0; i < c->n; i++)
		if (c->items[i].m != NULL)
			msg_outcome(&c->items[i], &y);
	return 0;
}

static void
ctx_free(struct ctx *c)
{
	size_t	i;

	if (c->session != NULL)
		smtp_destroy_session(c->session);
	for (i = 0; c->items != NULL && i < c->n; i++)
		free(c->items[i].r);
	free(c->items);
	free(c->in);
	free(c->out);
}

/* Every message deferred for one reason; no session was tried. */
static int
defer_all(struct smtp_msg *msgs, size_t n, int err, const char *text)
{
	struct why	y;
	size_t		i;

	set_why(&y, 4, 0, "4.3.0", "%s", text);
	for (i = 0; i < n; i++) {
		fail_rcpts(&msgs[i], &y);
		put_msg(&msgs[i], 4, y.text);
	}
	errno = err;
	return -1;
}

static int
prepare(struct ctx *c, const struct smtp_relay *rl, struct smtp_msg *msgs,
    size_t n, size_t *nsend)
{
	size_t	i, j;
	int	r;

	for (i = 0; i < n; i++) {
		msgs[i].status = 0;
		msgs[i].reply[0] = '\0';
		for (j = 0; j < msgs[i].nrcpts; j++) {
			msgs[i].rcpts[j].status = msgs[i].rcpts[j].code = 0;
			msgs[i].rcpts[j].enh[0] = msgs[i].rcpts[j].reply[0] = '\0';
		}
	}
	c->w.native = (rl->flags & SMTP_F_NATIVE) != 0;
	if ((c->items = calloc(n + 1, sizeof(*c->items))) == NULL ||
	    (c->in = malloc(IN_CHUNK)) == NULL ||
	    (c->out = malloc(2 * IN_CHUNK)) == NULL)
		return -1;
	c->n = n;
	if (setup_session(c, rl) == -1)
		return -1;
	for (*nsend = i = 0; i < n; i++) {
		if ((r = add_message(c, &c->items[i], &msgs[i])) == -1)
			return -1;
		*nsend += (size_t)r;
	}
	return 0;
}

int
smtp_deliver(const struct smtp_relay *rl, struct smtp_msg *msgs, size_t n,
    char *relay_out, size_t relay_len)
{
	struct ctx	c;
	size_t		nsend = 0;
	int		rv, err;

	memset(&c, 0, sizeof(c));
	c.host = rl != NULL && rl->host != NULL ? rl->host : "";
	snprintf(c.relay, sizeof(c.relay), "none");
	if (relay_out != NULL && relay_len > 0)
		snprintf(relay_out, relay_len, "none");
	if (rl == NULL || rl->host == NULL || *rl->host == '\0')
		return defer_all(msgs, n, EINVAL, "no relay host configured");
	if (!(rl->flags & SMTP_F_NATIVE) && !sockopt_interposed())
		return defer_all(msgs, n, ENOSYS, "local error: socket hooks "
		    "not in effect (sockopt.c not linked dynamically)");
	if (prepare(&c, rl, msgs, n, &nsend) == -1) {
		rv = errno;
		ctx_free(&c);
		return defer_all(msgs, n, rv, rv == EINVAL ?
		    "invalid relay host or port" : "local error: out of memory");
	}
	rv = nsend > 0 ? run(&c, rl) : 0;
	err = errno;
	if (relay_out != NULL && relay_len > 0 && c.connected)
		snprintf(relay_out, relay_len, "%s", c.relay);
	ctx_free(&c);
	errno = err;
	return rv;
}
