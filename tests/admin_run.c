/*
 * SPDX-License-Identifier: ISC
 *
 * Running listq from the tests (see admin_run.h).
 *
 * As root the child becomes the chosen test user the way a login does
 * (its groups, then real, effective and saved ids), so that listq sees
 * exactly what that user would.  Every child is reaped; one that
 * outlives RUN_MS is killed by pid.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "admin_run.h"
#include "harness.h"

#define RUN_MS		240000
#define MAX_ARGS	32

static const char *const child_env[] = { "PATH=/usr/bin:/bin", "LC_ALL=C",
	"TZ=UTC", NULL };

static void
become(enum who who)
{
	uid_t uid = who == AS_SERVICE ? T.svc_uid : who == AS_STRANGER ?
	    T.stranger_uid : T.caller_uid;
	gid_t gid = who == AS_SERVICE ? T.svc_gid : who == AS_STRANGER ?
	    T.stranger_gid : T.caller_gid;
	struct passwd *pw;

	if (who == AS_ME || !T.root)
		return;
	if ((pw = getpwuid(uid)) == NULL || initgroups(pw->pw_name, gid) ==
	    -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(uid, uid, uid) == -1)
		_exit(126);
}

static pid_t
spawn(const char *const *argv, enum who who, int in, int out, int err)
{
	const char *listq = getenv("LISTQ_TEST_LISTQ"), *vg[VALGRIND_ARGS +
	    MAX_ARGS];
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid != 0)
		return pid;
	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	become(who);
	if (listq != NULL && strcmp(argv[0], listq) == 0)	/* not python3 */
		argv = under_valgrind(argv, vg, VALGRIND_ARGS + MAX_ARGS);
	execve(argv[0], (char *const *)argv, (char *const *)child_env);
	_exit(127);
}

