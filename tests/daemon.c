/*
 * SPDX-License-Identifier: ISC
 *
 * Test harness for listqd and the test sink (see daemon.h).
 *
 * Every process started here is recorded by pid and stopped by
 * daemon_teardown(): SIGTERM, a bounded wait, then SIGKILL.  Every wait
 * is bounded in time.  A crash is never silent: the teardown fails the
 * test when a listqd it started did not end with 0 on its SIGTERM, or
 * logged a worker killed by a signal or exited -- unless the test said
 * it kills on purpose (daemon_expect_kills).
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "harness.h"
#include "number.h"

#define MAX_PROCS	16
#define MAX_DAEMONS	8
#define STOP_MS		20000

static pid_t procs[MAX_PROCS];

/* Each listqd daemon_start() ran in this test, for the teardown. */
static struct started {
	pid_t	pid;		/* 0 once stopped */
	int	status;		/* as stop_pid() returned it */
	char	log[512];
} daemons[MAX_DAEMONS];
static size_t ndaemons;
static bool kills_expected;

static void
track(pid_t pid)
{
	size_t i;

	for (i = 0; i < MAX_PROCS; i++)
		if (procs[i] == 0) {
			procs[i] = pid;
			return;
		}
	cr_assert_fail("too many test processes");
}

static void
untrack(pid_t pid)
{
	size_t i;

	for (i = 0; i < MAX_PROCS; i++)
		if (procs[i] == pid)
			procs[i] = 0;
}

static long
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
wait_until(bool (*cond)(void *), void *arg, int ms)
{
	long end = ms_now() + (long)ms * time_factor();

	do {
		if (cond(arg))
			return true;
		usleep(20000);
	} while (ms_now() < end);
	return cond(arg);
}

/* SIGTERM, bounded wait, SIGKILL; returns the status as run_wrapper does. */
static int
stop_pid(pid_t pid)
{
	kill(pid, SIGTERM);
	untrack(pid);
	return reap_bounded(pid, STOP_MS);
}

/* Waits (bounded) for pid to end by itself, then stops it. */
static int
stop_pid_after(pid_t pid)
{
	untrack(pid);
	return reap_bounded(pid, STOP_MS);
}

void
daemon_expect_kills(void)
{
	kills_expected = true;
}

/*
 * The master's death by anything but our SIGTERM, or a worker's: false
 * with why filled in.
 */
static bool
no_death(const struct started *d, char *why, size_t len)
{
	struct daemon view;

	memset(&view, 0, sizeof(view));
	snprintf(view.log, sizeof(view.log), "%s", d->log);
	if (d->status != 0)
		snprintf(why, len, "listqd ended with %d, not 0 on SIGTERM: it "
		    "died during the test (%s)", d->status, d->log);
	else if (log_count(&view, ") killed by signal") > 0)
		snprintf(why, len, "a worker was killed during the test (%s)",
		    d->log);
	else if (log_count(&view, " exited with status ") > 0)
		snprintf(why, len, "a worker exited during the test (%s)",
		    d->log);
	else
		return true;
	return false;
}

void
daemon_teardown(void)
{
	size_t i, n = ndaemons;
	bool expected = kills_expected;
	struct rlimit nocore = { 0, 0 };
	char why[700];

	for (i = 0; i < n; i++)
		if (daemons[i].pid != 0) {
			daemons[i].status = stop_pid(daemons[i].pid);
			daemons[i].pid = 0;
		}
	for (i = 0; i < MAX_PROCS; i++)
		if (procs[i] != 0)
			stop_pid(procs[i]);
	ndaemons = 0;
	kills_expected = false;
	/*
	 * Criterion ignores an assertion, or an exit, in a .fini; a test
	 * process killed there is reported as crashed in its teardown, and
	 * the run exits non-zero.
	 */
	for (i = 0; i < n && !expected; i++)
		if (!no_death(&daemons[i], why, sizeof(why))) {
			fprintf(stderr, "daemon_teardown: %s\n", why);
			fflush(NULL);
			setrlimit(RLIMIT_CORE, &nocore);
			abort();
		}
}

