/*
 * SPDX-License-Identifier: ISC
 *
 * smtp_session.c -- the protocol state machine of listqd's SMTP client.
 *
 * A session runs through connect, greeting, EHLO (HELO when EHLO gets a
 * 5xx), STARTTLS and a second EHLO, AUTH, then transactions.  Every
 * command sent is pushed on a queue of expected replies; every complete
 * reply pops the oldest entry and is handled for that command, so
 * replies to a pipelined group (RFC 2920: MAIL, every RCPT and DATA in
 * one write; with CHUNKING, RFC 3030, MAIL, the RCPTs and the BDAT
 * chunks, the last one marked LAST) are matched in order.  A reply with
 * no command waiting is a protocol error that ends the session: the
 * relay and the client no longer agree on what a reply answers.
 *
 * Invariants:
 *  - a transaction is started only on an idle session and conf->done
 *    reports it exactly once, before the session takes another, so that
 *    the caller records each outcome before the next transaction;
 *  - a recipient is delivered (2) only when its RCPT got 2xx and the end
 *    of the data got 2xx; a refused RCPT keeps its own reply; everything
 *    still open when the session ends (421, a drop, a timeout, a protocol
 *    error) is deferred (4) with the reason;
 *  - the message goes out as the source gives it, line ends made CRLF
 *    (a bare CR too, so no end-of-data look-alike reaches the relay),
 *    dot-stuffed under DATA, lines over 998 octets folded;
 *  - no MAIL is sent before the TLS and AUTH policy of the configuration
 *    is met; the password goes out only over verified TLS or in clear
 *    text with SMTP_TLS_NONE, and is never put in a reply text;
 *  - memory is bounded: a chunk of body (64 KiB) is encoded only when
 *    the output has drained below that much.
 * Failure modes: the session ends with smtp_session_error() set, and the
 * transaction in flight (if any) reported deferred.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "smtp_io.h"
#include "smtp_reply.h"
#include "smtp_session.h"

#define CHUNK		((size_t)64 * 1024)	/* body encoded per step */
#define SRC_BUF		((size_t)16 * 1024)	/* source read per step */
#define LINE_LIMIT	998		/* RFC 5321 4.5.3.1.6, CRLF excluded */

enum phase {
	P_CONNECT, P_SETUP, P_HANDSHAKE, P_READY, P_TXN, P_BODY, P_QUIT,
	P_CLOSED
};

enum cmd {
	C_GREET, C_EHLO, C_HELO, C_STARTTLS, C_AUTH, C_AUTH_PASS, C_MAIL,
	C_RCPT, C_DATA, C_DOT, C_BDAT, C_BDAT_LAST, C_RSET, C_QUIT
};

struct expect {
	enum cmd	cmd;
	size_t		rcpt;		/* C_RCPT: which */
	unsigned	gen;		/* the transaction it belongs to */
};

enum ext {
	X_PIPELINING = 1, X_CHUNKING = 2, X_STARTTLS = 4, X_SIZE = 8,
	X_8BITMIME = 16, X_AUTH_PLAIN = 32, X_AUTH_LOGIN = 64, X_AUTH = 128
};

struct smtp_session {
	struct smtp_conf conf;
	struct smtp_io	 io;
	enum phase	 phase;
	unsigned	 ext;		/* enum ext offered by the relay */
	unsigned long	 size_limit;	/* its SIZE */
	unsigned long	 pipelined;	/* transactions sent as one group */
	int		 ready_once;
	struct expect	*q;
	size_t		 qhead, qlen, qcap;
	struct smtp_reply reply;	/* the reply being read */
	long long	 deadline;
	const char	*waiting;	/* for a timeout's text */
	char		 error[SMTP_REPLY_MAX];
	int		 err;		/* errno-style cause of the end */
	/* the transaction in flight */
	struct smtp_txn	*t;
	unsigned	 gen;		/* counts transactions */
	int		 mail_ok;	/* MAIL got 2xx (-1 refused, 0 open) */
	size_t		 accepted;	/* RCPTs with 2xx */
	size_t		 next_rcpt;	/* not pipelining: the next to send */
	int		 bdat;		/* BDAT instead of DATA */
	int		 body_done;	/* the whole body is queued */
	int		 data_failed;	/* a BDAT chunk was refused */
	struct smtp_enc	 enc;
	char		*chunk;
	char		 tls_desc[96];
	struct sockaddr_storage peer;
	socklen_t	 peerlen;
};

long long
smtp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
ms_or(int ms, int dflt)
{
	return ms > 0 ? ms : dflt;
}

/* The deadline for what the session now waits for. */
static void
arm(struct smtp_session *s, const char *what, int data)
{
	int ms = data ? ms_or(s->conf.data_ms, 600000) :
	    ms_or(s->conf.cmd_ms, 300000);

	s->waiting = what;
	s->deadline = smtp_now_ms() + ms;
}

