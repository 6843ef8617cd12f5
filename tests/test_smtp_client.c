/*
 * SPDX-License-Identifier: ISC
 *
 * listqd's SMTP client (worker/smtp_reply.c, smtp_io.c, smtp_session.c)
 * on its own: its pure parts (reply parsing, the wire form of a message)
 * as unit tests, and sessions driven by this process's poll loop against
 * the test sink and against a scripted relay (a child process that
 * follows a fixed script: replies split across writes, a reply to no
 * command, a relay that reads slowly).
 *
 * Invariants checked: replies are matched to commands in order, also
 * when split anywhere; the message reaches the relay with CRLF line
 * ends, a bare CR made CRLF (no end-of-data look-alike), dot-stuffed
 * under DATA, folded past 998 octets, byte for byte otherwise, in clear
 * text and over TLS; MAIL, the RCPTs and DATA (or BDAT LAST) leave in
 * one write; a recipient is delivered only after the end-of-data 2xx; a
 * 421, a drop, a timeout in any phase or a stray reply defers what is
 * open and ends the session; AUTH goes only over verified TLS.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "smtp_io.h"
#include "smtp_reply.h"
#include "smtp_session.h"

#define PASSWORD	"s3cret-for-the-client-test"

static struct sink S;
static pid_t peer_pid;
static char dir[600];		/* certificates, the scripted relay's files */
static SSL_CTX *ctx;

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	snprintf(dir, sizeof(dir), "%s.client", T.spool);
	mkdir(dir, 0755);
	signal(SIGPIPE, SIG_IGN);
}

static void
teardown(void)
{
	if (peer_pid > 0)
		(void)reap_bounded(peer_pid, 0);
	peer_pid = 0;
	SSL_CTX_free(ctx);
	ctx = NULL;
	daemon_teardown();
}

/* ---- the pure parts ----------------------------------------------- */

Test(smtp_reply, multiline_joined_with_enhanced_code)
{
	struct smtp_reply r;

	smtp_reply_reset(&r);
	cr_assert_eq(smtp_reply_add(&r, "250-mx.example", 14), 0);
	cr_assert_eq(smtp_reply_add(&r, "250-PIPELINING", 14), 0);
	cr_assert_eq(smtp_reply_add(&r, "250 2.1.0 ok", 12), 1);
	cr_assert_eq(r.code, 250);
	cr_assert_str_eq(r.text, "250-mx.example PIPELINING 2.1.0 ok");
	cr_assert_str_eq(r.enh, "");	/* only the first line's counts */
	smtp_reply_reset(&r);
	cr_assert_eq(smtp_reply_add(&r, "550 5.1.1 no such user", 22), 1);
	cr_assert_str_eq(r.enh, "5.1.1");
	smtp_reply_reset(&r);
	cr_assert_eq(smtp_reply_add(&r, "451 5.1.1 wrong class", 21), 1);
	cr_assert_str_eq(r.enh, "", "an enhanced code of another class");
}

Test(smtp_reply, refuses_what_is_not_a_reply)
{
	struct smtp_reply r;

	smtp_reply_reset(&r);
	cr_assert_eq(smtp_reply_add(&r, "hello", 5), -1);
	cr_assert_eq(smtp_reply_add(&r, "25", 2), -1);
	cr_assert_eq(smtp_reply_add(&r, "250x", 4), -1);
	cr_assert_eq(smtp_reply_add(&r, "650 no", 6), -1);
	cr_assert_eq(smtp_reply_add(&r, "250-a", 5), 0);
	cr_assert_eq(smtp_reply_add(&r, "354 b", 5), -1, "code changed");
	cr_assert_eq(smtp_reply_add(&r, "250", 3), 1, "a bare code ends it");
	smtp_reply_reset(&r);
	cr_assert_eq(smtp_reply_add(&r, "250 a\x1b[2Jb\x7f", 11), 1);
	cr_assert_str_eq(r.text, "250 a?[2Jb?");
}