static bool
file_exists(void *path)
{
	return access(path, F_OK) == 0;
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Where the sink writes a line per rule fired (-F). */
static void
sink_fault_log(const struct sink *s, char *path, size_t len)
{
	snprintf(path, len, "%s.fired", s->dir);
}

static size_t
sink_fired(const struct sink *s, const char *kind_verb)
{
	char path[600], line[1024], kind[16], verb[16];
	size_t n = 0;
	FILE *f;

	sink_fault_log(s, path, sizeof(path));
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	/* "CONN LINE KIND VERB VALUE SENDER RCPTS" */
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%*s %*s %15s %15s", kind, verb) != 2)
			continue;
		snprintf(line, sizeof(line), "%s %s", kind, verb);
		n += strcmp(line, kind_verb) == 0;
	}
	fclose(f);
	return n;
}

void
sink_start(struct sink *s, const char *rules, int port, bool chunking)
{
	sink_start_args(s, rules, port, chunking, NULL);
}

void
sink_start_args(struct sink *s, const char *rules, int port, bool chunking,
    const char *const *extra)
{
	static int nth;
	char portfile[600], rulefile[600], faultlog[600], portarg[16], buf[32];
	const char *sink = getenv("LISTQ_TEST_SINK");
	const char *argv[32];
	int n = 0, fd;
	uint64_t got;
	pid_t pid;

	cr_assert_not_null(sink, "LISTQ_TEST_SINK is not set");
	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "%s.sink%d", T.spool, nth++);
	snprintf(portfile, sizeof(portfile), "%s.port", s->dir);
	snprintf(rulefile, sizeof(rulefile), "%s.rules", s->dir);
	sink_fault_log(s, faultlog, sizeof(faultlog));
	unlink(faultlog);
	snprintf(portarg, sizeof(portarg), "%d", port);
	unlink(portfile);
	rm_tree(s->dir);
	mkdir(s->dir, 0755);
	argv[n++] = sink;
	argv[n++] = "-d";
	argv[n++] = s->dir;
	argv[n++] = "-P";
	argv[n++] = portfile;
	argv[n++] = "-p";
	argv[n++] = portarg;
	argv[n++] = "-t";
	argv[n++] = "300";
	argv[n++] = "-F";
	argv[n++] = faultlog;
	if (chunking)
		argv[n++] = "-c";
	if (rules != NULL) {
		write_text(rulefile, rules);
		argv[n++] = "-r";
		argv[n++] = rulefile;
	}
	while (extra != NULL && *extra != NULL && n < 31)
		argv[n++] = *extra++;
	argv[n] = NULL;
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		execv(sink, (char *const *)argv);
		_exit(127);
	}
	cr_assert_neq(pid, -1);
	track(pid);
	s->pid = pid;
	cr_assert(wait_until(file_exists, portfile, 10000), "sink did not start");
	cr_assert_neq(fd = open(portfile, O_RDONLY), -1);
	memset(buf, 0, sizeof(buf));
	cr_assert_gt(read(fd, buf, sizeof(buf) - 1), 0);
	close(fd);
	cr_assert(number_scan(buf, 65535, &got, NULL) == 0 && got > 0,
	    "sink port file: %s", buf);
	s->port = (int)got;
}

void
sink_stop(struct sink *s)
{
	if (s->pid > 0)
		stop_pid(s->pid);
	s->pid = 0;
}

static int
eml_filter(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return n > 4 && strcmp(de->d_name + n - 4, ".eml") == 0;
}

size_t
sink_count(const struct sink *s)
{
	struct dirent **names;
	int n = scandir(s->dir, &names, eml_filter, NULL), i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(n > 0 ? names : NULL);
	return n < 0 ? 0 : (size_t)n;
}