static const char *const cmd_name[] = {
	[C_GREET] = "greeting", [C_EHLO] = "EHLO", [C_HELO] = "HELO",
	[C_STARTTLS] = "STARTTLS", [C_AUTH] = "AUTH", [C_AUTH_PASS] = "AUTH",
	[C_MAIL] = "MAIL", [C_RCPT] = "RCPT", [C_DATA] = "DATA",
	[C_DOT] = "end of data", [C_BDAT] = "BDAT",
	[C_BDAT_LAST] = "end of data", [C_RSET] = "RSET", [C_QUIT] = "QUIT",
};

/* ---- the message body encoder ------------------------------------ */

void
smtp_enc_init(struct smtp_enc *e, int stuff)
{
	memset(e, 0, sizeof(*e));
	e->stuff = stuff;
}

static void
enc_newline(struct smtp_enc *e, char *out, size_t *o)
{
	out[(*o)++] = '\r';
	out[(*o)++] = '\n';
	e->col = 0;
}

static void
enc_char(struct smtp_enc *e, char c, char *out, size_t *o)
{
	if (e->col >= LINE_LIMIT) {	/* Postfix's smtp_line_length_limit */
		enc_newline(e, out, o);
		out[(*o)++] = ' ';
		e->col = 1;
	}
	if (e->col == 0 && c == '.' && e->stuff) {
		out[(*o)++] = '.';
		e->col++;
	}
	out[(*o)++] = c;
	e->col++;
}

size_t
smtp_enc_run(struct smtp_enc *e, const char *in, size_t n, char *out,
    size_t cap, size_t *outlen)
{
	size_t i, o = *outlen;

	for (i = 0; i < n && o + SMTP_ENC_SLACK <= cap; i++) {
		if (e->cr) {
			e->cr = 0;
			enc_newline(e, out, &o);
			if (in[i] == '\n')
				continue;
		}
		if (in[i] == '\r')
			e->cr = 1;
		else if (in[i] == '\n')
			enc_newline(e, out, &o);
		else
			enc_char(e, in[i], out, &o);
	}
	*outlen = o;
	return i;
}

void
smtp_enc_end(struct smtp_enc *e, char *out, size_t *outlen)
{
	if (e->cr || e->col > 0)
		enc_newline(e, out, outlen);
	e->cr = 0;
}

/* ---- sending commands --------------------------------------------- */

static int
expect(struct smtp_session *s, enum cmd c, size_t rcpt)
{
	struct expect *nq;

	if (s->qhead > 0 && s->qhead == s->qlen)
		s->qhead = s->qlen = 0;
	if (s->qlen == s->qcap) {
		nq = reallocarray(s->q, s->qcap + 16, sizeof(*nq));
		if (nq == NULL)
			return -1;
		s->q = nq;
		s->qcap += 16;
	}
	s->q[s->qlen].cmd = c;
	s->q[s->qlen].gen = s->gen;
	s->q[s->qlen++].rcpt = rcpt;
	return 0;
}

static size_t
pending_replies(const struct smtp_session *s)
{
	return s->qlen - s->qhead;
}

/*
 * After progress (a reply read, bytes written): a fresh deadline for
 * what comes next, the data timeout while the body goes out and for the
 * reply to its end.
 */
static void
rearm(struct smtp_session *s)
{
	enum cmd c;

	if (s->phase == P_BODY) {
		arm(s, "message data", 1);
		return;
	}
	if (pending_replies(s) == 0) {
		if (s->phase == P_READY)
			s->deadline = 0;
		return;
	}
	c = s->q[s->qhead].cmd;
	arm(s, cmd_name[c], c == C_DOT || c == C_BDAT_LAST);
}

static void fail(struct smtp_session *, int code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Queues one command line and the reply it waits for. */
static int
command(struct smtp_session *s, enum cmd c, size_t rcpt, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

static int
command(struct smtp_session *s, enum cmd c, size_t rcpt, const char *fmt,
    ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		fail(s, 0, "4.3.0", "command too long");
		return -1;
	}
	line[n] = '\r';
	line[n + 1] = '\n';
	if (smtp_io_put(&s->io, line, (size_t)n + 2) == -1 ||
	    expect(s, c, rcpt) == -1) {
		fail(s, 0, "4.3.0", "out of memory");
		return -1;
	}
	return 0;
}

/* ---- the end of a session or a transaction ------------------------ */

static void
rcpt_set(struct smtp_rcpt *r, int status, int code, const char *enh,
    const char *text)
{
	r->status = status;
	r->code = code;
	smtp_enh_of(r->enh, sizeof(r->enh), status, enh);
	snprintf(r->reply, sizeof(r->reply), "%s", text);
}

/* Reports the transaction in flight and makes the session idle. */
static void
txn_finish(struct smtp_session *s)
{
	struct smtp_txn *t = s->t;

	if (t == NULL)
		return;
	s->t = NULL;
	if (s->phase == P_TXN || s->phase == P_BODY)
		s->phase = P_READY;
	free(s->chunk);
	s->chunk = NULL;
	if (s->conf.done != NULL)
		s->conf.done(t, s->conf.done_arg);
}

/* Every recipient still open gets this outcome. */
static void
txn_settle(struct smtp_session *s, int status, int code, const char *enh,
    const char *text)
{
	size_t i;

	for (i = 0; i < s->t->nrcpts; i++)
		if (s->t->rcpts[i].status == 0 || s->t->rcpts[i].status == 2)
			rcpt_set(&s->t->rcpts[i], status, code, enh, text);
	s->t->status = status;
	snprintf(s->t->reply, sizeof(s->t->reply), "%s", text);
}

static void
fail(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;

	if (s->phase == P_CLOSED)
		return;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	if (s->err == 0)
		s->err = code == 421 ? ECONNRESET : EPROTO;
	/* Closed first: done sees a transaction the session cut short. */
	s->phase = P_CLOSED;
	smtp_io_close(&s->io);
	if (s->t != NULL) {
		txn_settle(s, 4, code, enh, s->error);
		txn_finish(s);
	}
}

/* fail() with the errno-style cause set. */
#define fail_err(s, e, ...)	do {					\
	(s)->err = (e);							\
	fail((s), __VA_ARGS__);						\
} while (0)

