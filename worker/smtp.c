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
 * reply and libESMTP always uses DATA.  With STARTTLS the hooks run on
 * the plaintext of SSL_read() and SSL_write() (sockopt.c), so the same
 * holds in TLS sessions, the second EHLO reply included.
 *
 * The hooks also read the EHLO reply (STARTTLS, AUTH, SIZE, 8BITMIME)
 * and the AUTH replies, and the write hook is a gate: it refuses (the
 * connection drops, every message is deferred) an AUTH command that
 * would send the password in clear text, and the first MAIL command of
 * a session that smtp_tls = encrypt or smtp_auth_user says must not
 * run yet.  libESMTP would go on to MAIL after a failed AUTH; the gate
 * makes that a deferral, with the relay's own reply as the reason.
 *
 * Pipelining.  libESMTP 1.1 waits for the reply to MAIL before it writes
 * RCPT and DATA, even to a relay that offers PIPELINING (RFC 2920 lets
 * the three go together): one more round trip per message.  So when
 * libESMTP writes a MAIL command on its own, no reply due, to a relay
 * offering PIPELINING, the write hook has sockopt.c answer it at once
 * with MAIL_ANSWER; libESMTP goes on with RCPT and DATA, and all three
 * leave in one write, in clear text or over TLS.  The relay's real
 * reply to MAIL, cut from the stream, becomes the message's MAIL status
 * (mail_status()), which every decision below reads in place of
 * libESMTP's.  After a refused MAIL the relay answers the RCPTs and the
 * DATA with 503; libESMTP records them and sends no data, and they are
 * never looked at, because a refused MAIL decides for the whole message
 * first (whole_msg()).  A MAIL whose real reply never came counts as
 * unanswered, exactly as without pipelining: no 354 can have come
 * either, so no data went.  smtp_pipelining = no hides PIPELINING
 * from libESMTP as CHUNKING is hidden: one command at a time.
 *
 * Invariants:
 *  - the server receives prepend + message, LF -> CRLF, dot-stuffed;
 *  - no message byte is sent unless the socket hooks are in effect;
 *  - with smtp_tls = encrypt no MAIL is sent before TLS is up with a
 *    certificate verified against the CA file or the system store;
 *  - with smtp_auth_user no MAIL is sent before the relay said 235, and
 *    the password goes out only over TLS, or in clear text when
 *    smtp_tls = none says the path to the relay is trusted;
 *  - the password is never logged nor put in a reply text;
 *  - memory does not grow with message size (64 KiB in, 128 KiB out);
 *  - every recipient ends with status 2, 4 or 5 and a one-line reply of
 *    printable ASCII;
 *  - a message is judged by the relay's own reply to its MAIL, also when
 *    the MAIL went ahead of that reply.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>	/* before libesmtp.h: smtp_starttls_set_ctx */
#include <openssl/x509v3.h>

#include <auth-client.h>	/* before libesmtp.h: auth_context_t */
#include <libesmtp.h>

#include "config.h"
#include "log.h"
#include "number.h"
#include "smtp.h"
#include "sockopt.h"

#define IN_CHUNK	((size_t)64 * 1024)
#define ADDR_MAX	512
#define KW_LEN		14	/* "250-PIPELINING", the longest hidden */
#define SECRET_MAX	255	/* libESMTP's PLAIN copies at most this */

/* EHLO keywords the hooks look for. */
#define X_STARTTLS	0x01
#define X_AUTH		0x02
#define X_SIZE		0x04
#define X_8BITMIME	0x08
#define X_PIPELINING	0x10

/* What libESMTP reads for a MAIL sent ahead (see "Pipelining" above). */
#define MAIL_ANSWER	"250 2.1.0 sent ahead\r\n"

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
	unsigned long		 size;	/* announced with SIZE= */
	struct src		 src;
	int			 ahead;	/* MAIL sent ahead: mail is its reply */
	smtp_status_t		 mail;	/* code 0 until the reply came */
	char			 mail_text[SMTP_REPLY_MAX];
};

struct wire {			/* state of the socket hooks */
	int	native;
	int	live;		/* a server byte came through read() */
	int	strip;		/* the next write must start with decoy */
	int	ehlo_done;
	size_t	col;		/* column in the current server line */
	char	kw[KW_LEN];
	char	cur[SMTP_REPLY_MAX], last[SMTP_REPLY_MAX];
	unsigned ext;		/* X_* of the last EHLO reply */
	unsigned long size_limit; /* its SIZE, 0 if none */
	int	tls_up;		/* libESMTP started TLS on the socket */
	int	in_auth;	/* an AUTH exchange is under way */
	int	authed;		/* the relay answered 235 */
	int	ahead;		/* a MAIL just went ahead of its reply */
	int	auth_refused;	/* ... or 535: no second try */
	char	auth_reply[SMTP_REPLY_MAX]; /* its failure reply */
};

struct why {			/* why something was not delivered */
	int	status, code, err;
	char	enh[16];
	char	text[SMTP_REPLY_MAX];
};

struct tls_info {		/* for the log line of a TLS session */
	char	proto[32], cipher[64], untrusted[128];
	int	bits;
};