Test(smtp_reply, outcomes)
{
	char enh[16];

	cr_assert_eq(smtp_rcpt_outcome(250), 2);
	cr_assert_eq(smtp_rcpt_outcome(451), 4);
	cr_assert_eq(smtp_rcpt_outcome(550), 5);
	cr_assert_eq(smtp_rcpt_outcome(552), 4, "RFC 5321: 552 to RCPT");
	cr_assert_eq(smtp_msg_outcome(552), 5);
	cr_assert_eq(smtp_msg_outcome(354), 4);
	smtp_enh_of(enh, sizeof(enh), 4, "5.2.2");
	cr_assert_str_eq(enh, "4.0.0");
	smtp_enh_of(enh, sizeof(enh), 5, "5.2.2");
	cr_assert_str_eq(enh, "5.2.2");
}

/* The wire form of in, fed in pieces of step bytes. */
static char *
encode(const char *in, size_t n, int stuff, size_t step, size_t *outlen)
{
	struct smtp_enc e;
	size_t cap = n * 3 + 64, off = 0, take;
	char *out = malloc(cap);

	*outlen = 0;
	smtp_enc_init(&e, stuff);
	while (off < n) {
		take = n - off < step ? n - off : step;
		cr_assert_eq(smtp_enc_run(&e, in + off, take, out, cap, outlen),
		    take);
		off += take;
	}
	smtp_enc_end(&e, out, outlen);
	out[*outlen] = '\0';
	return out;
}

Test(smtp_enc, line_ends_and_dots)
{
	static const char in[] = "a\nb\r\n.c\r.\r\nd\r\r\n..e\n.";
	static const char want[] =
	    "a\r\nb\r\n..c\r\n..\r\nd\r\n\r\n...e\r\n..\r\n";
	size_t len, step;
	char *out;

	for (step = 1; step <= sizeof(in); step++) {
		out = encode(in, sizeof(in) - 1, 1, step, &len);
		cr_assert_str_eq(out, want, "pieces of %zu", step);
		free(out);
	}
	out = encode(in, sizeof(in) - 1, 0, 7, &len);
	cr_assert_str_eq(out, "a\r\nb\r\n.c\r\n.\r\nd\r\n\r\n..e\r\n.\r\n",
	    "BDAT: no stuffing");
	free(out);
}

Test(smtp_enc, smuggling_pattern_never_reaches_the_wire)
{
	/* <CR>.<CR><LF> and <LF>.<LF> must not end the data anywhere. */
	static const char in[] = "x\r.\r\ny\n.\nz\r\n";
	size_t len;
	char *out = encode(in, sizeof(in) - 1, 1, 3, &len);

	cr_assert_str_eq(out, "x\r\n..\r\ny\r\n..\r\nz\r\n");
	cr_assert_null(strstr(out, "\r\n.\r\n"));
	free(out);
}

Test(smtp_enc, long_lines_folded_at_998)
{
	char in[2500], *out, *p, *nl;
	size_t len;

	memset(in, 'x', sizeof(in));
	in[0] = '.';
	out = encode(in, sizeof(in), 1, 100, &len);
	for (p = out; (nl = strstr(p, "\r\n")) != NULL; p = nl + 2)
		cr_assert_leq(nl - p, 998, "a line of %td octets", nl - p);
	cr_assert_eq(strncmp(out + 998, "\r\n ", 3), 0);
	cr_assert_eq(len, 2 + sizeof(in) - 1 + 3 + 3 + 2 - 1 + 1);
	free(out);
}

/* ---- sessions ----------------------------------------------------- */

struct mem {
	const char	*p;
	size_t		 len, off;
};