/* ---- the transaction ---------------------------------------------- */

/* An address that cannot inject a command: no controls, no <>. */
static int
addr_ok(const char *a, int empty_ok)
{
	if ((*a == '\0' && !empty_ok) || strlen(a) > 512)
		return 0;
	for (; *a != '\0'; a++)
		if ((unsigned char)*a < 0x21 || *a == 0x7f || *a == '<' ||
		    *a == '>')
			return 0;
	return 1;
}

static int
send_mail(struct smtp_session *s)
{
	char params[64] = "";
	const struct smtp_txn *t = s->t;

	if ((s->ext & X_SIZE) && t->size > 0)
		snprintf(params, sizeof(params), " SIZE=%lld",
		    (long long)t->size);
	if ((s->ext & X_8BITMIME) && t->eightbit)
		strlcat(params, " BODY=8BITMIME", sizeof(params));
	return command(s, C_MAIL, 0, "MAIL FROM:<%s>%s", t->sender, params);
}

static int
send_rcpt(struct smtp_session *s, size_t i)
{
	return command(s, C_RCPT, i, "RCPT TO:<%s>", s->t->rcpts[i].addr);
}

/* The next recipient with a good address from i on, or nrcpts. */
static size_t
next_good(const struct smtp_session *s, size_t i)
{
	while (i < s->t->nrcpts && s->t->rcpts[i].status != 0)
		i++;
	return i;
}

static int pipelining(const struct smtp_session *s);
static int body_step(struct smtp_session *s);

/* DATA, or the first BDAT chunk, after the envelope. */
static int
start_data(struct smtp_session *s)
{
	if (!s->bdat)
		return command(s, C_DATA, 0, "DATA");
	s->phase = P_BODY;
	return body_step(s);
}

int
smtp_session_start(struct smtp_session *s, struct smtp_txn *t)
{
	size_t i;

	if (!smtp_session_idle(s)) {
		errno = EBUSY;
		return -1;
	}
	s->t = t;
	s->gen++;
	t->status = 0;
	t->sent = 0;
	t->mail_code = 0;
	t->reply[0] = '\0';
	s->mail_ok = 0;
	s->accepted = 0;
	s->body_done = s->data_failed = 0;
	s->bdat = pipelining(s) && (s->ext & X_CHUNKING) &&
	    !s->conf.no_chunking;
	smtp_enc_init(&s->enc, !s->bdat);
	for (i = 0; i < t->nrcpts; i++) {
		t->rcpts[i].status = 0;
		if (!addr_ok(t->rcpts[i].addr, 0))
			rcpt_set(&t->rcpts[i], 5, 0, "5.1.3",
			    "invalid recipient address");
	}
	if (!addr_ok(t->sender, 1) || next_good(s, 0) == t->nrcpts) {
		txn_settle(s, 5, 0, "5.1.7", addr_ok(t->sender, 1) ?
		    "no valid recipient" : "invalid envelope sender address");
		txn_finish(s);
		return 0;
	}
	s->phase = P_TXN;
	arm(s, "MAIL", 0);
	if (send_mail(s) == -1)
		return 0;
	t->sent = 1;
	if (!pipelining(s))
		return 0;
	s->pipelined++;
	for (i = next_good(s, 0); i < t->nrcpts; i = next_good(s, i + 1))
		if (send_rcpt(s, i) == -1)
			return 0;
	(void)start_data(s);
	return 0;
}

