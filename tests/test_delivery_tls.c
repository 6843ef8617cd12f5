/*
 * SPDX-License-Identifier: ISC
 *
 * STARTTLS, AUTH, SIZE, 8BITMIME and PIPELINING end to end: the wrapper
 * enqueues,
 * listqd delivers into the test sink started with -T (a throw-away
 * certificate made here with the openssl command), -A or -S, and each
 * test reads what the sink recorded (X-Sink-TLS, X-Sink-Auth,
 * X-Sink-Mail-Params, X-Sink-Pipelined, the message bytes) and what
 * listqd logged.
 *
 * Invariants checked: a TLS session delivers the message byte for byte
 * (the decoy is removed from the plaintext, CHUNKING hidden in the EHLO
 * reply that comes over TLS); encrypt never sends a message without a
 * verified TLS session; the password never shows in the log or in the
 * command line of a listqd process, and leaves in clear text only with
 * smtp_tls = none; a MAIL sent ahead of its reply (pipelining) is judged
 * by the relay's own reply to it, never by the 503s that follow a
 * refused MAIL.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"

#define WAIT_MS		30000
#define PASSWORD	"Tr0ub4dor&3-listq"

static struct sink S;
static struct daemon D;
static char dir[600];		/* certificates, the password file */

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&D, 0, sizeof(D));
	snprintf(dir, sizeof(dir), "%s.tls", T.spool);
	mkdir(dir, 0755);
}

static void
teardown(void)
{
	daemon_teardown();
}

static const char *
path(const char *name)
{
	static char buf[4][700];
	static int n;

	n = (n + 1) % 4;
	snprintf(buf[n], sizeof(buf[n]), "%s/%s", dir, name);
	return buf[n];
}

/* A self-signed certificate for 127.0.0.1: NAME.crt and NAME.key. */
static void
make_cert(const char *name)
{
	cert_make(dir, name);
}

/* The sink with STARTTLS (certificate "relay") and more options. */
static void
tls_sink(const char *rules, int port, bool chunking, const char *o1,
    const char *o2)
{
	static char pair[1500];
	const char *argv[] = { "-T", pair, o1, o2, NULL };

	make_cert("relay");
	snprintf(pair, sizeof(pair), "%s:%s", path("relay.crt"),
	    path("relay.key"));
	sink_start_args(&S, rules, port, chunking, argv);
}

/* listqd's configuration: the sink as smarthost, then these lines. */
static void
config(const char *fmt, const char *a, const char *b)
{
	char extra[2048];

	snprintf(extra, sizeof(extra), fmt, a, b);
	daemon_config(&D, S.port, extra);
}

/* The password file as an admin makes it: owned by the service user. */
static void
password_file(const char *password, mode_t mode)
{
	const char *p = path("smtp-password");
	FILE *f;

	unlink(p);
	cr_assert_not_null(f = fopen(p, "w"));
	fprintf(f, "%s\n", password);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(p, mode), 0);
	if (T.root)
		cr_assert_eq(chown(p, T.svc_uid, T.svc_gid), 0);
}

static void
post(const char *list, const char *msg)
{
	struct result r;

	cr_assert_eq(run_simple("post", list, msg, strlen(msg), &r), 0,
	    "enqueue: %s", r.err);
}

static bool
delivered(void *n)
{
	return sink_count(&S) >= *(size_t *)n;
}

static void
wait_delivered(size_t n)
{
	cr_assert(wait_until(delivered, &n, WAIT_MS), "%zu of %zu messages "
	    "arrived", sink_count(&S), n);
}

struct logged {
	const char	*needle;
};

static bool
in_log(void *arg)
{
	return log_count(&D, ((struct logged *)arg)->needle) > 0;
}

static void
wait_log(const char *needle)
{
	struct logged l = { needle };

	cr_assert(wait_until(in_log, &l, WAIT_MS), "never logged: %s\n%s",
	    needle, daemon_log(&D));
}

/* The envelope lines of the sink's n-th message (from 1), one string. */
static char *
envelope(int n)
{
	char p[700], *text, *end;
	size_t len;

	snprintf(p, sizeof(p), "%s/%08d.eml", S.dir, n);
	text = read_file(p, &len);
	if ((end = strstr(text, "\n\n")) != NULL)
		end[1] = '\0';
	return text;
}