static ssize_t
mem_read(void *arg, char *buf, size_t len)
{
	struct mem *m = arg;
	size_t n = m->len - m->off < len ? m->len - m->off : len;

	memcpy(buf, m->p + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static void
count_done(struct smtp_txn *t, void *arg)
{
	(void)t;
	(*(int *)arg)++;
}

static int ndone;

static void
conf_init(struct smtp_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->helo = "client.example";
	c->peer = "127.0.0.1";
	c->connect_ms = c->cmd_ms = c->data_ms = 20000;
	c->done = count_done;
	c->done_arg = &ndone;
	ndone = 0;
}

static struct smtp_session *
open_session(const struct smtp_conf *c, int port)
{
	struct sockaddr_in sin;
	struct smtp_session *s;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = smtp_session_new(c, (struct sockaddr *)&sin, sizeof(sin));
	cr_assert_not_null(s);
	return s;
}

/* Polls until the session is idle or closed; bounded. */
static void
until_settled(struct smtp_session **ss, size_t n, int want_done)
{
	size_t i, busy;
	int rounds;

	for (rounds = 0; rounds < 3000; rounds++) {
		for (i = busy = 0; i < n; i++)
			busy += !smtp_session_idle(ss[i]) &&
			    !smtp_session_closed(ss[i]);
		if (busy == 0 && ndone >= want_done)
			return;
		smtp_poll(ss, n, 20);
	}
	cr_assert_fail("sessions did not settle within %d rounds", rounds);
}

static struct smtp_rcpt *
rcpts_of(const char *const *addrs, size_t n)
{
	struct smtp_rcpt *r = calloc(n, sizeof(*r));
	size_t i;

	for (i = 0; i < n; i++)
		r[i].addr = addrs[i];
	return r;
}

/* One transaction of msg to addrs over s; leaves s idle or closed. */
static void
send_one(struct smtp_session *s, struct smtp_txn *t, struct mem *m,
    const char *msg, const char *const *addrs, size_t n)
{
	int before;

	memset(t, 0, sizeof(*t));
	memset(m, 0, sizeof(*m));
	m->p = msg;
	m->len = strlen(msg);
	t->sender = "list-bounces@example.org";
	t->rcpts = rcpts_of(addrs, n);
	t->nrcpts = n;
	t->size = (off_t)m->len;
	t->read = mem_read;
	t->read_arg = m;
	until_settled(&s, 1, 0);
	cr_assert(smtp_session_idle(s), "no session: %s",
	    smtp_session_error(s));
	before = ndone;
	cr_assert_eq(smtp_session_start(s, t), 0);
	until_settled(&s, 1, before + 1);
	cr_assert_eq(ndone, before + 1, "done called once");
}

/* The sink's record of its first transaction, whole. */
static char *
first_record(void)
{
	char path[700];
	size_t len;

	cr_assert_eq(sink_count(&S), 1, "the sink recorded %zu",
	    sink_count(&S));
	snprintf(path, sizeof(path), "%s/00000001.eml", S.dir);
	return read_file(path, &len);
}

static const char *const two[] = { "a@example.net", "b@example.net" };
static const char msg1[] = "From: x@example.org\nTo: l@example.org\n"
    "Subject: one\n\nbody\n.dot line\nlast line without end";

/* The sink with these rules, and one transaction of msg to two. */
static struct smtp_session *
sink_and_send(const char *rules, bool chunking, struct smtp_txn *t,
    struct mem *m, const char *msg)
{
	struct smtp_conf c;
	struct smtp_session *s;

	sink_start(&S, rules, 0, chunking);
	conf_init(&c);
	s = open_session(&c, S.port);
	send_one(s, t, m, msg, two, 2);
	return s;
}

Test(smtp_client, pipelined_bdat_delivers_byte_for_byte, .init = setup,
    .fini = teardown)
{
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	char *rec;

	s = sink_and_send(NULL, true, &t, &m, msg1);
	cr_assert_eq(t.rcpts[0].status, 2, "%s", t.rcpts[0].reply);
	cr_assert_eq(t.rcpts[1].status, 2);
	cr_assert_eq(t.rcpts[1].code, 250);
	cr_assert_str_eq(t.rcpts[1].enh, "2.0.0");
	cr_assert_not_null(strstr(t.rcpts[0].reply, "queued as 00000001"));
	rec = first_record();
	cr_assert_not_null(strstr(rec, "X-Sink-Pipelined: yes\n"));
	cr_assert_not_null(strstr(rec, "X-Sink-Mail-Params: SIZE=88\n"));
	cr_assert_not_null(strstr(rec, "\n\nFrom: x@example.org\r\nTo: "
	    "l@example.org\r\nSubject: one\r\n\r\nbody\r\n.dot line\r\n"
	    "last line without end\r\n"), "%s", rec);
	free(rec);
	smtp_session_quit(s);
	until_settled(&s, 1, 0);
	cr_assert(smtp_session_closed(s));
	cr_assert_str_eq(smtp_session_error(s), "");
	smtp_session_free(s);
	free(t.rcpts);
}

Test(smtp_client, data_stuffs_dots_and_refused_rcpt_keeps_reply,
    .init = setup, .fini = teardown)
{
	static const char *const three[] = { "a@example.net",
	    "bad@example.net", "c@example.net" };
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	struct txn *got;

	sink_start(&S, "rcpt bad@* 550 5.1.1 no such user\n", 0, false);
	conf_init(&c);
	s = open_session(&c, S.port);
	send_one(s, &t, &m, "Subject: s\n\n.\nx\r.\r\ny\n", three, 3);
	cr_assert_eq(t.rcpts[0].status, 2);
	cr_assert_eq(t.rcpts[1].status, 5);
	cr_assert_eq(t.rcpts[1].code, 550);
	cr_assert_str_eq(t.rcpts[1].enh, "5.1.1");
	cr_assert_str_eq(t.rcpts[1].reply, "550 5.1.1 no such user");
	cr_assert_eq(t.rcpts[2].status, 2);
	cr_assert_eq(sink_load(&S, &got), 1);
	cr_assert_eq(got[0].nrcpt, 2);
	/* the sink unstuffs: what it holds is the message, CRLF'd */
	cr_assert_str_eq(got[0].data, "Subject: s\r\n\r\n.\r\nx\r\n.\r\n"
	    "y\r\n");
	txns_free(got, 1);
	smtp_session_free(s);
	free(t.rcpts);
}

Test(smtp_client, several_transactions_and_sessions_in_one_loop,
    .init = setup, .fini = teardown)
{
	struct smtp_conf c;
	struct smtp_session *ss[4];
	struct smtp_txn t[4][3];
	struct mem m[4][3];
	size_t i, k, started;
	int round;

	sink_start(&S, NULL, 0, true);
	conf_init(&c);
	for (i = 0; i < 4; i++)
		ss[i] = open_session(&c, S.port);
	for (i = 0; i < 4; i++)
		for (k = 0; k < 3; k++) {
			memset(&t[i][k], 0, sizeof(t[i][k]));
			m[i][k].p = msg1;
			m[i][k].len = strlen(msg1);
			m[i][k].off = 0;
			t[i][k].sender = "";
			t[i][k].rcpts = rcpts_of(two, 2);
			t[i][k].nrcpts = 2;
			t[i][k].read = mem_read;
			t[i][k].read_arg = &m[i][k];
		}
	/* each session takes its next transaction once the last is done */
	for (started = 0, round = 0; ndone < 12 && round < 3000; round++) {
		for (i = 0; i < 4; i++) {
			k = started >> (i * 2) & 3;
			if (k < 3 && smtp_session_idle(ss[i])) {
				cr_assert_eq(smtp_session_start(ss[i],
				    &t[i][k]), 0);
				started += (size_t)1 << (i * 2);
			}
		}
		smtp_poll(ss, 4, 20);
	}
	cr_assert_eq(ndone, 12);
	cr_assert_eq(sink_count(&S), 12);
	for (i = 0; i < 4; i++) {
		for (k = 0; k < 3; k++) {
			cr_assert_eq(t[i][k].rcpts[0].status, 2);
			free(t[i][k].rcpts);
		}
		smtp_session_free(ss[i]);
	}
}

Test(smtp_client, a_421_inside_the_pipelined_group_defers_all,
    .init = setup, .fini = teardown)
{
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;

	s = sink_and_send("close-once RCPT 421\n", false, &t, &m, msg1);
	cr_assert_eq(t.rcpts[0].status, 4);
	cr_assert_eq(t.rcpts[1].status, 4);
	cr_assert_eq(t.rcpts[0].code, 421);
	cr_assert_eq(t.rcpts[1].code, 421, "the 421 ends it for all: %s",
	    t.rcpts[1].reply);
	cr_assert_str_eq(t.rcpts[1].reply, "421 4.3.2 closing");
	cr_assert_str_eq(t.rcpts[0].enh, "4.3.2");
	cr_assert(t.sent);
	cr_assert(smtp_session_closed(s));
	cr_assert_eq(sink_count(&S), 0);
	smtp_session_free(s);
	free(t.rcpts);
}

Test(smtp_client, a_close_in_the_middle_of_data_defers,
    .init = setup, .fini = teardown)
{
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	char *big = malloc(600001);

	memset(big, 'y', 600000);
	big[600000] = '\0';
	big[10] = big[5000] = '\n';
	s = sink_and_send("drop DATA 100000\n", false, &t, &m, big);
	cr_assert_eq(t.rcpts[0].status, 4);
	cr_assert_eq(t.rcpts[0].code, 0);
	cr_assert_str_eq(t.rcpts[0].enh, "4.4.2");
	cr_assert_not_null(strstr(t.rcpts[0].reply, "lost connection"),
	    "%s", t.rcpts[0].reply);
	cr_assert_eq(sink_count(&S), 0);
	smtp_session_free(s);
	free(t.rcpts);
	free(big);
}

/* Each phase stalled past a short timeout: what the deferral says. */
Test(smtp_client, each_phase_times_out, .init = setup, .fini = teardown,
    .timeout = 120)
{
	static const struct { const char *rule, *says; int in_txn; } ph[] = {
		{ "stall GREET 60\n", "greeting", 0 },
		{ "stall EHLO 60\n", "EHLO", 0 },
		{ "stall MAIL 60\n", "MAIL", 1 },
		{ "stall RCPT 60\n", "RCPT", 1 },
		{ "stall DATA 60\n", "DATA", 1 },
		{ "stall DOT 60\n", "end of data", 1 },
	};
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	char want[64];
	size_t i;

	for (i = 0; i < sizeof(ph) / sizeof(ph[0]); i++) {
		sink_start(&S, ph[i].rule, 0, false);
		conf_init(&c);
		c.cmd_ms = c.data_ms = 300;
		s = open_session(&c, S.port);
		snprintf(want, sizeof(want), "timed out while waiting for %s",
		    ph[i].says);
		if (!ph[i].in_txn) {
			until_settled(&s, 1, 0);
			cr_assert(smtp_session_closed(s), "%s", ph[i].rule);
			cr_assert_str_eq(smtp_session_error(s), want);
		} else {
			send_one(s, &t, &m, msg1, two, 2);
			cr_assert_eq(t.rcpts[1].status, 4, "%s", ph[i].rule);
			cr_assert_str_eq(t.rcpts[1].reply, want);
			cr_assert_str_eq(t.rcpts[1].enh, "4.4.2");
			free(t.rcpts);
		}
		smtp_session_free(s);
		sink_stop(&S);
	}
}

Test(smtp_client, helo_when_ehlo_is_refused, .init = setup,
    .fini = teardown)
{
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	char *rec;

	s = sink_and_send("cmd EHLO 502 5.5.1 no ESMTP here\n", true, &t, &m, msg1);
	cr_assert_eq(t.rcpts[0].status, 2, "%s", t.rcpts[0].reply);
	rec = first_record();
	cr_assert_not_null(strstr(rec, "X-Sink-Pipelined: no\n"),
	    "no PIPELINING after HELO: one command at a time");
	cr_assert_null(strstr(rec, "X-Sink-Mail-Params"));
	free(rec);
	smtp_session_free(s);
	free(t.rcpts);
}

/* ---- TLS and AUTH ------------------------------------------------- */

static const char *
cert_path(const char *name, const char *ext)
{
	static char buf[4][700];
	static int n;

	n = (n + 1) % 4;
	snprintf(buf[n], sizeof(buf[n]), "%s/%s.%s", dir, name, ext);
	return buf[n];
}

static void
tls_sink(const char *auth)
{
	static char pair[1500];
	const char *argv[] = { "-T", pair, auth ? "-A" : NULL, auth, NULL };

	cert_make(dir, "relay");
	snprintf(pair, sizeof(pair), "%s:%s", cert_path("relay", "crt"),
	    cert_path("relay", "key"));
	sink_start_args(&S, NULL, 0, true, argv);
}

static void
tls_conf(struct smtp_conf *c, int mode, const char *ca)
{
	char why[256];

	conf_init(c);
	ctx = smtp_tls_context(cert_path(ca, "crt"), why, sizeof(why));
	cr_assert_not_null(ctx, "%s", why);
	c->tls = mode;
	c->tls_ctx = ctx;
}

Test(smtp_tls, verified_session_carries_a_big_message_and_auth,
    .init = setup, .fini = teardown)
{
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	struct txn *got;
	const char *desc, *why;
	char *big, *rec;
	size_t i, n = 1500000;
	int verified;

	big = malloc(n + 1);
	for (i = 0; i < n; i++)		/* partial TLS writes on the way */
		big[i] = (char)(i % 77 == 76 ? '\n' : 'a' + (int)(i % 26));
	big[n] = '\0';
	tls_sink("listq:" PASSWORD);
	cert_make(dir, "relay");
	tls_conf(&c, SMTP_TLS_VERIFY, "relay");
	c.auth_user = "listq";
	c.auth_password = PASSWORD;
	s = open_session(&c, S.port);
	send_one(s, &t, &m, big, two, 2);
	cr_assert_eq(t.rcpts[0].status, 2, "%s", t.rcpts[0].reply);
	desc = smtp_session_tls(s, &verified, &why);
	cr_assert(verified, "%s", why);
	cr_assert_not_null(strstr(desc, "TLSv1."), "%s", desc);
	rec = first_record();
	cr_assert_not_null(strstr(rec, "X-Sink-TLS: yes\n"));
	cr_assert_not_null(strstr(rec, "X-Sink-Auth: listq\n"));
	free(rec);
	cr_assert_eq(sink_load(&S, &got), 1);
	/* every LF now CRLF, and a line end added after the last line */
	cr_assert_eq(got[0].len, n + n / 77 + 2, "%zu", got[0].len);
	txns_free(got, 1);
	smtp_session_free(s);
	free(t.rcpts);
	free(big);
}

Test(smtp_tls, verify_refuses_a_certificate_of_another, .init = setup,
    .fini = teardown)
{
	struct smtp_conf c;
	struct smtp_session *s;

	tls_sink(NULL);
	cert_make(dir, "other");
	tls_conf(&c, SMTP_TLS_VERIFY, "other");
	s = open_session(&c, S.port);
	until_settled(&s, 1, 0);
	cr_assert(smtp_session_closed(s));
	cr_assert_not_null(strstr(smtp_session_error(s),
	    "TLS certificate of relay not trusted"), "%s",
	    smtp_session_error(s));
	smtp_session_free(s);
}

Test(smtp_tls, no_password_over_unverified_tls, .init = setup,
    .fini = teardown)
{
	struct smtp_conf c;
	struct smtp_session *s;
	const char *why;
	int verified;

	tls_sink("listq:" PASSWORD);
	cert_make(dir, "other");
	tls_conf(&c, SMTP_TLS_MAY, "other");
	c.auth_user = "listq";
	c.auth_password = PASSWORD;
	s = open_session(&c, S.port);
	until_settled(&s, 1, 0);
	cr_assert(smtp_session_closed(s));
	cr_assert_str_eq(smtp_session_error(s), "AUTH not attempted: the "
	    "relay's certificate is not verified");
	(void)smtp_session_tls(s, &verified, &why);
	cr_assert_not(verified);
	smtp_session_free(s);
}

Test(smtp_tls, encrypt_takes_any_certificate_may_goes_on, .init = setup,
    .fini = teardown)
{
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	char *rec;

	tls_sink(NULL);
	cert_make(dir, "other");
	tls_conf(&c, SMTP_TLS_ENCRYPT, "other");
	s = open_session(&c, S.port);
	send_one(s, &t, &m, msg1, two, 2);
	cr_assert_eq(t.rcpts[0].status, 2, "%s", t.rcpts[0].reply);
	rec = first_record();
	cr_assert_not_null(strstr(rec, "X-Sink-TLS: yes\n"));
	free(rec);
	smtp_session_free(s);
	free(t.rcpts);
}

Test(smtp_tls, encrypt_needs_starttls, .init = setup, .fini = teardown)
{
	struct smtp_conf c;
	struct smtp_session *s;

	sink_start(&S, NULL, 0, false);
	cert_make(dir, "relay");
	tls_conf(&c, SMTP_TLS_ENCRYPT, "relay");
	s = open_session(&c, S.port);
	until_settled(&s, 1, 0);
	cr_assert(smtp_session_closed(s));
	cr_assert_str_eq(smtp_session_error(s),
	    "TLS required but not offered by relay");
	smtp_session_free(s);
}

/* ---- a scripted relay ---------------------------------------------- */

/*
 * The script: "<text" writes text, "=ms" pauses, ">n" reads until n more
 * lines have come, "." reads to the end of the data and "~" does the
 * same slowly (small reads with pauses); what came after DATA's 354 is
 * written to dir/data.  The child gives up after 60 s.
 */
/* Reads until n more line ends, or the end of data; keeps data. */
static int
peer_read(int fd, int lines, int slow, FILE *keep)
{
	char buf[4096];
	static char tail[5];
	ssize_t r, i;
	int got = 0;

	for (;;) {
		if ((r = read(fd, buf, slow ? 512 : sizeof(buf))) <= 0)
			return -1;
		for (i = 0; i < r; i++) {
			if (keep != NULL)
				fputc(buf[i], keep);
			memmove(tail, tail + 1, 4);
			tail[4] = buf[i];
			if (lines > 0 && buf[i] == '\n' && ++got == lines)
				return i + 1 == r ? 0 : -1;
			if (lines == 0 && memcmp(tail, "\r\n.\r\n", 5) == 0)
				return 0;
		}
		if (slow)
			usleep(2000);
	}
}

static int
peer_run(int ls, const char *const *script)
{
	char path[700];
	FILE *keep;
	int fd;

	if ((fd = accept(ls, NULL, NULL)) == -1)
		return 71;
	snprintf(path, sizeof(path), "%s/data", dir);
	if ((keep = fopen(path, "w")) == NULL)
		return 73;
	for (; *script != NULL; script++) {
		const char *a = *script + 1;

		if (**script == '<' && write(fd, a, strlen(a)) !=
		    (ssize_t)strlen(a))
			return 74;
		if (**script == '=')
			usleep((useconds_t)strtoul(a, NULL, 10) * 1000);
		if (**script == '>' && peer_read(fd,
		    (int)strtol(a, NULL, 10), 0, NULL) == -1)
			return 75;
		if ((**script == '.' || **script == '~') &&
		    peer_read(fd, 0, **script == '~', keep) == -1)
			return 76;
	}
	fclose(keep);
	while (read(fd, path, sizeof(path)) > 0)
		continue;
	return 0;
}

static int
peer_start(const char *const *script)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int ls, small = 4096, one = 1;

	cr_assert_neq(ls = socket(AF_INET, SOCK_STREAM, 0), -1);
	(void)setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(ls, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(ls, 1), 0);
	cr_assert_eq(getsockname(ls, (struct sockaddr *)&sin, &len), 0);
	if ((peer_pid = fork()) == 0) {
		alarm(60);
		_exit(peer_run(ls, script));
	}
	cr_assert_neq(peer_pid, -1);
	close(ls);
	return ntohs(sin.sin_port);
}

/* The greeting and EHLO reply, split inside lines and between them. */
static const char *const split_greeting[] = {
	"<220-relay.example", "=30", "<\r\n220 ready\r\n",
	">1", "<250-relay.example\r\n250-PIPE", "=30",
	"<LINING\r\n250-SIZ", "=30", "<E 100000\r\n250 8BITMIME\r", "=30",
	"<\n",
};

Test(smtp_peer, replies_split_across_reads_and_one_write_per_group,
    .init = setup, .fini = teardown)
{
	const char *script[32];
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	size_t n = 0, i;
	char path[700], *data;
	size_t len;

	for (i = 0; i < sizeof(split_greeting) / sizeof(*split_greeting); i++)
		script[n++] = split_greeting[i];
	/* MAIL, both RCPTs and DATA must come before any reply */
	script[n++] = ">4";
	script[n++] = "<250 2.1.0 ok\r\n250 2.1.5 ok\r\n25";
	script[n++] = "=30";
	script[n++] = "<0 2.1.5 ok\r\n354 go\r\n";
	script[n++] = ".";
	script[n++] = "<250-2.0.0 queued\r\n";
	script[n++] = "=30";
	script[n++] = "<250 2.0.0 as 1\r\n";
	script[n] = NULL;
	conf_init(&c);
	c.cmd_ms = c.data_ms = 10000;
	s = open_session(&c, peer_start(script));
	send_one(s, &t, &m, "Subject: x\n\n.\r.\r\nend\n", two, 2);
	cr_assert_eq(t.rcpts[0].status, 2, "%s", t.rcpts[0].reply);
	cr_assert_eq(t.rcpts[1].status, 2);
	cr_assert_str_eq(t.rcpts[1].reply, "250-2.0.0 queued 2.0.0 as 1");
	smtp_session_free(s);	/* the relay reads to the end */
	s = NULL;
	cr_assert_eq(reap_bounded(peer_pid, 10000), 0);
	peer_pid = 0;
	snprintf(path, sizeof(path), "%s/data", dir);
	data = read_file(path, &len);
	cr_assert_str_eq(data, "Subject: x\r\n\r\n..\r\n..\r\nend\r\n"
	    ".\r\n", "the wire bytes");
	free(data);
	smtp_session_free(s);
	free(t.rcpts);
}

Test(smtp_peer, a_reply_to_no_command_ends_the_session, .init = setup,
    .fini = teardown)
{
	const char *const script[] = {
		"<220 ready\r\n", ">1", "<250-r\r\n250 PIPELINING\r\n",
		">3", "<250 ok\r\n250 ok\r\n354 go\r\n", ".",
		"<250 2.0.0 queued\r\n250 2.0.0 and this answers nothing\r\n",
		NULL,
	};
	static const char *const one[] = { "a@example.net" };
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	int round;

	conf_init(&c);
	s = open_session(&c, peer_start(script));
	send_one(s, &t, &m, "Subject: x\n\nbody\n", one, 1);
	cr_assert_eq(t.rcpts[0].status, 2, "the answered transaction");
	for (round = 0; round < 500 && !smtp_session_closed(s); round++)
		smtp_poll(&s, 1, 20);
	cr_assert(smtp_session_closed(s));
	cr_assert_str_eq(smtp_session_error(s),
	    "reply to no command: 250 2.0.0 and this answers nothing");
	cr_assert_eq(smtp_session_start(s, &t), -1, "no more transactions");
	smtp_session_free(s);
	free(t.rcpts);
}

Test(smtp_peer, a_relay_that_reads_slowly_gets_it_all, .init = setup,
    .fini = teardown, .timeout = 60)
{
	const char *const script[] = {
		"<220 ready\r\n", ">1", "<250-r\r\n250 PIPELINING\r\n",
		">3", "<250 ok\r\n250 ok\r\n354 go\r\n", "~",
		"<250 2.0.0 queued\r\n", NULL,
	};
	static const char *const one[] = { "a@example.net" };
	struct smtp_conf c;
	struct smtp_session *s;
	struct smtp_txn t;
	struct mem m;
	char path[700], *data, *big;
	size_t len, i, n = 400000;

	big = malloc(n + 1);
	for (i = 0; i < n; i++)
		big[i] = (char)(i % 100 == 99 ? '\n' :
		    (i % 100 == 0 ? '.' : 'z'));
	big[n] = '\0';
	conf_init(&c);
	c.data_ms = 5000;	/* each write moves: no timeout */
	s = open_session(&c, peer_start(script));
	send_one(s, &t, &m, big, one, 1);
	cr_assert_eq(t.rcpts[0].status, 2, "%s", t.rcpts[0].reply);
	smtp_session_free(s);	/* the relay reads to the end */
	s = NULL;
	cr_assert_eq(reap_bounded(peer_pid, 10000), 0);
	peer_pid = 0;
	snprintf(path, sizeof(path), "%s/data", dir);
	data = read_file(path, &len);
	cr_assert_eq(len, n + n / 100 + n / 100 + 3, "stuffed, CRLF, dot");
	free(data);
	smtp_session_free(s);
	free(t.rcpts);
	free(big);
}