/* Encodes up to one chunk of the body; -1 when the session failed. */
static int
encode_chunk(struct smtp_session *s, size_t *len)
{
	char src[SRC_BUF];
	ssize_t n;
	size_t used;

	*len = 0;
	if (s->chunk == NULL && (s->chunk = malloc(CHUNK)) == NULL) {
		fail(s, 0, "4.3.0", "out of memory");
		return -1;
	}
	while (*len + SRC_BUF * 3 + SMTP_ENC_SLACK < CHUNK) {
		if ((n = s->t->read(s->t->read_arg, src, sizeof(src))) < 0) {
			fail(s, 0, "4.3.0", "cannot read the message: %s",
			    strerror(errno));
			return -1;
		}
		if (n == 0) {
			smtp_enc_end(&s->enc, s->chunk, len);
			s->body_done = 1;
			return 0;
		}
		for (used = 0; used < (size_t)n; )
			used += smtp_enc_run(&s->enc, src + used,
			    (size_t)n - used, s->chunk, CHUNK, len);
	}
	return 0;
}

/* Queues body while the output is short; the end when it is all in. */
static int
body_step(struct smtp_session *s)
{
	size_t len;

	while (s->phase == P_BODY && !s->body_done &&
	    smtp_io_pending(&s->io) < CHUNK) {
		if (encode_chunk(s, &len) == -1)
			return -1;
		if (s->bdat && command(s, s->body_done ? C_BDAT_LAST : C_BDAT,
		    0, "BDAT %zu%s", len, s->body_done ? " LAST" : "") == -1)
			return -1;
		if (smtp_io_put(&s->io, s->chunk, len) == -1 || (!s->bdat &&
		    s->body_done && (smtp_io_put(&s->io, ".\r\n", 3) == -1 ||
		    expect(s, C_DOT, 0) == -1))) {
			fail(s, 0, "4.3.0", "out of memory");
			return -1;
		}
	}
	if (s->body_done)
		s->phase = P_TXN;
	return 0;
}

/* The final reply: every recipient it was for takes its outcome. */
static void
txn_final(struct smtp_session *s, const struct smtp_reply *r)
{
	int st = smtp_msg_outcome(r->code);

	txn_settle(s, st, r->code, r->enh, r->text);
	txn_finish(s);
}

/* The envelope failed: MAIL refused, or no RCPT accepted. */
static void
txn_envelope_failed(struct smtp_session *s, const struct smtp_reply *r)
{
	if (r != NULL) {
		txn_final(s, r);
		return;
	}
	s->t->status = 5;
	snprintf(s->t->reply, sizeof(s->t->reply), "%s",
	    "no recipient accepted");
	txn_finish(s);
}

/* After the last RCPT reply without pipelining: DATA or give up. */
static void
envelope_done(struct smtp_session *s)
{
	if (s->accepted == 0) {
		(void)command(s, C_RSET, 0, "RSET");
		txn_envelope_failed(s, NULL);
		return;
	}
	(void)start_data(s);
}

static void
on_mail(struct smtp_session *s, const struct smtp_reply *r)
{
	size_t i;

	if (s->t == NULL)
		return;
	s->t->mail_code = r->code;
	s->mail_ok = r->code / 100 == 2 ? 1 : -1;
	if (s->mail_ok == 1) {
		if (!pipelining(s) && (i = next_good(s, 0)) < s->t->nrcpts)
			(void)send_rcpt(s, i);
		return;
	}
	/* Pipelined RCPT and DATA replies still come: they are skipped. */
	txn_final(s, r);
}

static void
on_rcpt(struct smtp_session *s, size_t i, const struct smtp_reply *r)
{
	struct smtp_rcpt *rc;
	size_t next;

	if (s->t == NULL || s->mail_ok != 1)
		return;
	rc = &s->t->rcpts[i];
	if (r->code / 100 == 2) {
		s->accepted++;
		rc->status = 0;		/* open until the end of the data */
	} else
		rcpt_set(rc, smtp_rcpt_outcome(r->code), r->code, r->enh,
		    r->text);
	if (pipelining(s))
		return;
	if ((next = next_good(s, i + 1)) < s->t->nrcpts)
		(void)send_rcpt(s, next);
	else
		envelope_done(s);
}

/* The end of a transaction that sent no data: RSET before the next. */
static void
abandon_data(struct smtp_session *s, const struct smtp_reply *r)
{
	if (s->mail_ok == 1)
		(void)command(s, C_RSET, 0, "RSET");
	if (s->accepted == 0)
		txn_envelope_failed(s, NULL);
	else
		txn_final(s, r);
}

static void
on_data(struct smtp_session *s, const struct smtp_reply *r)
{
	if (s->t == NULL)
		return;
	if (r->code != 354) {
		abandon_data(s, r);
		return;
	}
	if (s->mail_ok != 1 || s->accepted == 0) {
		/* A relay that says 354 with no recipient: end it empty. */
		if (smtp_io_put(&s->io, ".\r\n", 3) == -1 ||
		    expect(s, C_DOT, 0) == -1) {
			fail(s, 0, "4.3.0", "out of memory");
			return;
		}
		txn_envelope_failed(s, NULL);
		return;
	}
	s->phase = P_BODY;
	(void)body_step(s);
}