static void
assert_envelope_has(int n, const char *line, bool want)
{
	char *env = envelope(n);

	cr_assert_eq(strstr(env, line) != NULL, want, "message %d %s \"%s\":"
	    "\n%s", n, want ? "lacks" : "has", line, env);
	free(env);
}

/* A small /proc file as a string ("" if it cannot be read). */
static void
proc_text(const char *p, char *buf, size_t len)
{
	size_t i, n = text_read(p, buf, len);

	for (i = 0; i < n; i++)		/* cmdline: NUL between arguments */
		if (buf[i] == '\0')
			buf[i] = ' ';
}

/* How many of the master and its workers (what ps shows) mention s. */
static size_t
cmdlines_with(pid_t master, const char *s)
{
	char p[96], kids[1024], cmd[4096], *w, *save;
	size_t hits;

	snprintf(p, sizeof(p), "/proc/%ld/cmdline", (long)master);
	proc_text(p, cmd, sizeof(cmd));
	hits = strstr(cmd, s) != NULL;
	snprintf(p, sizeof(p), "/proc/%ld/task/%ld/children", (long)master,
	    (long)master);
	proc_text(p, kids, sizeof(kids));
	for (w = strtok_r(kids, " \n", &save); w != NULL;
	    w = strtok_r(NULL, " \n", &save)) {
		snprintf(p, sizeof(p), "/proc/%s/cmdline", w);
		proc_text(p, cmd, sizeof(cmd));
		hits += strstr(cmd, s) != NULL;
	}
	return hits;
}

/* Copies the sink received for address addr. */
static size_t
copies_for(const char *addr)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i, k, c = 0;

	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt; k++)
			c += strcmp(t[i].rcpt[k], addr) == 0;
	txns_free(t, n);
	return c;
}

static const char ca_conf[] = "smtp_tls = %s\nsmtp_tls_ca_file = %s\n";

/* A list of one member, a relay with STARTTLS, listqd with smtp_tls. */
static void
tls_relay(const char *list, bool chunking, const char *mode,
    const char *ca)
{
	make_list(list, 1);
	make_cert("other");	/* a certificate the relay does not have */
	tls_sink(NULL, 0, chunking, NULL, NULL);
	config(ca_conf, mode, path(ca));
	daemon_start(&D, 1);
}

/*
 * encrypt, against a relay that also offers CHUNKING in the EHLO reply
 * that comes over TLS: the relay receives
 * the spooled message byte for byte plus the list headers, 8-bit bytes
 * and body lines that look like commands included.
 */
Test(tls, encrypt_delivers_byte_for_byte, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char msg[] = "Return-Path: <x@example.net>\n"
	    "From: a@example.net\nTo: one@example.net\nTo: two@example.net\n"
	    "Cc: c@example.net\nSubject: caf\xc3\xa9 over TLS\n\n"
	    "line\n.dot line\n..two dots\n\ttab\nAUTH PLAIN in the body\n"
	    "MAIL FROM:<not@a.command>\nlast line without newline";
	/* What the relay must get: list headers, CRLF, a final CRLF. */
	static const char body[] = "Return-Path: <x@example.net>\r\nFrom: a@example.net\r\n"
	    "To: one@example.net\r\nTo: two@example.net\r\n"
	    "Cc: c@example.net\r\nSubject: caf\xc3\xa9 over TLS\r\n\r\n"
	    "line\r\n.dot line\r\n..two dots\r\n\ttab\r\n"
	    "AUTH PLAIN in the body\r\nMAIL FROM:<not@a.command>\r\n"
	    "last line without newline\r\n";
	char want[2048];
	size_t n;
	struct txn *t;

	n = list_headers(want, sizeof(want), "tau", NULL);
	cr_assert(n + sizeof(body) <= sizeof(want));
	memcpy(want + n, body, sizeof(body));
	n += sizeof(body) - 1;
	tls_relay("tau", true, "encrypt", "relay.crt");
	post("tau", msg);
	wait_delivered(1);
	cr_assert_eq(sink_load(&S, &t), 1);
	cr_assert(t[0].len == n && memcmp(t[0].data, want, n) == 0,
	    "got %zu bytes, want %zu:\n%s", t[0].len, n, t[0].data);
	txns_free(t, 1);
	assert_envelope_has(1, "X-Sink-TLS: yes\n", true);
	assert_envelope_has(1, "BODY=8BITMIME", true);
	/* Logged once the session is over, after the delivery lines. */
	wait_log("Verified TLS connection established to 127.0.0.1[127.0.0.1]:");
}

