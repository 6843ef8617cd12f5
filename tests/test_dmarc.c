/*
 * SPDX-License-Identifier: ISC
 *
 * DMARC mitigation end to end with real DNS: a private unbound on a
 * loopback port chosen at run time serves the _dmarc records (reject,
 * quarantine, none, missing, an organizational-domain fallback,
 * malformed ones, SERVFAIL, and a name it never answers), listqd is
 * pointed at it by dns_resolver, and each test compares the copies the
 * sink received with the documented headers, byte for byte.  unbound
 * logs every query it gets: the lookup count comes from the server, not
 * from listqd.  Every process is stopped by its pid, also on failure.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"

#define WAIT_MS		30000

static struct sink S;
static struct daemon D;
static pid_t dns_pid;
static int dns_port;
static char dns_log[600];

static const char zones[] =
    "  local-zone: \".\" refuse\n"
    "  local-zone: \"slow.example.\" deny\n"
    "  local-zone: \"servfail.example.\" transparent\n"
    "  local-zone: \"reject.example.\" static\n"
    "  local-data: '_dmarc.reject.example. 3600 IN TXT \"v=DMARC1; p=reject\"'\n"
    "  local-zone: \"quarantine.example.\" static\n"
    "  local-data: '_dmarc.quarantine.example. 3600 IN TXT "
    "\"v=DMARC1; p=quarantine; pct=50\"'\n"
    "  local-zone: \"none.example.\" static\n"
    "  local-data: '_dmarc.none.example. 3600 IN TXT "
    "\"v=DMARC1; p=none; rua=mailto:agg@none.example\"'\n"
    "  local-zone: \"missing.example.\" static\n"
    "  local-data: 'missing.example. 3600 IN SOA ns. host. 1 3600 600 "
    "86400 3600'\n"
    "  local-zone: \"spf.example.\" static\n"
    "  local-data: '_dmarc.spf.example. 3600 IN TXT \"v=spf1 -all\"'\n"
    "  local-zone: \"example.co.uk.\" static\n"
    "  local-data: '_dmarc.example.co.uk. 3600 IN TXT "
    "\"v=DMARC1; p=none; sp=quarantine\"'\n"
    "  local-zone: \"badp.example.\" static\n"
    "  local-data: '_dmarc.badp.example. 3600 IN TXT \"v=DMARC1; p=bogus\"'\n"
    "  local-zone: \"two.example.\" static\n"
    "  local-data: '_dmarc.two.example. 3600 IN TXT \"v=DMARC1; p=none\"'\n"
    "  local-data: '_dmarc.two.example. 3600 IN TXT \"v=DMARC1; p=reject\"'\n"
    "  local-zone: \"many.example.\" static\n"
    "  local-data: '_dmarc.many.example. 3600 IN TXT "
    "\"v=DMARC1; \" \"p=reject\"'\n";

/* A free loopback UDP port (unbound takes it right after). */
static int
free_udp_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0), port;

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Lines of the file at path that contain needle (0: no file yet). */
static size_t
count_in(const char *path, const char *needle)
{
	char line[1024];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static bool
dns_ready(void *arg)
{
	(void)arg;
	return count_in(dns_log, "start of service") > 0;
}

/* Starts unbound on 127.0.0.1:<a free port>, answering from zones only. */
static void
dns_start(void)
{
	char dir[512], conf[600], empty[600];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s.dns", T.spool);
	rm_tree(dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(conf, sizeof(conf), "%s/unbound.conf", dir);
	snprintf(empty, sizeof(empty), "%s/empty.zone", dir);
	snprintf(dns_log, sizeof(dns_log), "%s/log", dir);
	cr_assert_not_null(f = fopen(empty, "w"));
	fclose(f);
	dns_port = free_udp_port();
	cr_assert_not_null(f = fopen(conf, "w"));
	fprintf(f, "server:\n  interface: 127.0.0.1@%d\n  port: %d\n"
	    "  outgoing-interface: 127.0.0.1\n  do-tcp: no\n  do-ip6: no\n"
	    "  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n"
	    "  directory: \"%s\"\n  pidfile: \"\"\n  use-syslog: no\n"
	    "  logfile: \"%s\"\n  log-queries: yes\n  verbosity: 1\n"
	    "  module-config: \"iterator\"\n"
	    "  access-control: 127.0.0.0/8 allow\n%s"
	    "remote-control:\n  control-enable: no\n"
	    "auth-zone:\n  name: \"servfail.example.\"\n  zonefile: \"%s\"\n"
	    "  for-downstream: yes\n  for-upstream: no\n"
	    "  fallback-enabled: no\n", dns_port, dns_port, dir, dns_log,
	    zones, empty);
	cr_assert_eq(fclose(f), 0);
	dns_pid = fork();
	cr_assert_geq(dns_pid, 0);
	if (dns_pid == 0) {
		execlp("unbound", "unbound", "-d", "-c", conf, (char *)NULL);
		_exit(127);
	}
	if (!wait_until(dns_ready, NULL, WAIT_MS)) {
		/* a failed .init has no .fini: stop it here */
		kill(dns_pid, SIGTERM);
		reap_bounded(dns_pid, 20000);
		dns_pid = 0;
		cr_assert_fail("unbound did not start: see %s", dns_log);
	}
}

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&D, 0, sizeof(D));
	dns_pid = 0;
	dns_start();
}