static void
on_bdat(struct smtp_session *s, int last, const struct smtp_reply *r)
{
	if (s->t == NULL)
		return;
	if (last) {
		if (s->mail_ok != 1 || s->accepted == 0)
			abandon_data(s, r);
		else if (s->data_failed)
			txn_finish(s);
		else
			txn_final(s, r);
		return;
	}
	if (r->code / 100 != 2 && !s->data_failed && s->accepted > 0) {
		s->data_failed = 1;	/* the chunk's reply decides */
		txn_settle(s, smtp_msg_outcome(r->code), r->code, r->enh,
		    r->text);
	}
}

/* ---- setting the session up --------------------------------------- */

static void
ehlo_keyword(struct smtp_session *s, const char *kw, size_t len)
{
	static const struct { const char *name; unsigned bit; } kws[] = {
		{ "PIPELINING", X_PIPELINING }, { "CHUNKING", X_CHUNKING },
		{ "STARTTLS", X_STARTTLS }, { "SIZE", X_SIZE },
		{ "8BITMIME", X_8BITMIME }, { "AUTH", X_AUTH },
	};
	size_t i, n;

	if (len > 5 && strncasecmp(kw, "SIZE ", 5) == 0)
		s->size_limit = strtoul(kw + 5, NULL, 10);
	for (i = 0; i < sizeof(kws) / sizeof(kws[0]); i++) {
		n = strlen(kws[i].name);
		if (len >= n && strncasecmp(kw, kws[i].name, n) == 0 &&
		    (len == n || kw[n] == ' ' || kw[n] == '='))
			s->ext |= kws[i].bit;
	}
	if (!(s->ext & X_AUTH) || strncasecmp(kw, "AUTH", 4) != 0)
		return;
	for (i = 4; i < len; i++) {
		if (len - i >= 6 && strncasecmp(kw + i, " PLAIN", 6) == 0 &&
		    (i + 6 == len || kw[i + 6] == ' '))
			s->ext |= X_AUTH_PLAIN;
		if (len - i >= 6 && strncasecmp(kw + i, " LOGIN", 6) == 0 &&
		    (i + 6 == len || kw[i + 6] == ' '))
			s->ext |= X_AUTH_LOGIN;
	}
}

static int
pipelining(const struct smtp_session *s)
{
	return (s->ext & X_PIPELINING) && !s->conf.no_pipelining;
}

static int
tls_on(const struct smtp_session *s)
{
	return s->io.ssl != NULL;
}

static void
b64(char *out, size_t len, const char *in, size_t n)
{
	if (len < 4 * ((n + 2) / 3) + 1) {
		out[0] = '\0';
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in,
	    (int)n);
}

static void
send_auth(struct smtp_session *s)
{
	char raw[600], enc[820];
	const char *u = s->conf.auth_user, *p = s->conf.auth_password;
	int n;

	if (p == NULL)
		p = "";
	if (s->ext & X_AUTH_PLAIN) {
		n = snprintf(raw, sizeof(raw), "%c%s%c%s", '\0', u, '\0', p);
		if (n < 0 || (size_t)n >= sizeof(raw)) {
			fail(s, 0, "4.7.0", "AUTH credentials too long");
			return;
		}
		b64(enc, sizeof(enc), raw, (size_t)n);
		(void)command(s, C_AUTH, 0, "AUTH PLAIN %s", enc);
	} else {
		b64(enc, sizeof(enc), u, strlen(u));
		(void)command(s, C_AUTH, 0, "AUTH LOGIN %s", enc);
	}
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(enc, sizeof(enc));
	arm(s, "AUTH", 0);
}

/* Why AUTH may not go out now, or NULL when it may. */
static const char *
auth_refusal(const struct smtp_session *s)
{
	if (s->conf.tls == SMTP_TLS_NONE)
		return NULL;
	if (!tls_on(s))
		return "no TLS with the relay";
	if (!s->io.verified)
		return "the relay's certificate is not verified";
	if (!(s->ext & X_AUTH))
		return "the relay offers no AUTH";
	if (!(s->ext & (X_AUTH_PLAIN | X_AUTH_LOGIN)))
		return "the relay offers neither PLAIN nor LOGIN";
	return NULL;
}

static void
become_ready(struct smtp_session *s)
{
	s->phase = P_READY;
	s->ready_once = 1;
	s->waiting = NULL;
}