static void
append(char **buf, size_t *len, const char *data, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	cr_assert_not_null(*buf);
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/* Feeds input, collects out and err until both end or time runs out. */
static void
exchange(int in, int out, int err, const char *input, size_t len,
    struct out *o)
{
	time_t end = time(NULL) + (time_t)(RUN_MS / 1000) * time_factor();
	struct pollfd pf[3];
	size_t off = 0;
	char buf[65536];
	ssize_t n;

	if (in != -1)
		fcntl(in, F_SETFL, O_NONBLOCK);
	while ((out != -1 || err != -1) && time(NULL) < end) {
		if (in != -1 && off >= len) {
			close(in);
			in = -1;
		}
		pf[0] = (struct pollfd){ .fd = in, .events = POLLOUT };
		pf[1] = (struct pollfd){ .fd = out, .events = POLLIN };
		pf[2] = (struct pollfd){ .fd = err, .events = POLLIN };
		if (poll(pf, 3, 200) <= 0)
			continue;
		if (in != -1 && (pf[0].revents & (POLLOUT | POLLERR))) {
			n = write(in, input + off, len - off);
			off = n > 0 ? off + (size_t)n : (n == -1 && errno ==
			    EAGAIN ? off : len);
		}
		for (int k = 1; k <= 2; k++) {
			int *fd = k == 1 ? &out : &err;

			if (*fd == -1 || !(pf[k].revents & (POLLIN | POLLHUP)))
				continue;
			if ((n = read(*fd, buf, sizeof(buf))) <= 0) {
				close(*fd);
				*fd = -1;
			} else if (k == 1)
				append(&o->out, &o->outlen, buf, (size_t)n);
			else
				append(&o->err, &o->errlen, buf, (size_t)n);
		}
	}
	if (in != -1)
		close(in);
	if (out != -1)
		close(out);
	if (err != -1)
		close(err);
}

static void
out_init(struct out *o)
{
	memset(o, 0, sizeof(*o));
	o->out = calloc(1, 1);
	o->err = calloc(1, 1);
}

void
run_prog(const char *const *argv, enum who who, const char *input,
    size_t len, struct out *o)
{
	int in[2], out[2], err[2];
	pid_t pid;

	out_init(o);
	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
	pid = spawn(argv, who, in[0], out[1], err[1]);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	exchange(in[1], out[0], err[0], input != NULL ? input : "", len, o);
	o->status = reap_bounded(pid, RUN_MS);
}

void
out_free(struct out *o)
{
	free(o->out);
	free(o->err);
	memset(o, 0, sizeof(*o));
}

int
listq_as(struct out *o, enum who who, const char *arg, ...)
{
	const char *argv[MAX_ARGS];
	va_list ap;
	int n = 0;

	argv[n++] = getenv("LISTQ_TEST_LISTQ");
	cr_assert_not_null(argv[0], "LISTQ_TEST_LISTQ is not set");
	va_start(ap, arg);
	for (; arg != NULL && n < MAX_ARGS - 1; arg = va_arg(ap, const char *))
		argv[n++] = arg;
	va_end(ap);
	argv[n] = NULL;
	run_prog(argv, who, NULL, 0, o);
	return o->status;
}

pid_t
listq_start(int *in, int *outfd, const char *const *args)
{
	const char *argv[MAX_ARGS];
	int pin[2], pout[2], n = 0;
	pid_t pid;

	argv[n++] = getenv("LISTQ_TEST_LISTQ");
	cr_assert_not_null(argv[0]);
	while (*args != NULL && n < MAX_ARGS - 1)
		argv[n++] = *args++;
	argv[n] = NULL;
	cr_assert_eq(pipe2(pin, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(pout, O_CLOEXEC), 0);
	pid = spawn(argv, AS_ME, pin[0], pout[1], pout[1]);
	close(pin[0]);
	close(pout[1]);
	*in = pin[1];
	*outfd = pout[0];
	return pid;
}

int
listq_finish(pid_t pid, int in, int outfd, struct out *o)
{
	out_init(o);
	close(in);
	exchange(-1, outfd, -1, "", 0, o);
	o->status = reap_bounded(pid, RUN_MS);
	return o->status;
}

static void
python(const char *script, const char *text, const char *what)
{
	const char *argv[] = { "/usr/bin/python3", "-c", script, NULL };
	struct out o;

	run_prog(argv, AS_ME, text, strlen(text), &o);
	cr_assert_eq(o.status, 0, "%s check failed (%d): %s\n--- the text:\n%s",
	    what, o.status, o.err, text);
	out_free(&o);
}

void
assert_json(const char *text, const char *expr)
{
	char script[4096];

	snprintf(script, sizeof(script), "import json, sys\n"
	    "d = json.load(sys.stdin)\n"
	    "sys.exit(0 if (%s) else 3)\n", expr);
	python(script, text, expr);
}

void
assert_prom(const char *text, const char *expr)
{
	char script[8192];

	snprintf(script, sizeof(script), "import re, sys\n"
	    "m, types = {}, {}\n"
	    "label = r'[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\.)*\"'\n"
	    "sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{' + label +"
	    " r'(?:,' + label + r')*\\})? '\n"
	    "    r'(-?[0-9.]+(?:e[+-]?[0-9]+)?|\\+Inf)$')\n"
	    "for line in sys.stdin.read().split('\\n')[:-1]:\n"
	    "    if line.startswith('# HELP '):\n"
	    "        continue\n"
	    "    if line.startswith('# TYPE '):\n"
	    "        _, _, name, t = line.split(' ')\n"
	    "        assert t in ('gauge', 'counter', 'histogram'), line\n"
	    "        assert name not in types, 'TYPE twice: ' + name\n"
	    "        types[name] = t\n"
	    "        continue\n"
	    "    s = sample.match(line)\n"
	    "    assert s, 'not a sample: ' + line\n"
	    "    base = re.sub('_(bucket|sum|count)$', '', s.group(1))\n"
	    "    assert s.group(1) in types or types.get(base) == 'histogram',"
	    " 'no TYPE for ' + line\n"
	    "    m[s.group(1) + (s.group(2) or '')] = float(s.group(3))\n"
	    "sys.exit(0 if (%s) else print(m, file=sys.stderr) or 3)\n", expr);
	python(script, text, expr);
}