static void
teardown(void)
{
	if (dns_pid > 0) {
		kill(dns_pid, SIGTERM);
		reap_bounded(dns_pid, 20000);
		dns_pid = 0;
	}
	daemon_teardown();
}

/* The daemon, one worker, asking the test's DNS server. */
static void
start_listqd(const char *extra)
{
	char conf[512];

	snprintf(conf, sizeof(conf), "dns_resolver = 127.0.0.1:%d\n"
	    "dns_timeout = 1s\n%s", dns_port, extra != NULL ? extra : "");
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, conf);
	daemon_start(&D, 1);
}

/* A list with one member and the given extra config lines. */
static void
dmarc_list(const char *name, const char *config)
{
	make_list(name, 1);
	list_append(name, "config", config);
}

static void
post(const char *list, const char *msg)
{
	struct result r;

	cr_assert_eq(run_simple("post", list, msg, strlen(msg), &r), 0,
	    "enqueue: %s", r.err);
}

struct want {
	size_t	n;
};

static bool
have_txns(void *arg)
{
	return sink_count(&S) >= ((struct want *)arg)->n;
}

static void
wait_txns(size_t n)
{
	struct want w = { n };

	cr_assert(wait_until(have_txns, &w, WAIT_MS), "only %zu of %zu "
	    "copies arrived", sink_count(&S), n);
}

/* The list headers listqd adds, then text with LF made CRLF. */
static char *
as_sent(const char *list, const char *text)
{
	char *out = malloc(2048 + 2 * strlen(text)), *p;

	cr_assert_not_null(out);
	p = out + list_headers(out, 2048, list, NULL);
	for (; *text != '\0'; text++) {
		if (*text == '\n')
			*p++ = '\r';
		*p++ = *text;
	}
	*p = '\0';
	return out;
}

/* The one copy received whose data contains tag. */
static char *
copy_with(const char *tag)
{
	struct txn *t;
	size_t n = sink_load(&S, &t), i;
	char *found = NULL;

	for (i = 0; i < n; i++)
		if (strstr(t[i].data, tag) != NULL) {
			cr_assert_null(found, "two copies with %s", tag);
			found = strndup(t[i].data, t[i].len);
		}
	txns_free(t, n);
	cr_assert_not_null(found, "no copy with %s", tag);
	return found;
}

/* The copy tagged tag is exactly want (LF ends, list headers added). */
static void
assert_copy(const char *list, const char *tag, const char *want)
{
	char *got = copy_with(tag), *exp = as_sent(list, want);

	cr_assert_str_eq(got, exp, "%s: got\n%s\nwant\n%s", tag, got, exp);
	free(got);
	free(exp);
}

/*
 * munge_from: From: becomes the list's, the author goes to Reply-To:
 * (merged with the post's own) and X-Original-From:, a forged
 * X-Original-From: is dropped, the rest is the post byte for byte.
 * The organizational domain's sp= applies below it.  p=none, no record
 * and a TXT record that is not DMARC leave the post as it was.
 */