/* After EHLO or HELO: STARTTLS, AUTH, or ready. */
static void
after_ehlo(struct smtp_session *s)
{
	const char *why;

	if (!tls_on(s) && s->conf.tls != SMTP_TLS_NONE) {
		if (s->ext & X_STARTTLS) {
			(void)command(s, C_STARTTLS, 0, "STARTTLS");
			arm(s, "STARTTLS", 0);
			return;
		}
		if (s->conf.tls != SMTP_TLS_MAY) {
			fail(s, 0, "4.7.4",
			    "TLS required but not offered by relay");
			return;
		}
	}
	if (s->conf.auth_user == NULL) {
		become_ready(s);
		return;
	}
	if (s->conf.tls == SMTP_TLS_NONE && !(s->ext & X_AUTH))
		why = "the relay offers no AUTH";
	else if (s->conf.tls == SMTP_TLS_NONE &&
	    !(s->ext & (X_AUTH_PLAIN | X_AUTH_LOGIN)))
		why = "the relay offers neither PLAIN nor LOGIN";
	else
		why = auth_refusal(s);
	if (why != NULL) {
		fail(s, 0, "4.7.0", "AUTH not attempted: %s", why);
		return;
	}
	send_auth(s);
}

static void
on_ehlo(struct smtp_session *s, enum cmd c, const struct smtp_reply *r)
{
	if (r->code / 100 == 2) {
		after_ehlo(s);
		return;
	}
	if (c == C_EHLO && r->code / 100 == 5) {
		s->ext = 0;
		(void)command(s, C_HELO, 0, "HELO %s", s->conf.helo);
		arm(s, "HELO", 0);
		return;
	}
	fail(s, r->code, r->enh, "%s refused: %s", c == C_EHLO ? "EHLO" :
	    "HELO", r->text);
}

static void
send_ehlo(struct smtp_session *s)
{
	s->ext = 0;
	(void)command(s, C_EHLO, 0, "EHLO %s", s->conf.helo);
	arm(s, "EHLO", 0);
}

static void
on_starttls(struct smtp_session *s, const struct smtp_reply *r)
{
	if (r->code == 220) {
		if (smtp_io_starttls(&s->io, s->conf.tls_ctx,
		    s->conf.peer) == -1) {
			fail(s, 0, "4.7.5", "TLS: %s", s->io.tls_error);
			return;
		}
		s->phase = P_HANDSHAKE;
		arm(s, "TLS handshake", 0);
		return;
	}
	if (s->conf.tls == SMTP_TLS_MAY) {
		s->ext &= ~X_STARTTLS;	/* go on in clear text */
		after_ehlo(s);
		return;
	}
	fail(s, r->code, r->enh, "STARTTLS refused: %s", r->text);
}

static void
handshake_step(struct smtp_session *s)
{
	int r = smtp_io_handshake(&s->io);

	if (r == 1)
		return;
	if (r == -1) {
		fail(s, 0, "4.7.5", "TLS handshake failed: %s",
		    s->io.tls_error);
		return;
	}
	smtp_io_tls_desc(&s->io, s->tls_desc, sizeof(s->tls_desc));
	if (s->conf.tls == SMTP_TLS_VERIFY && !s->io.verified) {
		fail(s, 0, "4.7.5", "TLS certificate of relay not trusted: %s",
		    s->io.tls_error);
		return;
	}
	s->phase = P_SETUP;
	send_ehlo(s);
}

static void
on_auth(struct smtp_session *s, enum cmd c, const struct smtp_reply *r)
{
	char enc[700];
	const char *p = s->conf.auth_password ? s->conf.auth_password : "";

	if (r->code == 235) {
		become_ready(s);
		return;
	}
	if (r->code == 334 && c == C_AUTH && !(s->ext & X_AUTH_PLAIN)) {
		b64(enc, sizeof(enc), p, strlen(p));
		(void)command(s, C_AUTH_PASS, 0, "%s", enc);
		explicit_bzero(enc, sizeof(enc));
		return;
	}
	fail(s, r->code, r->enh, "authentication failed: %s", r->text);
}

/* ---- replies ------------------------------------------------------ */

static void
on_reply(struct smtp_session *s, const struct expect *e,
    const struct smtp_reply *r)
{
	switch (e->cmd) {
	case C_GREET:
		if (r->code / 100 == 2)
			send_ehlo(s);
		else
			fail(s, r->code, r->enh, "refused to talk to me: %s",
			    r->text);
		break;
	case C_EHLO:
	case C_HELO:
		on_ehlo(s, e->cmd, r);
		break;
	case C_STARTTLS:
		on_starttls(s, r);
		break;
	case C_AUTH:
	case C_AUTH_PASS:
		on_auth(s, e->cmd, r);
		break;
	case C_MAIL:
		on_mail(s, r);
		break;
	case C_RCPT:
		on_rcpt(s, e->rcpt, r);
		break;
	case C_DATA:
		on_data(s, r);
		break;
	case C_DOT:
		if (s->t != NULL)
			txn_final(s, r);
		break;
	case C_BDAT:
	case C_BDAT_LAST:
		on_bdat(s, e->cmd == C_BDAT_LAST, r);
		break;
	case C_RSET:
		if (r->code / 100 != 2)
			fail(s, r->code, r->enh, "RSET refused: %s", r->text);
		break;
	case C_QUIT:
		s->phase = P_CLOSED;
		smtp_io_close(&s->io);
		break;
	}
}