struct ctx {
	smtp_session_t		 session;
	struct item		*items;
	size_t			 n;
	char			*in, *out;
	char			 relay[SMTP_REPLY_MAX];	/* host[ip]:port */
	const char		*host;
	int			 connected;
	int			 tls;	/* TLS_NONE, TLS_MAY, TLS_ENCRYPT */
	SSL_CTX			*sslctx;
	struct tls_info		 ti;
	auth_context_t		 auth;	/* NULL: no AUTH */
	char			 user[SECRET_MAX + 1];
	char			 pass[SECRET_MAX + 2];	/* wiped after use */
	struct why		 gate;	/* set: the session must not go on */
	struct wire		 w;
	const struct smtp_relay	*rl;
	int			 stop;	/* the caller ended the session */
	struct item		*await;	/* whose MAIL reply is still to come */
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
		dst[o++] = (char)(ch > 0x20 && ch < 0x7f ? ch : '?');
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

/* The reply as the server gave it: "552 5.3.4 text". */
static void
reply_line(char *buf, size_t len, const smtp_status_t *st)
{
	const char	*text = st->text != NULL ? st->text : "";

	if (st->enh_class != 0)
		snprintf(buf, len, "%d %d.%d.%d %s", st->code, st->enh_class,
		    st->enh_subject, st->enh_detail, text);
	else
		snprintf(buf, len, "%d %s", st->code, text);
}

/* A server reply as the decision: class 4 forced for 552 to RCPT. */
static void
why_reply(struct why *y, const smtp_status_t *st, int rcpt)
{
	char	enh[16], line[SMTP_REPLY_MAX];
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
	reply_line(line, sizeof(line), st);
	set_why(y, cls, st->code, enh, "%s", line);
}

/*
 * The session must stop before any MAIL: every message is deferred for
 * this reason.  The first reason given wins; later ones are consequences.
 */
static void
block(struct ctx *c, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
block(struct ctx *c, int code, const char *enh, const char *fmt, ...)
{
	char	buf[SMTP_REPLY_MAX];
	va_list	ap;

	if (c->gate.status != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	set_why(&c->gate, 4, code, enh, "%s", buf);
	c->gate.err = EPROTO;
}

/* A server line "NNN x.y.z text" as libESMTP would have parsed it. */
static void
line_status(const char *line, smtp_status_t *st, char *text, size_t len)
{
	const char	*p, *q;
	uint64_t	 n, sub, det;

	memset(st, 0, sizeof(*st));
	st->text = text;
	text[0] = '\0';
	if (number_scan(line, 999, &n, &p) == -1 || p != line + 3 || n < 200)
		return;		/* not a reply: as if none came */
	st->code = (int)n;
	p += strspn(p, " -");
	if (*p >= '2' && *p <= '5' && p[1] == '.' &&
	    number_scan(p + 2, 999, &sub, &q) == 0 && *q == '.' &&
	    number_scan(q + 1, 999, &det, &q) == 0 &&
	    (*q == ' ' || *q == '\0')) {
		st->enh_class = *p - '0';
		st->enh_subject = (int)sub;
		st->enh_detail = (int)det;
		p = q + strspn(q, " ");
	}
	clean(text, len, p);
}

/*
 * The codes of a server line "NNN x.y.z text", for a deferral: NNN into
 * *code (0 unless the line opens with a reply code) and, when there is an
 * enhanced code, "4.y.z" into enh (len bytes), which is left alone if not.
 */
static void
reply_codes(const char *line, int *code, char *enh, size_t len)
{
	smtp_status_t	st;
	char		text[SMTP_REPLY_MAX];

	line_status(line, &st, text, sizeof(text));
	*code = st.code;
	if (st.enh_class != 0)
		snprintf(enh, len, "4.%d.%d", st.enh_subject, st.enh_detail);
}

/* A server line "NNN x.y.z text" turned into a deferral reason. */
static void
block_reply(struct ctx *c, const char *what, const char *line)
{
	char	enh[16] = "4.7.0";
	int	code;

	reply_codes(line, &code, enh, sizeof(enh));
	block(c, code, enh, "%s: %s", what, line);
}

/*
 * RFC 1870: 552 to MAIL (with SIZE=) means the message is too big, and
 * so does 552 5.3.4 after the data.  That fails the message for good,
 * unlike a 552 to RCPT (RFC 5321: too many recipients, temporary).
 */
static int
too_big(const smtp_status_t *st, int at_mail)
{
	int	is534 = st->enh_class == 5 && st->enh_subject == 3 &&
		    st->enh_detail == 4;

	return st->code == 552 && (is534 || (at_mail && st->enh_class == 0));
}

static void
why_too_big(struct why *y, const smtp_status_t *st, unsigned long size,
    unsigned long limit)
{
	char	lim[48] = "", line[SMTP_REPLY_MAX];

	if (limit > 0)
		snprintf(lim, sizeof(lim), ", limit %lu", limit);
	reply_line(line, sizeof(line), st);
	set_why(y, 5, st->code, "5.3.4", "message too big for relay (%lu "
	    "bytes%s): %s", size, lim, line);
}

/* The decision a MAIL (at_mail) or end-of-data reply makes. */
static void
why_msg_reply(struct why *y, const smtp_status_t *st, int at_mail,
    const struct item *it, const struct wire *w)
{
	if (too_big(st, at_mail))
		why_too_big(y, st, it->size, w->size_limit);
	else
		why_reply(y, st, 0);
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
	    s->msg->insert_at > s->off &&
	    (size_t)(s->msg->insert_at - s->off) < IN_CHUNK)
		n = (size_t)(s->msg->insert_at - s->off);
	if (s->msg->end > 0 && s->off >= s->msg->end)
		return 0;	/* the known end: no pread to find it */
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

/*
 * The hooks run on the SMTP plaintext, before libESMTP sees a reply and
 * before a command leaves (sockopt.c).  They get the ctx as argument.
 */

/* Whether the line so far (kw, col + 1 bytes) ends the EHLO keyword. */
static int
is_keyword(const char *kw, size_t col, const char *name)
{
	size_t	n = strlen(name);

	return col == 4 + n - 1 && memcmp(kw, "250", 3) == 0 &&
	    (kw[3] == '-' || kw[3] == ' ') && strncasecmp(kw + 4, name, n) == 0;
}

/*
 * An EHLO keyword libESMTP must not see, just completed: CHUNKING (see
 * the top), and PIPELINING when smtp_pipelining = no says the relay
 * mishandles it; libESMTP then sends one command at a time.
 */
static int
hidden_keyword(const struct ctx *c)
{
	const struct wire	*w = &c->w;

	if (w->ehlo_done || w->col >= KW_LEN)
		return 0;
	return (!w->native && is_keyword(w->kw, w->col, "CHUNKING")) ||
	    (c->rl->no_pipelining && is_keyword(w->kw, w->col, "PIPELINING"));
}

/* One "250-KEYWORD params" line of the EHLO reply. */
static void
ehlo_keyword(struct wire *w, const char *line)
{
	static const struct {
		const char	*kw;
		unsigned	 bit;
	} known[] = {
		{ "STARTTLS", X_STARTTLS }, { "AUTH", X_AUTH },
		{ "SIZE", X_SIZE }, { "8BITMIME", X_8BITMIME },
		{ "PIPELINING", X_PIPELINING },
	};
	const char	*kw = line + 4;
	size_t		 i, n = strcspn(kw, " =\r\n");
	uint64_t	 limit;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i].kw) != n ||
		    strncasecmp(kw, known[i].kw, n) != 0)
			continue;
		w->ext |= known[i].bit;
		/* "SIZE" alone, or with no number, states no limit. */
		if (known[i].bit == X_SIZE)
			w->size_limit = number_scan(kw + n + strspn(kw + n,
			    " \t"), ULONG_MAX, &limit, NULL) == 0 ?
			    (unsigned long)limit : 0;
	}
}