/*
 * One TLS session after another, each one quick: the relay's TLS 1.3
 * session tickets, which make the socket readable before the reply to
 * EHLO is there, must not stall the client until the command timeout.
 */
Test(tls, sessions_do_not_stall, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char msg[64];
	size_t i;

	tls_relay("sigma", false, "encrypt", "relay.crt");
	for (i = 1; i <= 12; i++) {
		snprintf(msg, sizeof(msg), "Subject: %zu\n\nbody\n", i);
		post("sigma", msg);
		wait_delivered(i);
	}
	cr_assert_eq(log_count(&D, "timed out"), 0, "%s", daemon_log(&D));
	cr_assert_geq(log_count(&D, "Verified TLS connection"), 2);
}

/* encrypt: a relay without STARTTLS gets nothing; once it offers it, all. */
Test(tls, encrypt_refuses_relay_without_starttls, .init = setup,
    .fini = teardown, .timeout = 90)
{
	int port;

	make_list("upsilon", 2);
	make_cert("relay");
	sink_start(&S, NULL, 0, false);
	port = S.port;
	config(ca_conf, "encrypt", path("relay.crt"));
	daemon_start(&D, 1);
	post("upsilon", "Subject: secret\n\nnot in clear\n");
	wait_log("TLS required but not offered by relay");
	sleep(2);		/* retries, still nothing */
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(queue_count(NULL, 0), 1);
	cr_assert_eq(log_count(&D, "status=sent"), 0);
	sink_stop(&S);
	tls_sink(NULL, port, false, NULL, NULL);
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-TLS: yes\n", true);
	cr_assert_eq(copies_for("<m0@members.example>"), 1);
	cr_assert_eq(copies_for("<m1@members.example>"), 1);
}

/* encrypt: a certificate that does not chain to the CA file is refused. */
Test(tls, encrypt_refuses_untrusted_certificate, .init = setup,
    .fini = teardown, .timeout = 60)
{
	tls_relay("phi", false, "encrypt", "other.crt");
	post("phi", "Subject: x\n\ny\n");
	wait_log("TLS certificate of relay not trusted");
	sleep(1);
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(queue_count(NULL, 0), 1);
}

/* may: TLS when offered (verified, or noted as untrusted), clear if not. */
Test(tls, may_uses_tls_when_offered, .init = setup, .fini = teardown,
    .timeout = 60)
{
	tls_relay("chi", false, "may", "relay.crt");
	post("chi", "Subject: one\n\ny\n");
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-TLS: yes\n", true);
	wait_log("Verified TLS connection");
	cr_assert_eq(daemon_stop(&D), 0);

	/* An unverified certificate: still TLS, and logged as such. */
	config(ca_conf, "may", path("other.crt"));
	daemon_start(&D, 1);
	post("chi", "Subject: two\n\ny\n");
	wait_delivered(2);
	assert_envelope_has(2, "X-Sink-TLS: yes\n", true);
	wait_log("Untrusted TLS connection established");
}

Test(tls, may_without_tls_delivers_in_clear, .init = setup,
    .fini = teardown, .timeout = 60)
{
	make_list("psi", 1);
	make_cert("relay");
	sink_start(&S, NULL, 0, false);
	config(ca_conf, "may", path("relay.crt"));
	daemon_start(&D, 1);
	post("psi", "Subject: x\n\ny\n");
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-TLS: no\n", true);
	cr_assert_eq(log_count(&D, "TLS connection established"), 0);
}

/*
 * A relay with STARTTLS and AUTH for listq-relay:PASSWORD, and listqd
 * set to encrypt and to authenticate with this password file content.
 */
static void
auth_start(const char *list, const char *password, mode_t mode,
    int workers)
{
	char extra[2048];

	make_list(list, 1);
	tls_sink(NULL, 0, false, "-A", "listq-relay:" PASSWORD);
	password_file(password, mode);
	snprintf(extra, sizeof(extra), "smtp_tls = encrypt\n"
	    "smtp_tls_ca_file = %s\nsmtp_auth_user = listq-relay\n"
	    "smtp_auth_password_file = %s\n", path("relay.crt"),
	    path("smtp-password"));
	daemon_config(&D, S.port, extra);
	daemon_start(&D, workers);
}