/* Parses one recorded file: envelope lines, a blank line, the data. */
static void
parse_txn(char *buf, size_t len, struct txn *t)
{
	char *p = buf, *nl;
	uint64_t v;

	memset(t, 0, sizeof(*t));
	while ((nl = memchr(p, '\n', len - (size_t)(p - buf))) != NULL) {
		*nl = '\0';
		if (*p == '\0') {
			p = nl + 1;
			break;
		}
		if (strncmp(p, "X-Sink-Mail-From: ", 18) == 0)
			snprintf(t->from, sizeof(t->from), "%s", p + 18);
		else if (strncmp(p, "X-Sink-Rcpt-To: ", 16) == 0) {
			t->rcpt = reallocarray(t->rcpt, t->nrcpt + 1,
			    sizeof(char *));
			t->rcpt[t->nrcpt++] = strdup(p + 16);
		} else if (strncmp(p, "X-Sink-Connection: ", 19) == 0)
			t->conn = number_scan(p + 19, ULONG_MAX, &v, NULL) ==
			    0 ? (unsigned long)v : 0;
		else if (strncmp(p, "X-Sink-Peer-Port: ", 18) == 0)
			t->peer_port = number_scan(p + 18, 65535, &v, NULL) ==
			    0 ? (int)v : 0;
		p = nl + 1;
	}
	t->len = len - (size_t)(p - buf);
	t->data = malloc(t->len + 1);
	memcpy(t->data, p, t->len);
	t->data[t->len] = '\0';
}

size_t
sink_load(const struct sink *s, struct txn **out)
{
	struct dirent **names;
	char path[1100], *buf;
	int n = scandir(s->dir, &names, eml_filter, alphasort), i;
	size_t len;

	*out = calloc(n > 0 ? (size_t)n : 1, sizeof(**out));
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", s->dir, names[i]->d_name);
		buf = read_file(path, &len);
		parse_txn(buf, len, &(*out)[i]);
		free(buf);
		free(names[i]);
	}
	free(n > 0 ? names : NULL);
	return n < 0 ? 0 : (size_t)n;
}

void
txns_free(struct txn *t, size_t n)
{
	size_t i, k;

	for (i = 0; i < n; i++) {
		for (k = 0; k < t[i].nrcpt; k++)
			free(t[i].rcpt[k]);
		free(t[i].rcpt);
		free(t[i].data);
	}
	free(t);
}

void
daemon_config(struct daemon *d, int port, const char *extra)
{
	char text[4096];

	memset(d, 0, sizeof(*d));
	snprintf(d->conf, sizeof(d->conf), "%s.conf", T.spool);
	snprintf(d->log, sizeof(d->log), "%s.log", T.spool);
	unlink(d->log);
	snprintf(text, sizeof(text), "smarthost = 127.0.0.1:%d\n"
	    "helo_name = listq.test\nmin_backoff = 1s\nmax_backoff = 2s\n"
	    "smarthost_backoff = 1s\nconnect_timeout = 5s\n"
	    "command_timeout = 5s\ndata_timeout = 5s\n%s", port,
	    extra != NULL ? extra : "");
	write_text(d->conf, text);
	chmod(d->conf, 0644);
}

static pid_t
spawn_daemon(const char *conf, int workers, int errfd)
{
	const char *listqd = getenv("LISTQ_TEST_LISTQD");
	const char *argv[] = { listqd, "-F", "-f", conf, "-n", NULL, NULL },
	    *vg[VALGRIND_ARGS + 7], *const *run;
	char n[16];
	pid_t pid;

	cr_assert_not_null(listqd, "LISTQ_TEST_LISTQD is not set");
	snprintf(n, sizeof(n), "%d", workers);
	if (workers != 0)	/* 0: as the configuration says */
		argv[5] = n;
	else
		argv[4] = NULL;
	if ((pid = fork()) == 0) {
		dup2(errfd, 2);
		dup2(errfd, 1);
		run = under_valgrind(argv, vg, VALGRIND_ARGS + 7);
		execv(run[0], (char *const *)run);
		_exit(127);
	}
	cr_assert_neq(pid, -1);
	return pid;
}

static bool
daemon_started(void *d)
{
	return log_count(d, "started:") > 0 || log_count(d, "refused") > 0;
}