/*
 * The EHLO reply is complete.  libESMTP quits a session if a message
 * asks for BODY=8BITMIME and the relay does not offer it, so the 8-bit
 * messages are marked only now, and only once no STARTTLS (which brings
 * a new EHLO reply) is to follow.  libESMTP reads the marks when it
 * writes MAIL, after this.
 */
static void
ehlo_done(struct ctx *c)
{
	size_t	i;

	if (c->tls != TLS_NONE && (c->w.ext & X_STARTTLS) && !c->w.tls_up)
		return;
	if (!(c->w.ext & X_8BITMIME))
		return;
	for (i = 0; i < c->n; i++)
		if (c->items[i].m != NULL && c->items[i].src.msg->eightbit)
			(void)smtp_8bitmime_set_body(c->items[i].m,
			    E8bitmime_8BITMIME);
}

/* The end of an AUTH exchange: 235, or the refusal kept as a reason. */
static void
auth_reply(struct wire *w, const char *line)
{
	if (line[3] != ' ' || strncmp(line, "334", 3) == 0)
		return;		/* continuation, or a challenge */
	w->in_auth = 0;
	if (strncmp(line, "235", 3) == 0) {
		w->authed = 1;
		return;
	}
	snprintf(w->auth_reply, sizeof(w->auth_reply), "%s", line);
	w->auth_refused = strncmp(line, "535", 3) == 0;
}

static void
end_line(struct ctx *c)
{
	struct wire	*w = &c->w;

	w->cur[w->col < sizeof(w->cur) ? w->col : sizeof(w->cur) - 1] = '\0';
	w->cur[strcspn(w->cur, "\r\n")] = '\0';
	memcpy(w->last, w->cur, sizeof(w->last));
	if (w->in_auth && w->col >= 4)
		auth_reply(w, w->cur);
	else if (!w->ehlo_done && w->col >= 4 &&
	    strncmp(w->cur, "250", 3) == 0) {
		ehlo_keyword(w, w->cur);
		if (w->cur[3] == ' ') {		/* last line of the reply */
			w->ehlo_done = 1;
			ehlo_done(c);
		}
	}
	w->col = 0;
}

/* Keep the last server line, read the EHLO reply, hide keywords. */
static void
rx_hook(void *arg, char *buf, size_t len)
{
	struct ctx	*c = arg;
	struct wire	*w = &c->w;
	size_t		 i;

	w->live = 1;
	for (i = 0; i < len; i++) {
		if (w->col < KW_LEN)
			w->kw[w->col] = buf[i];
		if (hidden_keyword(c))
			buf[i] = 'X';	/* "CHUNKINX": an unknown keyword */
		if (w->col < sizeof(w->cur) - 1)
			w->cur[w->col] = buf[i];
		w->col++;
		if (buf[i] == '\n')
			end_line(c);
	}
}