/* AUTH over TLS: accepted, recorded, the password nowhere to be seen. */
Test(auth, success_over_tls, .init = setup, .fini = teardown,
    .timeout = 60)
{
	auth_start("omega", PASSWORD, 0600, 2);
	post("omega", "Subject: authenticated\n\ny\n");
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-TLS: yes\n", true);
	assert_envelope_has(1, "X-Sink-Auth: listq-relay\n", true);
	cr_assert_eq(cmdlines_with(D.pid, PASSWORD), 0);
	cr_assert_gt(cmdlines_with(D.pid, "listqd"), 1, "no workers seen");
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, PASSWORD), 0);
}

/* 535: deferred, logged without the password; a new password file then
   works without a reload (it is read at each session). */
Test(auth, failure_535_deferred, .init = setup, .fini = teardown,
    .timeout = 90)
{
	auth_start("alef", "wrong-" PASSWORD, 0600, 1);
	post("alef", "Subject: x\n\ny\n");
	wait_log("authentication failed: 535 5.7.8");
	sleep(1);
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(queue_count(NULL, 0), 1);
	cr_assert_eq(log_count(&D, "status=sent"), 0);
	password_file(PASSWORD, 0600);
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-Auth: listq-relay\n", true);
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, PASSWORD), 0, "%s", daemon_log(&D));
}

/* A password file others may read is refused, with a logged error. */
Test(auth, password_file_readable_by_others_refused, .init = setup,
    .fini = teardown, .timeout = 60)
{
	auth_start("bet", PASSWORD, 0640, 1);
	post("bet", "Subject: x\n\ny\n");
	wait_log("mode 0640");
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(queue_count(NULL, 0), 1);
	cr_assert_eq(log_count(&D, PASSWORD), 0);
}

/*
 * Without TLS the password goes out only when smtp_tls = none says the
 * path is trusted; with may and a relay offering no STARTTLS the mail
 * waits rather than showing the password on the wire.
 */
Test(auth, in_clear_only_with_smtp_tls_none, .init = setup,
    .fini = teardown, .timeout = 90)
{
	char extra[2048];

	make_list("gimel", 1);
	sink_start_args(&S, NULL, 0, false, (const char *const[]){ "-A",
	    "listq-relay:" PASSWORD, NULL });
	password_file(PASSWORD, 0600);
	snprintf(extra, sizeof(extra), "smtp_tls = may\n"
	    "smtp_auth_user = listq-relay\nsmtp_auth_password_file = %s\n",
	    path("smtp-password"));
	daemon_config(&D, S.port, extra);
	daemon_start(&D, 1);
	post("gimel", "Subject: x\n\ny\n");
	wait_log("AUTH not attempted");
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(daemon_stop(&D), 0);

	snprintf(extra, sizeof(extra), "smtp_tls = none\n"
	    "smtp_auth_user = listq-relay\nsmtp_auth_password_file = %s\n",
	    path("smtp-password"));
	daemon_config(&D, S.port, extra);
	daemon_start(&D, 1);
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-TLS: no\n", true);
	assert_envelope_has(1, "X-Sink-Auth: listq-relay\n", true);
}

/* A message of that many lines "x" (LF line ends: 2 bytes each). */
static char *
big_message(size_t lines)
{
	char *m = malloc(64 + 2 * lines), *p = m;
	size_t i;

	p += sprintf(p, "Subject: big\n\n");
	for (i = 0; i < lines; i++)
		p += sprintf(p, "x\n");
	return m;
}

static void
assert_too_big(void)
{
	wait_log("dsn=5.3.4, status=failed (message too big for relay");
	cr_assert_eq(copies_for("<m0@members.example>"), 0);
	cr_assert_eq(log_count(&D, "status=sent"), 0);
}

/* SIZE= over the relay's limit: refused at MAIL, failed for good. */
Test(size, rejected_at_mail_fails_recipients, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char *m = big_message(1000);

	make_list("dalet", 1);
	sink_start_args(&S, NULL, 0, false, (const char *const[]){ "-S",
	    "1000", NULL });
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("dalet", m);
	free(m);
	assert_too_big();
	cr_assert_gt(log_count(&D, "limit 1000"), 0, "%s", daemon_log(&D));
}

/*
 * SIZE= under the limit (it counts LF line ends), the data over it
 * (CRLF): refused with 552 5.3.4 after the data, failed for good too.
 */