void
daemon_start(struct daemon *d, int workers)
{
	int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

	cr_assert_neq(fd, -1);
	d->pid = spawn_daemon(d->conf, workers, fd);
	close(fd);
	track(d->pid);
	cr_assert_lt(ndaemons, MAX_DAEMONS, "too many listqd starts");
	daemons[ndaemons].pid = d->pid;
	snprintf(daemons[ndaemons].log, sizeof(daemons[ndaemons].log), "%s",
	    d->log);
	ndaemons++;
	cr_assert(wait_until(daemon_started, d, 10000), "listqd did not start");
}

int
daemon_stop(struct daemon *d)
{
	int st = d->pid > 0 ? stop_pid(d->pid) : -1;
	char why[700];
	size_t i;

	/* Checked here, in the test itself, and its slot freed. */
	for (i = 0; i < ndaemons; i++)
		if (d->pid > 0 && daemons[i].pid == d->pid) {
			daemons[i].status = st;
			cr_assert(kills_expected || no_death(&daemons[i], why,
			    sizeof(why)), "%s", why);
			daemons[i] = daemons[--ndaemons];
			break;
		}
	d->pid = 0;
	return st;
}

int
daemon_run_once(const char *conf, int workers, char *err, size_t len)
{
	char path[600];
	size_t got;
	pid_t pid;
	char *text;
	int fd, st;

	snprintf(path, sizeof(path), "%s.once", T.spool);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_neq(fd, -1);
	pid = spawn_daemon(conf, workers, fd);
	close(fd);
	track(pid);
	st = stop_pid_after(pid);
	text = read_file(path, &got);
	snprintf(err, len, "%s", text);
	free(text);
	unlink(path);
	return st;
}

char *
daemon_log(const struct daemon *d)
{
	size_t len;

	if (access(d->log, F_OK) == -1)
		return strdup("");
	return read_file(d->log, &len);
}

size_t
log_count(const struct daemon *d, const char *needle)
{
	char *text = daemon_log(d), *p = text;
	size_t n = 0;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	free(text);
	return n;
}

/* A count of what's named in obj (log lines, rules fired) to wait on. */
struct at_least {
	size_t		(*count)(const void *, const char *);
	const void	*obj;
	const char	*what;
	size_t		 n;
};

static bool
reached(void *arg)
{
	const struct at_least *a = arg;

	return a->count(a->obj, a->what) >= a->n;
}

static size_t
count_logged(const void *d, const char *needle)
{
	return log_count(d, needle);
}

static size_t
count_fired(const void *s, const char *kind_verb)
{
	return sink_fired(s, kind_verb);
}

bool
log_wait(const struct daemon *d, const char *needle, size_t n, int ms)
{
	struct at_least a = { count_logged, d, needle, n };

	return wait_until(reached, &a, ms);
}

bool
sink_wait_fired(const struct sink *s, const char *kind_verb, size_t n,
    int ms)
{
	struct at_least a = { count_fired, s, kind_verb, n };

	return wait_until(reached, &a, ms);
}

static void
write_owned(const char *path, const char *text)
{
	write_text(path, text);
	if (T.root)
		cr_assert_eq(chown(path, T.svc_uid, T.svc_gid), 0);
}

void
make_list(const char *name, size_t members)
{
	char path[1024], *text;
	size_t i, len = 0;
	FILE *f;

	list_create(name);
	snprintf(path, sizeof(path), "%s/%s/config", T.lists, name);
	text = NULL;
	f = open_memstream(&text, &len);
	/* The delivery suites post from strangers; test_moderation gates. */
	fprintf(f, "address = %s@example.org\npost_policy = open\n", name);
	fclose(f);
	write_owned(path, text);
	free(text);
	snprintf(path, sizeof(path), "%s/%s/owners", T.lists, name);
	write_owned(path, "# the owners\nowner@example.org\n");
	f = open_memstream(&text, &len);
	fprintf(f, "# members of %s\n\n", name);
	for (i = 0; i < members; i++)
		fprintf(f, "m%zu@members.example\n", i);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s/members", T.lists, name);
	write_owned(path, text);
	free(text);
}