/* One complete reply: a 421 ends everything, else its command's turn. */
static void
take_reply(struct smtp_session *s, const struct smtp_reply *r)
{
	struct expect e;

	if (pending_replies(s) == 0) {
		fail(s, 0, "4.5.0", "reply to no command: %s", r->text);
		return;
	}
	e = s->q[s->qhead++];
	if (r->code == 421 && e.cmd != C_QUIT) {
		if (e.cmd == C_MAIL && s->t != NULL && e.gen == s->gen)
			s->t->mail_code = 421;	/* MAIL was answered */
		fail(s, 421, r->enh, "%s", r->text);
		return;
	}
	if (e.cmd >= C_MAIL && e.cmd <= C_RSET && (e.gen != s->gen ||
	    s->t == NULL)) {
		/* A transaction already settled: only a bad RSET matters. */
		if (e.cmd == C_RSET && r->code / 100 != 2)
			fail(s, r->code, r->enh, "RSET refused: %s", r->text);
		rearm(s);
		return;
	}
	on_reply(s, &e, r);
	if (s->phase != P_CLOSED)
		rearm(s);
}

/* The lines that have come in, reply by reply. */
static void
read_lines(struct smtp_session *s)
{
	const char *line;
	size_t len = 0, bl;
	const char *kw;
	int done;

	while (s->phase != P_CLOSED && s->phase != P_HANDSHAKE &&
	    (line = smtp_io_line(&s->io, &len)) != NULL) {
		if ((done = smtp_reply_add(&s->reply, line, len)) == -1) {
			fail(s, 0, "4.5.0", "malformed reply from relay");
			return;
		}
		if (pending_replies(s) > 0 && s->q[s->qhead].cmd == C_EHLO &&
		    s->reply.lines > 1 &&
		    (kw = smtp_reply_body(line, len, &bl)) != NULL)
			ehlo_keyword(s, kw, bl);
		if (done) {
			take_reply(s, &s->reply);
			smtp_reply_reset(&s->reply);
		}
	}
	if (s->phase != P_CLOSED && len == (size_t)-1)
		fail(s, 0, "4.5.0", "reply line too long from relay");
}

/* ---- the poll loop's side ----------------------------------------- */

static void
on_connected(struct smtp_session *s)
{
	if (smtp_io_connected(&s->io) == -1) {
		fail_err(s, errno, 0, "4.4.1", "connect failed: %s",
		    strerror(errno));
		return;
	}
	s->phase = P_SETUP;
	(void)expect(s, C_GREET, 0);
	arm(s, "greeting", 0);
}

static void
lost(struct smtp_session *s, int err)
{
	const char *what = s->waiting ? s->waiting : "reply";

	if (s->io.tls_error[0] != '\0' && err == EPROTO)
		fail_err(s, EPROTO, 0, "4.4.2", "TLS error while waiting for "
		    "%s: %s", what, s->io.tls_error);
	else
		fail_err(s, ECONNRESET, 0, "4.4.2", "lost connection while "
		    "waiting for %s", what);
}

static void
io_step(struct smtp_session *s)
{
	size_t before;
	int r, err;

	if (s->phase == P_HANDSHAKE) {
		handshake_step(s);
		if (s->phase == P_HANDSHAKE || s->phase == P_CLOSED)
			return;
	}
	for (;;) {
		before = smtp_io_pending(&s->io);
		if (smtp_io_flush(&s->io) == -1) {
			lost(s, errno);
			return;
		}
		if (smtp_io_pending(&s->io) < before)
			rearm(s);
		if (s->phase == P_BODY && body_step(s) == -1)
			return;
		if ((r = smtp_io_fill(&s->io)) == -1) {
			err = errno;
			read_lines(s);	/* the relay's last words, e.g. 421 */
			if (s->phase != P_CLOSED)
				lost(s, err);
			return;
		}
		read_lines(s);
		if (s->phase == P_HANDSHAKE) {	/* after 220 to STARTTLS */
			handshake_step(s);
			if (s->phase != P_SETUP)
				return;
			continue;
		}
		if (s->phase == P_CLOSED)
			return;
		if (r == 0 && (smtp_io_pending(&s->io) == 0 ||
		    s->io.want == POLLOUT))
			return;
	}
}

void
smtp_session_handle(struct smtp_session *s, short revents, long long now)
{
	if (s->phase == P_CLOSED)
		return;
	if (revents == 0) {
		if (s->deadline > 0 && now >= s->deadline &&
		    s->phase != P_READY)
			fail_err(s, ETIMEDOUT, 0, "4.4.2", "%s%s",
			    s->phase == P_CONNECT ? "connect timed out" :
			    "timed out while waiting for ", s->phase ==
			    P_CONNECT ? "" : s->waiting ? s->waiting : "reply");
		return;
	}
	if (s->phase == P_CONNECT) {
		on_connected(s);
		if (s->phase == P_CLOSED)
			return;
	}
	io_step(s);
}