Test(size, rejected_after_data_fails_recipients, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char *m = big_message(400), limit[32];
	const char *argv[] = { "-S", limit, NULL };

	/* estimate = message + list headers (< 300), wire = + 400 CRs */
	snprintf(limit, sizeof(limit), "%zu", strlen(m) + 300);
	make_list("he", 1);
	sink_start_args(&S, NULL, 0, false, argv);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("he", m);
	free(m);
	assert_too_big();
	cr_assert_gt(log_count(&D, "552 5.3.4 message size exceeds"), 0);
}

/* BODY=8BITMIME for a message with 8-bit bytes, not for a 7-bit one. */
Test(size, eightbit_announced_only_for_8bit, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char *env;
	int i, eight = 0, seven = 0;

	make_list("vav", 1);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("vav", "Subject: plain\n\nascii only\n");
	post("vav", "Subject: caf\xc3\xa9\n\nna\xc3\xafve\n");
	wait_delivered(2);
	for (i = 1; i <= 2; i++) {
		char p[700], *text;
		size_t len;

		snprintf(p, sizeof(p), "%s/%08d.eml", S.dir, i);
		text = read_file(p, &len);
		env = envelope(i);
		cr_assert_not_null(strstr(env, "X-Sink-Mail-Params: SIZE="),
		    "%s", env);
		if (strstr(text, "caf\xc3\xa9") != NULL) {
			eight++;
			cr_assert_not_null(strstr(env, "BODY=8BITMIME"), "%s",
			    env);
		} else {
			seven++;
			cr_assert_null(strstr(env, "BODY="), "%s", env);
		}
		free(env);
		free(text);
	}
	cr_assert_eq(eight, 1);
	cr_assert_eq(seven, 1);
}

/*
 * RFC 2920: MAIL leaves with RCPT and DATA in one write, and every
 * message of the session is delivered whole.
 */
Test(pipelining, mail_goes_with_rcpt_and_data, .init = setup,
    .fini = teardown, .timeout = 60)
{
	make_list("zayin", 2);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("zayin", "Subject: one\n\nfirst\n");
	post("zayin", "Subject: two\n\nsecond\n");
	wait_delivered(2);
	assert_envelope_has(1, "X-Sink-Pipelined: yes\n", true);
	assert_envelope_has(2, "X-Sink-Pipelined: yes\n", true);
	assert_envelope_has(1, "X-Sink-Rcpt-To: <m1@members.example>\n",
	    true);
	cr_assert(log_wait(&D, "status=sent", 4, WAIT_MS));
	cr_assert_eq(log_count(&D, "status=sent"), 4);
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_eq(log_count(&D, "mail_ahead=0"), 0, "%s", daemon_log(&D));
	cr_assert_gt(log_count(&D, "mail_ahead="), 0, "%s", daemon_log(&D));
}

/* A refused MAIL: deferred with its reply; the 503s after it unseen. */
Test(pipelining, mail_refused_defers_with_its_reply, .init = setup,
    .fini = teardown, .timeout = 60)
{
	make_list("het", 2);
	sink_start(&S, "cmd MAIL 451 4.3.2 not now, come back later\n", 0,
	    false);
	daemon_config(&D, S.port, "min_backoff = 1h\nmax_backoff = 2h\n");
	daemon_start(&D, 1);
	post("het", "Subject: x\n\ny\n");
	cr_assert(log_wait(&D, "status=deferred (451 4.3.2 not now, come back "
	    "later)", 2, WAIT_MS), "%s", daemon_log(&D));
	cr_assert_eq(log_count(&D, "status=deferred (451 4.3.2 not now"), 2,
	    "%s", daemon_log(&D));
	cr_assert_eq(log_count(&D, "(503"), 0, "%s", daemon_log(&D));
	cr_assert_eq(sink_count(&S), 0);
}

/* ... and a MAIL refused for good fails every recipient with its reply. */
Test(pipelining, mail_refused_for_good_fails_with_its_reply,
    .init = setup, .fini = teardown, .timeout = 60)
{
	make_list("tet", 2);
	sink_start(&S, "from ?* cmd MAIL 550 5.7.1 sender not welcome\n", 0,
	    false);
	daemon_config(&D, S.port, NULL);
	daemon_start(&D, 1);
	post("tet", "Subject: x\n\ny\n");
	/* One line per recipient, logged one after the other. */
	cr_assert(log_wait(&D, "dsn=5.7.1, status=failed (550 5.7.1 sender "
	    "not welcome)", 2, WAIT_MS), "%s", daemon_log(&D));
	cr_assert_eq(log_count(&D, "status=failed (550 5.7.1 sender not "
	    "welcome)"), 2, "%s", daemon_log(&D));
	/* "(503": a reply, not the digits of a port chosen at run time. */
	cr_assert_eq(log_count(&D, "(503"), 0, "%s", daemon_log(&D));
}