size_t
list_headers(char *buf, size_t len, const char *list, const char *archive)
{
	int n;

	n = snprintf(buf, len, "List-Id: <%s.example.org>\r\n"
	    "List-Help: <mailto:%s-request@example.org?subject=help>\r\n"
	    "List-Subscribe: <mailto:%s-request@example.org"
	    "?subject=subscribe>\r\n"
	    "List-Unsubscribe: <mailto:%s-request@example.org"
	    "?subject=unsubscribe>\r\n"
	    "List-Post: <mailto:%s@example.org>\r\n"
	    "List-Owner: <mailto:%s-owner@example.org>\r\n"
	    "%s%s%s"
	    "X-Loop: %s@example.org\r\n", list, list, list, list, list, list,
	    archive != NULL ? "List-Archive: <" : "",
	    archive != NULL ? archive : "", archive != NULL ? ">\r\n" : "",
	    list);
	cr_assert(n > 0 && (size_t)n < len, "list headers do not fit");
	return (size_t)n;
}

struct sink_n {
	const struct sink	*s;
	size_t			 n;
};

static bool
sink_has(void *arg)
{
	const struct sink_n *w = arg;

	return sink_count(w->s) >= w->n;
}

bool
sink_wait_count(const struct sink *s, size_t n, int ms)
{
	struct sink_n w = { s, n };

	return wait_until(sink_has, &w, ms);
}

/* Is the sink's "<addr>" addr? */
static bool
is_rcpt(const char *recorded, const char *addr)
{
	size_t n = strlen(addr);

	return recorded[0] == '<' && strncmp(recorded + 1, addr, n) == 0 &&
	    strcmp(recorded + 1 + n, ">") == 0;
}

size_t
sink_copies_to(const struct sink *s, const char *rcpt)
{
	struct txn *t;
	size_t n = sink_load(s, &t), i, k, c = 0;

	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt; k++)
			c += is_rcpt(t[i].rcpt[k], rcpt);
	txns_free(t, n);
	return c;
}

char *
sink_data_to(const struct sink *s, const char *rcpt)
{
	struct txn *t;
	size_t n = sink_load(s, &t), i, k;
	char *d = NULL;

	for (i = 0; i < n; i++)
		for (k = 0; k < t[i].nrcpt; k++)
			if (is_rcpt(t[i].rcpt[k], rcpt)) {
				cr_assert_null(d, "two copies to %s", rcpt);
				d = strdup(t[i].data);
				cr_assert_str_eq(t[i].from, "<>", "a notice "
				    "from %s, not <>", t[i].from);
			}
	txns_free(t, n);
	cr_assert_not_null(d, "nothing went to %s", rcpt);
	return d;
}

void
notice_token(const char *text, const char *action, char *tok, size_t len)
{
	char want[32];
	const char *p;
	size_t n;

	snprintf(want, sizeof(want), "%s-", action);
	cr_assert_not_null(p = strstr(text, want), "no %s token in %s",
	    action, text);
	n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-");
	cr_assert_lt(n, len);
	memcpy(tok, p, n);
	tok[n] = '\0';
}

/* A loopback TCP port with nothing listening, free when asked. */
int
unused_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_neq(fd, -1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

void
list_append(const char *list, const char *file, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", T.lists, list, file);
	cr_assert_not_null(f = fopen(path, "a"), "%s: %s", path,
	    strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

void
cert_make(const char *dir, const char *name)
{
	char crt[700], key[700];
	pid_t pid;
	int null;

	snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
	snprintf(key, sizeof(key), "%s/%s.key", dir, name);
	if (access(crt, R_OK) == 0 && access(key, R_OK) == 0)
		return;		/* made by an earlier test of this run */
	if ((pid = fork()) == 0) {
		null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execlp("openssl", "openssl", "req", "-x509", "-newkey",
		    "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-addext",
		    "subjectAltName=IP:127.0.0.1", "-days", "2", "-keyout", key,
		    "-out", crt, (char *)NULL);
		_exit(127);
	}
	cr_assert_neq(pid, -1);
	cr_assert_eq(reap_bounded(pid, 30000), 0, "openssl req failed");
	cr_assert_eq(chmod(crt, 0644), 0);
}