int
smtp_session_pollfd(const struct smtp_session *s, struct pollfd *pfd,
    long long *deadline)
{
	if (s->phase == P_CLOSED)
		return 0;
	pfd->fd = s->io.fd;
	pfd->events = (short)s->io.want;
	if (s->phase != P_HANDSHAKE && smtp_io_pending(&s->io) > 0)
		pfd->events |= POLLOUT;
	if (s->phase != P_CONNECT)
		pfd->events |= POLLIN;
	pfd->revents = 0;
	*deadline = s->phase == P_READY && pending_replies(s) == 0 ? 0 :
	    s->deadline;
	return 1;
}

int
smtp_poll(struct smtp_session **ss, size_t n, int max_ms)
{
	struct pollfd pfd[64];
	size_t idx[64], k = 0, i;
	long long dl, soonest = 0, now;
	int r, wait = max_ms;

	for (i = 0; i < n && k < 64; i++)
		if (smtp_session_pollfd(ss[i], &pfd[k], &dl)) {
			if (dl > 0 && (soonest == 0 || dl < soonest))
				soonest = dl;
			idx[k++] = i;
		}
	now = smtp_now_ms();
	if (soonest > 0 && soonest - now < wait)
		wait = soonest > now ? (int)(soonest - now) : 0;
	r = poll(pfd, k, wait);
	now = smtp_now_ms();
	for (i = 0; i < k; i++)
		smtp_session_handle(ss[idx[i]], (short)(r > 0 ?
		    pfd[i].revents : 0), now);
	return r;
}

/* ---- life cycle --------------------------------------------------- */

struct smtp_session *
smtp_session_new(const struct smtp_conf *conf, const struct sockaddr *sa,
    socklen_t len)
{
	struct smtp_session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->conf = *conf;
	if (s->conf.helo == NULL)
		s->conf.helo = "localhost";
	if (s->conf.peer == NULL)
		s->conf.peer = "";
	smtp_io_init(&s->io);
	s->phase = P_CONNECT;
	s->waiting = "connect";
	s->deadline = smtp_now_ms() + ms_or(conf->connect_ms, 30000);
	if (len <= sizeof(s->peer)) {
		memcpy(&s->peer, sa, len);
		s->peerlen = len;
	}
	if (conf->tls != SMTP_TLS_NONE && conf->tls_ctx == NULL) {
		fail(s, 0, "4.7.5", "TLS wanted but no TLS context");
		return s;
	}
	if (smtp_io_connect(&s->io, sa, len) == -1)
		fail_err(s, errno, 0, "4.4.1", "connect failed: %s",
		    strerror(errno));
	return s;
}

int
smtp_session_idle(const struct smtp_session *s)
{
	return s->phase == P_READY && s->t == NULL;
}

int
smtp_session_closed(const struct smtp_session *s)
{
	return s->phase == P_CLOSED;
}

int
smtp_session_ready_once(const struct smtp_session *s)
{
	return s->ready_once;
}

const char *
smtp_session_error(const struct smtp_session *s)
{
	return s->error;
}

int
smtp_session_errno(const struct smtp_session *s)
{
	return s->err;
}

const char *
smtp_session_tls(const struct smtp_session *s, int *verified,
    const char **why)
{
	*verified = s->io.verified;
	*why = s->io.tls_error;
	return s->tls_desc;
}

void
smtp_session_stats(const struct smtp_session *s,
    struct smtp_session_stats *st)
{
	int on = -1;
	socklen_t len = sizeof(on);

	st->size_limit = s->size_limit;
	st->pipelined = s->pipelined;
	st->quickacks = s->io.quickacks;
	if (s->io.fd == -1 || getsockopt(s->io.fd, IPPROTO_TCP, TCP_NODELAY,
	    &on, &len) == -1)
		on = -1;
	st->nodelay = on == -1 ? -1 : on != 0;
}

void
smtp_session_peer(const struct smtp_session *s, char *ip, size_t iplen,
    char *port, size_t portlen)
{
	ip[0] = port[0] = '\0';
	if (s->peerlen > 0)
		(void)getnameinfo((const struct sockaddr *)&s->peer,
		    s->peerlen, ip, (socklen_t)iplen, port, (socklen_t)portlen,
		    NI_NUMERICHOST | NI_NUMERICSERV);
}

void
smtp_session_quit(struct smtp_session *s)
{
	if (!smtp_session_idle(s))
		return;
	if (command(s, C_QUIT, 0, "QUIT") == 0) {
		s->phase = P_QUIT;
		arm(s, "QUIT", 0);
		(void)smtp_io_flush(&s->io);
	}
}

void
smtp_session_abort(struct smtp_session *s, const char *why)
{
	fail(s, 0, "4.4.2", "%s", why);
}

void
smtp_session_free(struct smtp_session *s)
{
	if (s == NULL)
		return;
	smtp_session_abort(s, "session ended");
	free(s->q);
	free(s->chunk);
	free(s);
}