/* Over TLS too: MAIL does not wait, and the messages arrive whole. */
Test(pipelining, over_tls_too, .init = setup, .fini = teardown,
    .timeout = 60)
{
	static const char msg[] = "Subject: ahead\n\nover TLS\n";
	static const char body[] = "\r\n\r\nover TLS\r\n";
	struct txn *t;
	size_t n;

	tls_relay("yod", false, "encrypt", "relay.crt");
	post("yod", msg);
	post("yod", msg);
	wait_delivered(2);
	assert_envelope_has(1, "X-Sink-TLS: yes\n", true);
	assert_envelope_has(1, "X-Sink-Pipelined: yes\n", true);
	assert_envelope_has(2, "X-Sink-Pipelined: yes\n", true);
	cr_assert_eq(n = sink_load(&S, &t), 2);
	cr_assert_not_null(memmem(t[1].data, t[1].len, body,
	    sizeof(body) - 1), "%s", t[1].data);
	txns_free(t, n);
}

/* ... and a MAIL refused over TLS is judged by its own reply. */
Test(pipelining, refused_over_tls, .init = setup, .fini = teardown,
    .timeout = 60)
{
	make_list("kaf", 2);
	tls_sink("cmd MAIL 452 4.3.1 out of space, later\n", 0, false, NULL,
	    NULL);
	config("min_backoff = 1h\nmax_backoff = 2h\n" "smtp_tls = %s\n"
	    "smtp_tls_ca_file = %s\n", "encrypt", path("relay.crt"));
	daemon_start(&D, 1);
	post("kaf", "Subject: x\n\ny\n");
	cr_assert(log_wait(&D, "status=deferred (452 4.3.1 out of space, "
	    "later)", 2, WAIT_MS), "%s", daemon_log(&D));
	cr_assert_eq(log_count(&D, "status=deferred (452 4.3.1 out of "
	    "space"), 2, "%s", daemon_log(&D));
	cr_assert_eq(log_count(&D, "(503"), 0, "%s", daemon_log(&D));
	cr_assert_eq(sink_count(&S), 0);
}

/*
 * Over TLS with more RCPT lines than fit one 2 KiB TLS record: the
 * pipelined group leaves in several writes, and every recipient of the
 * one transaction is accepted.
 */
Test(pipelining, over_tls_many_recipients, .init = setup,
    .fini = teardown, .timeout = 60)
{
	make_list("lamed", 150);
	tls_sink(NULL, 0, false, NULL, NULL);
	config(ca_conf, "encrypt", path("relay.crt"));
	daemon_start(&D, 1);
	post("lamed", "Subject: many\n\nto all\n");
	wait_delivered(1);
	wait_log("to=<m149@members.example>");
	cr_assert_eq(log_count(&D, "status=sent"), 150, "%s", daemon_log(&D));
	cr_assert_eq(copies_for("<m0@members.example>"), 1);
	assert_envelope_has(1, "X-Sink-Pipelined: yes\n", true);
	assert_envelope_has(1, "X-Sink-Rcpt-To: <m149@members.example>\n",
	    true);
}

/* smtp_pipelining = no: one command at a time, PIPELINING offered or not. */
Test(pipelining, off_waits_for_each_reply, .init = setup,
    .fini = teardown, .timeout = 60)
{
	make_list("mem", 2);
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, "smtp_pipelining = no\n");
	daemon_start(&D, 1);
	post("mem", "Subject: one\n\nfirst\n");
	wait_delivered(1);
	assert_envelope_has(1, "X-Sink-Pipelined: no\n", true);
	assert_envelope_has(1, "X-Sink-Rcpt-To: <m1@members.example>\n",
	    true);
	/* Logged once the relay's reply is in: after the sink records. */
	cr_assert(log_wait(&D, "status=sent", 2, WAIT_MS));
	cr_assert_eq(log_count(&D, "status=sent"), 2);
	cr_assert_eq(daemon_stop(&D), 0);
	cr_assert_gt(log_count(&D, "mail_ahead=0"), 0, "%s", daemon_log(&D));
}