static int
begins(const char *buf, size_t len, const char *cmd)
{
	size_t	n = strlen(cmd);

	return len >= n && strncasecmp(buf, cmd, n) == 0;
}

/* A MAIL command at the start of a line of what is being written. */
static int
has_mail(const char *buf, size_t len)
{
	const char	*p = buf, *end = buf + len;

	while (p < end) {
		if (begins(p, (size_t)(end - p), "MAIL FROM:"))
			return 1;
		if ((p = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return 0;
		p++;
	}
	return 0;
}

/* The password leaves in clear text only if smtp_tls = none says so. */
static int
auth_allowed(const struct ctx *c)
{
	return c->w.tls_up || c->tls == TLS_NONE;
}

static ssize_t
gate_auth(struct ctx *c)
{
	if (!auth_allowed(c)) {
		block(c, 0, "4.7.0", "AUTH not attempted: the relay did not "
		    "offer STARTTLS, and the password is not sent in clear "
		    "text unless smtp_tls = none");
		return -1;
	}
	if (c->w.auth_refused) {	/* one 535 per session is enough */
		block_reply(c, "authentication failed", c->w.auth_reply);
		return -1;
	}
	c->w.in_auth = 1;	/* idempotent: a retried write sets it again */
	return 0;
}

/* Why the first MAIL of the session must wait, if it must. */
static ssize_t
gate_mail(struct ctx *c)
{
	if (c->tls == TLS_ENCRYPT && !c->w.tls_up)
		block(c, 0, "4.7.4", "TLS required but not offered by relay");
	else if (c->auth == NULL || c->w.authed)
		return 0;
	else if (c->w.auth_reply[0] != '\0')
		block_reply(c, "authentication failed", c->w.auth_reply);
	else if (!(c->w.ext & X_AUTH))
		block(c, 0, "4.7.0", "authentication required (smtp_auth_user)"
		    " but relay offers no AUTH");
	else
		block(c, 0, "4.7.0", "authentication required (smtp_auth_user)"
		    " but relay offers no mechanism libESMTP can use");
	return -1;
}

/*
 * A MAIL command written on its own, with no reply due, to a relay that
 * offers PIPELINING: it may go ahead of its reply (see the top).
 */
static int
mail_alone(const struct ctx *c, const char *buf, size_t len)
{
	return (c->w.ext & X_PIPELINING) && !c->w.native && c->w.col == 0 &&
	    begins(buf, len, "MAIL FROM:") &&
	    memchr(buf, '\n', len) == buf + len - 1;
}

static ssize_t
tx_hook(void *arg, const char *buf, size_t len)
{
	struct ctx	*c = arg;
	struct wire	*w = &c->w;

	if (c->stop)
		return -1;	/* after the transaction the caller ended on */
	if (w->strip) {
		if (len >= DECOY_LEN && memcmp(buf, decoy, DECOY_LEN) == 0)
			return (ssize_t)DECOY_LEN;
		return -1;
	}
	/* Both gates stay open once open, so the data phase (which
	   comes after MAIL) is never looked at. */
	if (c->auth != NULL && !w->authed && begins(buf, len, "AUTH "))
		return gate_auth(c);
	if ((c->tls == TLS_ENCRYPT && !w->tls_up) ||
	    (c->auth != NULL && !w->authed)) {
		if (has_mail(buf, len) && gate_mail(c) == -1)
			return -1;
	}
	if (mail_alone(c, buf, len) && sockopt_answer(MAIL_ANSWER) == 0)
		w->ahead = 1;
	return 0;
}

static void
txdone_hook(void *arg, size_t dropped)
{
	struct ctx	*c = arg;

	if (dropped > 0)
		c->w.strip = 0;
}

/* The relay's own reply to a MAIL that went ahead of it. */
static void
answered_hook(void *arg, const char *line)
{
	struct ctx	*c = arg;
	struct item	*it = c->await;

	c->await = NULL;
	if (it != NULL)
		line_status(line, &it->mail, it->mail_text,
		    sizeof(it->mail_text));
}

/* libESMTP took MAIL_ANSWER for message m: its real reply is to come. */
static void
mail_went_ahead(struct ctx *c, smtp_message_t m)
{
	size_t	i;

	if (!c->w.ahead)
		return;
	c->w.ahead = 0;
	for (i = 0; i < c->n; i++)
		if (c->items[i].m == m) {
			c->items[i].ahead = 1;
			c->await = &c->items[i];
		}
}

/* The relay's reply to the MAIL of it: libESMTP's, or the real one. */
static const smtp_status_t *
mail_status(const struct item *it)
{
	return it->ahead ? &it->mail : smtp_reverse_path_status(it->m);
}

/*
 * RFC 3207: after the handshake the relay's extensions are those of a
 * new EHLO reply, which now comes over TLS (through SSL_read, so the
 * rx hook still hides CHUNKING in it).  SNI for a relay given by name.
 */
static void
tls_hook(void *arg, void *ssl)
{
	struct ctx	*c = arg;
	struct in_addr	 a4;

	c->w.tls_up = 1;
	c->w.ehlo_done = 0;
	c->w.ext = 0;
	c->w.size_limit = 0;
	c->w.col = 0;
	if (inet_pton(AF_INET, c->host, &a4) != 1)
		(void)SSL_set_tlsext_host_name((SSL *)ssl, c->host);
}

/* ---- STARTTLS and AUTH ---------------------------------------------- */

/*
 * A certificate problem: with smtp_tls = may it is noted and the session
 * goes on (TLS that is not verified is still better than none, which is
 * what may accepts anyway); with encrypt the session stops.
 */
static int
cert_ok(struct ctx *c, const char *problem)
{
	if (c->tls == TLS_MAY) {
		if (c->ti.untrusted[0] == '\0')
			snprintf(c->ti.untrusted, sizeof(c->ti.untrusted),
			    "%s", problem);
		return 1;
	}
	block(c, 0, "4.7.5", "TLS certificate of relay not trusted: %s",
	    problem);
	return 0;
}

static int msg_outcome(const struct ctx *, struct item *,
    const struct why *);
static void format_relay(struct ctx *, const struct sockopt_stats *);

/*
 * A transaction has ended: its outcome goes to the caller now, so that
 * it is recorded before the next one (a crash then repeats at most the
 * transaction in flight).
 */
static void
message_sent(struct ctx *c, smtp_message_t m)
{
	struct sockopt_stats st;
	struct smtp_msg	*msg;
	struct why	 cut;
	size_t		 i;

	for (i = 0; i < c->n && c->items[i].m != m; i++)
		continue;
	if (i == c->n || c->rl->done == NULL)
		return;
	sockopt_stats(&st);
	format_relay(c, &st);
	set_why(&cut, 4, 0, "4.4.2", "transaction with %s not finished",
	    c->relay);
	msg = c->items[i].src.msg;
	(void)msg_outcome(c, &c->items[i], &cut);
	msg->reported = 1;
	if (c->rl->done(msg, c->relay, c->rl->done_arg) != 0)
		c->stop = 1;
}

/*
 * libESMTP's events: whether a TLS session may go on (varargs per
 * event), and the end of each transaction.
 */
static void
event_cb(smtp_session_t session, int ev, void *arg, ...)
{
	struct ctx	*c = arg;
	va_list		 ap;
	long		 vfy;
	int		*ok;
	SSL		*ssl;

	(void)session;
	va_start(ap, arg);
	switch (ev) {
	case SMTP_EV_EXTNA_STARTTLS:
		block(c, 0, "4.7.4", "TLS required but not offered by relay");
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE:
		vfy = va_arg(ap, long);
		ok = va_arg(ap, int *);
		*ok = cert_ok(c, X509_verify_cert_error_string(vfy));
		break;
	case SMTP_EV_NO_PEER_CERTIFICATE:
		ok = va_arg(ap, int *);
		*ok = cert_ok(c, "no certificate");
		break;
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		/* libESMTP matches DNS names only; OpenSSL has checked the
		   name or address already (see setup_tls): trust it. */
		ok = va_arg(ap, int *);
		(void)va_arg(ap, char *);
		ssl = va_arg(ap, SSL *);
		*ok = SSL_get_verify_result(ssl) == X509_V_OK ||
		    cert_ok(c, "name does not match");
		break;
	case SMTP_EV_WEAK_CIPHER:
		(void)va_arg(ap, int);
		ok = va_arg(ap, int *);
		*ok = cert_ok(c, "weak cipher");
		break;
	case SMTP_EV_MESSAGESENT:
		message_sent(c, va_arg(ap, smtp_message_t));
		break;
	case SMTP_EV_MAILSTATUS:
		(void)va_arg(ap, const char *);
		mail_went_ahead(c, va_arg(ap, smtp_message_t));
		break;
	case SMTP_EV_STARTTLS_OK:
		ssl = va_arg(ap, SSL *);
		snprintf(c->ti.proto, sizeof(c->ti.proto), "%s",
		    SSL_get_version(ssl));
		snprintf(c->ti.cipher, sizeof(c->ti.cipher), "%s",
		    va_arg(ap, const char *));
		c->ti.bits = va_arg(ap, int);
		break;
	default:
		break;
	}
	va_end(ap);
}

static void
ssl_error(char *buf, size_t len)
{
	unsigned long	e = ERR_get_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

/* The relay's certificate must chain to the CA file (or the system's
   store) and name the relay: OpenSSL checks both in the handshake. */
static int
load_trust(struct ctx *c, const struct smtp_relay *rl)
{
	X509_VERIFY_PARAM	*vp = SSL_CTX_get0_param(c->sslctx);
	struct in_addr		 a4;
	char			 err[160];
	int			 ok;

	if (rl->tls_ca_file != NULL && *rl->tls_ca_file != '\0')
		ok = SSL_CTX_load_verify_locations(c->sslctx, rl->tls_ca_file,
		    NULL);
	else
		ok = SSL_CTX_set_default_verify_paths(c->sslctx);
	if (ok && inet_pton(AF_INET, rl->host, &a4) == 1)
		ok = X509_VERIFY_PARAM_set1_ip_asc(vp, rl->host);
	else if (ok)
		ok = X509_VERIFY_PARAM_set1_host(vp, rl->host, 0);
	if (ok)
		return 0;
	ssl_error(err, sizeof(err));
	log_msg(LOG_ERR, NULL, "smtp_tls_ca_file %s: %s", rl->tls_ca_file !=
	    NULL ? rl->tls_ca_file : "(system store)", err);
	set_why(&c->gate, 4, 0, "4.7.5", "local error: cannot load the TLS "
	    "CA certificates: %s", err);
	return -1;
}

/*
 * libESMTP looks for a client certificate for the relay under
 * $XDG_CONFIG_DIR, else $HOME/.config, and gives up on TLS ("Client
 * error") if that lookup fails with anything but ENOENT -- as it does
 * with EACCES when listqd, started as root, runs as the service user
 * with HOME=/root.  listq presents no client certificate: point the
 * lookup where nothing can be found.
 */
static void
no_client_cert(void)
{
	static int	done;

	if (!done && setenv("XDG_CONFIG_DIR", "/nonexistent/listq", 1) == 0)
		done = 1;
}

/*
 * The handshake itself does not verify (SSL_VERIFY_NONE): libESMTP
 * checks the result right after it and asks event_cb, so a refusal
 * says why, and no command is sent over an unverified connection
 * unless smtp_tls = may.
 */
static int
setup_tls(struct ctx *c, const struct smtp_relay *rl)
{
	c->tls = rl->tls;
	if (c->tls != TLS_MAY && c->tls != TLS_ENCRYPT) {
		/* smtp_tls = none: the smarthost is on a trusted path. */
		c->tls = TLS_NONE;
		(void)smtp_starttls_enable(c->session, Starttls_DISABLED);
		return 0;
	}
	no_client_cert();
	ERR_clear_error();	/* what is queued later is this session's */
	if ((c->sslctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if (load_trust(c, rl) == -1)
		return -1;
	if (!smtp_starttls_set_ctx(c->session, c->sslctx) ||
	    !smtp_starttls_enable(c->session, c->tls == TLS_ENCRYPT ?
	    Starttls_REQUIRED : Starttls_ENABLED)) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static int
password_error(struct ctx *c, const char *path, const char *what)
{
	log_msg(LOG_ERR, NULL, "smtp_auth_password_file %s: %s; mail "
	    "deferred", path, what);
	set_why(&c->gate, 4, 0, "4.7.0", "local error: smtp_auth_password_file"
	    " %s: %s", path, what);
	return -1;
}

/*
 * The password: the first line of the file, read at each session so a
 * change needs no reload.  The file must be readable by the service
 * user only.  Neither its content nor its length is ever logged.
 */
static int
read_password(struct ctx *c, const char *path)
{
	struct stat	sb;
	char		what[96];
	ssize_t		n;
	int		fd;

	if (path == NULL || *path == '\0')
		return password_error(c, "(unset)", "smtp_auth_user needs it");
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK)) == -1)
		return password_error(c, path, strerror(errno));
	if (fstat(fd, &sb) == -1) {
		close(fd);
		return password_error(c, path, strerror(errno));
	}
	if (!S_ISREG(sb.st_mode) || (sb.st_mode & (S_IRWXG | S_IRWXO))) {
		close(fd);
		snprintf(what, sizeof(what), "not a regular file of mode "
		    "0600 or 0400 (mode %04o)", (unsigned)(sb.st_mode & 07777));
		return password_error(c, path, what);
	}
	n = read(fd, c->pass, sizeof(c->pass) - 1);
	close(fd);
	c->pass[n > 0 ? n : 0] = '\0';
	c->pass[strcspn(c->pass, "\r\n")] = '\0';
	if (n < 0)
		return password_error(c, path, strerror(errno));
	if (strlen(c->pass) > SECRET_MAX)
		return password_error(c, path, "password longer than 255 bytes");
	if (c->pass[0] == '\0')
		return password_error(c, path, "no password on its first line");
	return 0;
}

/* libESMTP's SASL plugins ask here for the user name and password. */
static int
interact(auth_client_request_t req, char **result, int fields, void *arg)
{
	struct ctx	*c = arg;
	int		 i;

	if (!auth_allowed(c))
		return 0;	/* the tx gate explains why */
	for (i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = c->user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = c->pass;
		else
			return 0;	/* realm and the like: not ours */
	}
	return 1;
}

/*
 * AUTH with the first mechanism of the relay's list that libESMTP has a
 * plugin for (Debian: PLAIN, LOGIN, CRAM-MD5 in esmtp-plugins-6.2.0);
 * libESMTP sends AUTH only if the relay offers it.  The plaintext ones
 * are enabled here; the tx gate keeps every AUTH off connections without
 * TLS unless smtp_tls = none.
 */
static int
setup_auth(struct ctx *c, const struct smtp_relay *rl)
{
	static int	inited;

	if (rl->auth_user == NULL || *rl->auth_user == '\0')
		return 0;
	if (strlen(rl->auth_user) > SECRET_MAX) {
		set_why(&c->gate, 4, 0, "4.7.0", "local error: smtp_auth_user "
		    "longer than 255 bytes");
		return -1;
	}
	snprintf(c->user, sizeof(c->user), "%s", rl->auth_user);
	if (read_password(c, rl->auth_password_file) == -1)
		return -1;
	if (!inited) {
		auth_client_init();
		inited = 1;
	}
	if ((c->auth = auth_create_context()) == NULL ||
	    !auth_set_mechanism_flags(c->auth, AUTH_PLUGIN_PLAIN, 0) ||
	    !auth_set_interact_cb(c->auth, interact, c) ||
	    !smtp_auth_set_context(c->session, c->auth)) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/*
 * One line per TLS session, as Postfix logs it; a handshake that did not
 * complete (libESMTP says only "Client error") becomes the reason.
 */
static void
log_tls(struct ctx *c)
{
	char	err[160];

	if (c->w.tls_up && c->ti.proto[0] == '\0') {
		ssl_error(err, sizeof(err));
		block(c, 0, "4.7.5", "TLS handshake with relay failed: %s",
		    err);
	}
	if (c->ti.proto[0] == '\0')
		return;
	if (c->ti.untrusted[0] != '\0')
		log_msg(LOG_INFO, NULL, "Untrusted TLS connection established "
		    "to %s: %s with cipher %s (%d bits); certificate: %s",
		    c->relay, c->ti.proto, c->ti.cipher, c->ti.bits,
		    c->ti.untrusted);
	else
		log_msg(LOG_INFO, NULL, "Verified TLS connection established "
		    "to %s: %s with cipher %s (%d bits)", c->relay,
		    c->ti.proto, c->ti.cipher, c->ti.bits);
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
	c->rl = rl;
	if ((c->session = smtp_create_session()) == NULL ||
	    !smtp_set_server(c->session, hostport) ||
	    !smtp_set_eventcb(c->session, event_cb, c) ||
	    (rl->helo != NULL && *rl->helo != '\0' &&
	    !smtp_set_hostname(c->session, rl->helo))) {
		errno = ENOMEM;
		return -1;
	}
	if (setup_tls(c, rl) == -1 || setup_auth(c, rl) == -1)
		return -1;
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

/* For SIZE=: the caller's figure, else prepend + the rest of the file. */
static unsigned long
size_estimate(const struct smtp_msg *m, off_t start)
{
	struct stat	sb;
	unsigned long	n = m->prepend != NULL ? strlen(m->prepend) : 0;

	if (m->size > 0)
		return (unsigned long)m->size;
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
	else if ((it->src.start = m->start > 0 ? m->start :
	    lseek(m->fd, 0, SEEK_CUR)) == -1)
		set_why(&y, 4, 0, "4.3.0", "local error: spool file: %s",
		    strerror(errno));
	else
		y.status = 0;
	if (y.status != 0) {
		fail_rcpts(m, &y);
		put_msg(m, 4, y.text);
		return 0;
	}
	if ((it->r = calloc(m->nrcpts + 1, sizeof(smtp_recipient_t))) == NULL)
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
	/* BODY=8BITMIME is set once the relay has offered it: ehlo_done(). */
	it->size = size_estimate(m, it->src.start);
	if ((it->m = smtp_add_message(c->session)) == NULL ||
	    !smtp_set_reverse_path(it->m, m->sender) ||
	    !smtp_set_messagecb(it->m, msg_cb, &it->src) ||
	    !smtp_size_set_estimate(it->m, it->size))
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
	int	code;

	reply_codes(c->w.last, &code, enh, sizeof(enh));
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

	if (c->gate.status != 0)	/* TLS or AUTH stopped it */
		*y = c->gate;
	else if (!st->connected && st->connect_errno != 0) {
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
		if (is_421(mail_status(it), 0, y))
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
rcpt_outcome(const struct ctx *c, const struct item *it,
    const smtp_status_t *rs, const struct why *cut, struct why *y)
{
	const smtp_status_t	*ds = smtp_message_transfer_status(it->m);

	if (rs->code != 0 && rs->code / 100 != 2)
		why_reply(y, rs, 1);		/* refused at RCPT */
	else if (rs->code != 0 && final(ds))	/* DATA or end-of-data reply */
		why_msg_reply(y, ds, 0, it, &c->w);
	else
		*y = *cut;		/* never tried, or no end-of-data reply */
}

/*
 * MAIL refused, never tried, or the spool file failed: all alike.
 * Returns 1 when it decided the message, 2 when the session's end (cut)
 * did.
 */
static int
whole_msg(const struct ctx *c, struct item *it, const struct why *cut)
{
	const smtp_status_t	*ms = mail_status(it);
	const smtp_status_t	*ds = smtp_message_transfer_status(it->m);
	struct why		 y;
	int			 rv = 1;

	if (it->src.err != 0 && !final(ds))
		set_why(&y, 4, 0, "4.3.0", "local error reading message: %s",
		    strerror(it->src.err));
	else if (ms->code == 0) {
		y = *cut;
		rv = 2;
	} else if (ms->code / 100 != 2)
		why_msg_reply(&y, ms, 1, it, &c->w);
	else
		return 0;
	fail_rcpts(it->src.msg, &y);
	put_msg(it->src.msg, y.status, y.text);
	return rv;
}

/* Returns 1 if the session ended before the transaction was over. */
static int
msg_outcome(const struct ctx *c, struct item *it, const struct why *cut)
{
	struct smtp_msg		*m = it->src.msg;
	const smtp_status_t	*ds = smtp_message_transfer_status(it->m);
	struct why		 y;
	size_t			 i, ok = 0, tmp = 0;
	int			 r, early = 0;

	if ((r = whole_msg(c, it, cut)) != 0)
		return r == 2;
	for (i = 0; i < m->nrcpts; i++) {
		if (it->r[i] == NULL)
			continue;	/* refused before sending */
		rcpt_outcome(c, it, smtp_recipient_status(it->r[i]), cut, &y);
		put_rcpt(&m->rcpts[i], &y);
		ok += smtp_recipient_status(it->r[i])->code / 100 == 2;
		tmp += y.status == 4;
		early |= smtp_recipient_status(it->r[i])->code == 0;
	}
	if (ok > 0 && final(ds))
		why_msg_reply(&y, ds, 0, it, &c->w);
	else if (ok > 0) {
		y = *cut;
		early = 1;
	} else
		set_why(&y, tmp > 0 ? 4 : 5, 0, "", "no recipient accepted");
	put_msg(m, y.status, y.text);
	return early;
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

/*
 * After a session that ended early, the messages the relay never saw
 * (see smtp.h).  The last one it answered is in flight unless over;
 * then the next one is, unless a 421 closed the session or the caller
 * stopped it (that MAIL never left).  With none answered, the first is
 * in flight.  Any later one is untried.
 */
static void
mark_untried(struct ctx *c)
{
	const smtp_status_t	*ms;
	struct why		 y;
	size_t			 i, last = c->n;
	int			 next_sent;

	for (i = 0; i < c->n; i++)
		if (c->items[i].m != NULL &&
		    mail_status(&c->items[i])->code != 0)
			last = i;
	if (last == c->n)
		next_sent = !c->stop;
	else {
		ms = mail_status(&c->items[last]);
		next_sent = !c->stop && !find_421(c, &y) &&
		    (ms->code / 100 != 2 || c->items[last].src.msg->reported ||
		    final(smtp_message_transfer_status(c->items[last].m)));
	}
	for (i = last == c->n ? 0 : last + 1; i < c->n; i++) {
		if (c->items[i].m == NULL)
			continue;	/* refused here, never for the relay */
		if (next_sent)
			next_sent = 0;
		else
			c->items[i].src.msg->untried = 1;
	}
}

static int
any_tried(const struct ctx *c)
{
	size_t	i;

	for (i = 0; i < c->n; i++)
		if (c->items[i].m != NULL &&
		    mail_status(&c->items[i])->code != 0)
			return 1;
	return 0;
}

/*
 * Was a session had?  The greeting and EHLO were accepted, and what the
 * configuration requires of TLS and AUTH was had.
 */
static int
session_up(const struct ctx *c)
{
	return c->w.ehlo_done && c->gate.status == 0 &&
	    (c->tls != TLS_ENCRYPT || c->w.tls_up) &&
	    (c->auth == NULL || c->w.authed);
}

/*
 * Run the session and turn libESMTP's statuses into outcomes: -1 no
 * session, 1 the relay ended it early, 0 it ran (see smtp.h).
 */
static int
run(struct ctx *c, const struct smtp_relay *rl)
{
	struct sockopt_hooks	h = { rx_hook, tx_hook, txdone_hook, tls_hook,
				    answered_hook, c };
	struct sockopt_stats	st;
	struct why		y;
	size_t			i;
	int			opts = SOCKOPT_NODELAY | SOCKOPT_QUICKACK;
	int			early = 0;

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
	log_tls(c);
	if (!any_tried(c) && !session_up(c)) {	/* no session was had */
		why_no_session(c, &st, &y);
		fail_all(c, &y);
		errno = y.err;
		return -1;
	}
	why_cut_short(c, &st, &y);
	for (i = 0; i < c->n; i++)
		if (c->items[i].m != NULL && !c->items[i].src.msg->reported)
			early |= msg_outcome(c, &c->items[i], &y);
	mark_untried(c);
	return early && !c->stop;
}

static void
ctx_free(struct ctx *c)
{
	size_t	i;

	if (c->session != NULL)
		smtp_destroy_session(c->session);
	SSL_CTX_free(c->sslctx);	/* the session held its own reference */
	if (c->auth != NULL)
		auth_destroy_context(c->auth);
	explicit_bzero(c->pass, sizeof(c->pass));
	for (i = 0; c->items != NULL && i < c->n; i++)
		free(c->items[i].r);
	free(c->items);
	free(c->in);
	free(c->out);
}

/* Every message deferred for one reason; no session was tried. */
static int
defer_why(struct smtp_msg *msgs, size_t n, int err, const struct why *y)
{
	size_t		i;

	for (i = 0; i < n; i++) {
		fail_rcpts(&msgs[i], y);
		put_msg(&msgs[i], 4, y->text);
	}
	errno = err;
	return -1;
}

static int
defer_all(struct smtp_msg *msgs, size_t n, int err, const char *text)
{
	struct why	y;

	set_why(&y, 4, 0, "4.3.0", "%s", text);
	return defer_why(msgs, n, err, &y);
}

static int
prepare(struct ctx *c, const struct smtp_relay *rl, struct smtp_msg *msgs,
    size_t n, size_t *nsend)
{
	size_t	i, j;
	int	r;

	for (i = 0; i < n; i++) {
		msgs[i].status = msgs[i].untried = 0;
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
	struct why	y;
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
		y = c.gate;
		ctx_free(&c);
		if (y.status != 0)	/* TLS or AUTH setup, said why */
			return defer_why(msgs, n, EPROTO, &y);
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