Test(dmarc, munge_from_by_policy, .init = setup, .fini = teardown,
    .timeout = 90)
{
	dmarc_list("mf", "dmarc_mitigation = munge_from\n");
	dmarc_list("cc", "dmarc_mitigation = munge_from\n"
	    "dmarc_author_header = cc\nsubject_prefix = [cc]\n");
	start_listqd(NULL);
	post("mf", "Received: from a by b\nFrom: Anne Person "
	    "<anne@reject.example>\nReply-To: Desk <desk@reject.example>\n"
	    "X-Original-From: forged@evil.example\nTo: mf@example.org\n"
	    "Subject: t-reject\n\nbody\n.dot\n");
	post("mf", "From: bob@a.b.example.co.uk\nSubject: t-org\n\nx\n");
	post("cc", "From: \"Carl C.\" <carl@quarantine.example>\n"
	    "Cc: other@elsewhere.example\nSubject: t-quarantine\n\ny\n");
	post("mf", "From: Nina <nina@none.example>\nSubject: t-none\n\nn\n");
	post("mf", "From: mia@missing.example\nSubject: t-missing\n\nm\n");
	post("mf", "From: sam@spf.example\nSubject: t-spf\n\ns\n");
	wait_txns(6);
	assert_copy("mf", "t-reject", "Received: from a by b\n"
	    "From: Anne Person via mf <mf@example.org>\n"
	    "Reply-To: Desk <desk@reject.example>, Anne Person "
	    "<anne@reject.example>\n"
	    "X-Original-From: Anne Person <anne@reject.example>\n"
	    "To: mf@example.org\nSubject: t-reject\n\nbody\n.dot\n");
	assert_copy("mf", "t-org", "From: bob via mf <mf@example.org>\n"
	    "Reply-To: bob@a.b.example.co.uk\n"
	    "X-Original-From: bob@a.b.example.co.uk\nSubject: t-org\n\nx\n");
	assert_copy("cc", "t-quarantine", "From: \"Carl C. via cc\" "
	    "<cc@example.org>\n"
	    "Cc: other@elsewhere.example, \"Carl C.\" <carl@quarantine.example>\n"
	    "X-Original-From: \"Carl C.\" <carl@quarantine.example>\n"
	    "Subject: [cc] t-quarantine\n\ny\n");
	assert_copy("mf", "t-none",
	    "From: Nina <nina@none.example>\nSubject: t-none\n\nn\n");
	assert_copy("mf", "t-missing",
	    "From: mia@missing.example\nSubject: t-missing\n\nm\n");
	assert_copy("mf", "t-spf", "From: sam@spf.example\nSubject: t-spf\n\ns\n");
	cr_assert_eq(log_count(&D, "DMARC policy of a.b.example.co.uk: "
	    "quarantine"), 1);
}

/*
 * wrap: a message from the list whose body is the post, byte for byte,
 * as message/rfc822; its header as listq.conf(5) documents.
 */
Test(dmarc, wrap_by_policy, .init = setup, .fini = teardown, .timeout = 90)
{
	static const char msg[] = "From: Anne <anne@reject.example>\n"
	    "To: wr@example.org\nCc: cc@elsewhere.example\n"
	    "Subject: t-wrap\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n"
	    "Message-ID: <orig@reject.example>\n"
	    "References: <parent@reject.example>\n"
	    "In-Reply-To: <parent@reject.example>\n"
	    "DKIM-Signature: v=1; d=reject.example\n\nwrapped body\n";
	char want[4096], *got;
	const char *id;

	dmarc_list("wr", "dmarc_mitigation = wrap\nsubject_prefix = [wr]\n");
	start_listqd(NULL);
	post("wr", msg);
	wait_txns(1);
	got = copy_with("t-wrap");
	cr_assert_not_null(id = strstr(got, "Message-Id: <"));
	snprintf(want, sizeof(want), "From: Anne via wr <wr@example.org>\n"
	    "Reply-To: Anne <anne@reject.example>\n"
	    "X-Original-From: Anne <anne@reject.example>\n"
	    "To: wr@example.org\nCc: cc@elsewhere.example\n"
	    "Subject: [wr] t-wrap\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n"
	    "Message-Id: <%.18s.wrapped@example.org>\n"
	    "In-Reply-To: <parent@reject.example>\n"
	    "References: <parent@reject.example>\nMIME-Version: 1.0\n"
	    "Content-Type: message/rfc822\nContent-Disposition: inline\n\n%s",
	    id + 13, msg);
	assert_copy("wr", "t-wrap", want);
	free(got);
}

static bool
mitigated_4(void *arg)
{
	return log_count(arg, "DMARC mitigation: munge_from") >= 4 &&
	    sink_count(&S) >= 5;
}

/*
 * A malformed record (no valid p=, two DMARC records) is mitigated at
 * once.  SERVFAIL, REFUSED and a server that never answers within
 * dns_timeout defer the post, then after dmarc_defer_time mitigate it;
 * a post whose domain answered went meanwhile.
 */
Test(dmarc, malformed_and_failures, .init = setup, .fini = teardown,
    .timeout = 90)
{
	dmarc_list("mf", "dmarc_mitigation = munge_from\n");
	start_listqd("dmarc_defer_time = 3s\n");
	post("mf", "From: p@badp.example\nSubject: t-badp\n\nb\n");
	post("mf", "From: t@two.example\nSubject: t-two\n\nt\n");
	post("mf", "From: s@servfail.example\nSubject: t-servfail\n\ns\n");
	post("mf", "From: w@slow.example\nSubject: t-slow\n\nw\n");
	post("mf", "From: n@none.example\nSubject: t-none\n\nn\n");
	cr_assert(wait_until(mitigated_4, &D, WAIT_MS), "%zu copies",
	    sink_count(&S));
	cr_assert_eq(log_count(&D, "DMARC policy of badp.example: malformed"),
	    1);
	cr_assert_eq(log_count(&D, "DMARC policy of two.example: malformed "
	    "2 DMARC records"), 1);
	cr_assert_geq(log_count(&D, "DMARC policy unknown (SERVFAIL); post "
	    "deferred"), 1);
	cr_assert_geq(log_count(&D, "DMARC policy unknown (timeout); post "
	    "deferred"), 1);
	assert_copy("mf", "t-servfail", "From: s via mf <mf@example.org>\n"
	    "Reply-To: s@servfail.example\nX-Original-From: "
	    "s@servfail.example\nSubject: t-servfail\n\ns\n");
	assert_copy("mf", "t-slow", "From: w via mf <mf@example.org>\n"
	    "Reply-To: w@slow.example\nX-Original-From: w@slow.example\n"
	    "Subject: t-slow\n\nw\n");
	assert_copy("mf", "t-badp", "From: p via mf <mf@example.org>\n"
	    "Reply-To: p@badp.example\nX-Original-From: p@badp.example\n"
	    "Subject: t-badp\n\nb\n");
	assert_copy("mf", "t-none", "From: n@none.example\nSubject: t-none\n"
	    "\nn\n");
	cr_assert_eq(log_count(&D, "DMARC mitigation: munge_from (DMARC "
	    "policy still unknown after dmarc_defer_time)"), 2);
}

#define THOUSAND	1000

/* A thousand posts from one domain: one query at the DNS server. */
Test(dmarc, thousand_posts_one_lookup, .init = setup, .fini = teardown,
    .timeout = 300)
{
	char msg[256];
	int i;

	dmarc_list("mf", "dmarc_mitigation = munge_from\n");
	start_listqd(NULL);
	for (i = 0; i < THOUSAND; i++) {
		snprintf(msg, sizeof(msg), "From: u%d@many.example\n"
		    "Subject: t-many-%d\n\n%d\n", i, i, i);
		post("mf", msg);
	}
	{
		struct want w = { THOUSAND };

		cr_assert(wait_until(have_txns, &w, 240000), "only %zu copies",
		    sink_count(&S));
	}
	cr_assert_eq(log_count(&D, "DMARC mitigation: munge_from (p=reject "
	    "at many.example)"), THOUSAND);
	cr_assert_eq(count_in(dns_log, " _dmarc.many.example. TXT IN"), 1);
}

/*
 * What a sender writes cannot steer the rewrite: a display name whose
 * encoded words hide a line break stays one header line; several From:
 * mailboxes, or none, are mitigated whatever their domains publish; a
 * header section beyond what listqd reads is wrapped, not munged.
 */
Test(dmarc, forged_headers, .init = setup, .fini = teardown, .timeout = 90)
{
	char *big, *got;
	size_t i, off;

	dmarc_list("mf", "dmarc_mitigation = munge_from\n");
	start_listqd(NULL);
	post("mf", "From: =?utf-8?q?Eve=0AX-Evil=3A_1?= <eve@reject.example>\n"
	    "Subject: t-evil\n\ne\n");
	post("mf", "From: a@none.example, b@none.example\nSubject: t-two\n\n"
	    "t\n");
	post("mf", "Subject: t-nofrom\n\nz\n");
	cr_assert_not_null(big = malloc(80000));
	off = (size_t)sprintf(big, "From: big@reject.example\nX-Big: x");
	for (i = 0; i < 1000; i++)
		off += (size_t)sprintf(big + off, "\n %070zu", i);
	sprintf(big + off, "\nSubject: t-big\n\nbig\n");
	post("mf", big);
	free(big);
	wait_txns(4);
	got = copy_with("t-evil");
	cr_assert_null(strstr(got, "\r\nX-Evil"), "%s", got);
	cr_assert_not_null(strstr(got, "\r\nFrom: \"Eve X-Evil: 1 via mf\" "
	    "<mf@example.org>\r\nReply-To: =?UTF-8?q?Eve=0AX-Evil=3A?= 1 "
	    "<eve@reject.example>\r\n"), "%s", got);
	free(got);
	assert_copy("mf", "t-two", "From: unknown author via mf "
	    "<mf@example.org>\nX-Original-From: a@none.example, "
	    "b@none.example\nSubject: t-two\n\nt\n");
	assert_copy("mf", "t-nofrom", "Subject: t-nofrom\n"
	    "From: unknown author via mf <mf@example.org>\n\nz\n");
	got = copy_with("t-big");
	cr_assert_not_null(strstr(got, "\r\nContent-Type: message/rfc822\r\n"),
	    "%.300s", got);
	free(got);
	cr_assert_eq(log_count(&D, "wrapped, not munged"), 1);
}
