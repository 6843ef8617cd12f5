/*
 * SPDX-License-Identifier: ISC
 *
 * listq check: what postfix check does for Postfix.  It looks at the
 * installed wrapper (owner root, group the first of MAIL_GIDS, mode 0750
 * with exactly cap_setuid,cap_setgid=ep, or setuid root 4750, in
 * directories nobody else can write), every file and directory of the
 * spool (the service's uid:gid, closed to others), the configuration,
 * every list's files, whether listqd answers, and whether the first
 * relay answers EHLO.  One line per finding: "ok:", "warning:" or
 * "error:"; the exit code is 1 when there was any error.
 *
 * Invariants: it changes nothing; every network wait is bounded.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <netdb.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "number.h"
#include "settings.h"
#include "spool.h"

#define WANT_CAPS	"cap_setuid,cap_setgid=ep"
#define RELAY_WAIT	10	/* seconds, at most, per relay step */
#define FILES_SHOWN	10	/* bad spool files named, at most */

static const gid_t mail_gids[] = { MAIL_GIDS };

static int errors;

static void
finding(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
finding(const char *level, const char *fmt, ...)
{
	va_list ap;

	errors += strcmp(level, "error") == 0;
	printf("%s: ", level);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* The file capabilities of path as text, "none" if it has none. */
static char *
caps_text(const char *path, int *exact)
{
	cap_t have = cap_get_file(path), want = cap_from_text(WANT_CAPS);
	char *t, *out;

	*exact = have != NULL && want != NULL && cap_compare(have, want) == 0;
	t = have != NULL ? cap_to_text(have, NULL) : NULL;
	out = strdup(t != NULL && t[0] != '\0' ? t : "none");
	cap_free(t);
	cap_free(have);
	cap_free(want);
	return out;
}

/* No directory above the wrapper may be writable by anyone but root. */
static void
check_parents(const char *path)
{
	char buf[1024], *dir = buf;
	struct stat st;

	strlcpy(buf, path, sizeof(buf));
	do {
		dir = dirname(dir);
		if (stat(dir, &st) == -1)
			continue;
		if (st.st_uid != 0 || ((st.st_mode & 022) != 0 &&
		    (st.st_mode & S_ISVTX) == 0))
			finding("error", "directory %s (uid %lu, mode %04o) "
			    "lets others replace the wrapper", dir,
			    (unsigned long)st.st_uid, st.st_mode & 07777);
	} while (strcmp(dir, "/") != 0 && strcmp(dir, ".") != 0);
}

static void
check_wrapper(const char *path)
{
	unsigned int mode;
	struct stat st;
	int exact, bad = 0;
	char *caps;

	if (stat(path, &st) == -1 || !S_ISREG(st.st_mode)) {
		finding("error", "wrapper %s: %s", path, errno != 0 ?
		    strerror(errno) : "not a regular file");
		return;
	}
	mode = st.st_mode & 07777;
	caps = caps_text(path, &exact);
	if (st.st_uid != 0 && ++bad)
		finding("error", "wrapper %s: owner uid %lu, want 0 (root)",
		    path, (unsigned long)st.st_uid);
	if (st.st_gid != mail_gids[0] && ++bad)
		finding("error", "wrapper %s: group %lu, want %lu (the first "
		    "of MAIL_GIDS)", path, (unsigned long)st.st_gid,
		    (unsigned long)mail_gids[0]);
	if (mode == 0750 && !exact && ++bad)
		finding("error", "wrapper %s: mode 0750 with capabilities %s, "
		    "want %s", path, caps, WANT_CAPS);
	else if (mode == 04750 && strcmp(caps, "none") != 0)
		finding("warning", "wrapper %s: setuid root and capabilities "
		    "%s: one install mode is enough", path, caps);
	else if (mode != 0750 && mode != 04750 && ++bad)
		finding("error", "wrapper %s: mode %04o, want 0750 with %s, or "
		    "4750 (setuid root)", path, mode, WANT_CAPS);
	if (!bad)
		finding("ok", "wrapper %s: root:%lu, mode %04o%s%s", path,
		    (unsigned long)st.st_gid, mode, mode == 0750 ? ", " : "",
		    mode == 0750 ? caps : "");
	free(caps);
	check_parents(path);
}

struct spool_scan {
	unsigned long	 files, bad;
};

/* One file or directory of the spool: the service's, closed to others. */
static void
check_file(struct spool_scan *s, int dirfd, const char *dir,
    const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return;		/* gone meanwhile: delivered */
	s->files++;
	if (st.st_uid == LISTQ_UID && st.st_gid == LISTQ_GID &&
	    (st.st_mode & 077) == 0 && !S_ISLNK(st.st_mode))
		return;
	if (s->bad++ < FILES_SHOWN)
		finding("error", "spool file %s/%s%s%s: uid:gid %lu:%lu, mode "
		    "%04o%s; want %d:%d, closed to group and others", SPOOLDIR,
		    dir, *dir ? "/" : "", name, (unsigned long)st.st_uid,
		    (unsigned long)st.st_gid, st.st_mode & 07777,
		    S_ISLNK(st.st_mode) ? ", a symbolic link" : "", LISTQ_UID,
		    LISTQ_GID);
}

static void
scan_dir(struct spool_scan *s, int dirfd, const char *dir, bool files_only)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1 || (d = fdopendir(fd)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") ==
		    0)
			continue;
		if (files_only && fstatat(dirfd, de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
			continue;	/* checked by spool_check */
		check_file(s, dirfd, dir, de->d_name);
	}
	closedir(d);
}

static void
check_spool(struct admin *a)
{
	struct spool_scan s = { 0, 0 };
	char why[512], name[16];
	unsigned int b;

	if (spool_check(SPOOLDIR, LISTQ_UID, LISTQ_GID, why, sizeof(why)) ==
	    -1) {
		finding("error", "spool: %s", why);
		return;
	}
	if (a->sv.spoolfd == -1)
		spool_view_open(&a->sv);
	scan_dir(&s, a->sv.spoolfd, "", true);
	scan_dir(&s, a->sv.holdfd, SPOOL_HOLD, false);
	scan_dir(&s, a->sv.corruptfd, SPOOL_CORRUPT, false);
	for (b = 0; b < QID_BUCKETS; b++) {
		snprintf(name, sizeof(name), "%s/%02x", SPOOL_QUEUE, b);
		scan_dir(&s, a->sv.bucketfd[b], name, false);
	}
	if (s.bad > FILES_SHOWN)
		finding("error", "spool: %lu more such files", s.bad -
		    FILES_SHOWN);
	else if (s.bad == 0)
		finding("ok", "spool %s: %u directories and %lu files, all "
		    "%d:%d and closed to others", SPOOLDIR, QID_BUCKETS + 5,
		    s.files, LISTQ_UID, LISTQ_GID);
}

static void
check_config(struct admin *a, struct config *c)
{
	char err[512];
	struct stat st;

	config_defaults(c);
	if (config_load(a->config_path, !a->config_given, c, err,
	    sizeof(err)) == -1)
		finding("error", "configuration: %s", err);
	else if (stat(a->config_path, &st) == -1)
		finding("ok", "configuration %s: absent, the defaults apply",
		    a->config_path);
	else
		finding("ok", "configuration %s", a->config_path);
}

static void
check_lists(void)
{
	struct list_info li;
	char **names;
	size_t n, i;

	names = list_names(&n);
	if (n == 0)
		finding("warning", "no lists in %s", LISTDIR);
	for (i = 0; i < n; i++) {
		list_info(names[i], &li);
		if (li.error[0] != '\0')
			finding("error", "list %s: %s", names[i], li.error);
		else if (li.bad > 0)
			finding("warning", "list %s: %zu bad line%s skipped, "
			    "the first: %s", names[i], li.bad, li.bad == 1 ?
			    "" : "s", li.first_bad);
		else if (li.owners == 0)
			finding("warning", "list %s: no owners", names[i]);
		else
			finding("ok", "list %s: %zu members (%zu disabled), "
			    "%zu owner%s", names[i], li.members, li.members -
			    li.enabled, li.owners, li.owners == 1 ? "" : "s");
		if (li.error[0] == '\0' && li.lc.post_policy == POLICY_OPEN)
			finding("warning", "list %s: post_policy = open: anyone "
			    "on the internet reaches every member", names[i]);
	}
	free_names(names, n);
}

static int
pong(void *arg, char *line)
{
	uint64_t pid;

	if (strncmp(line, "pong ", 5) == 0 &&
	    number_parse(line + 5, LONG_MAX, &pid) == 0)
		*(long *)arg = (long)pid;
	return -1;
}

static void
check_daemon(struct admin *a)
{
	long pid = 0;

	if (ctl_ask(a, "ping", pong, &pid) == 0 && pid > 0)
		finding("ok", "listqd (pid %ld) answers on %s/%s", pid,
		    SPOOLDIR, SPOOL_CONTROL);
	else
		finding("error", "listqd does not answer on %s/%s: it is not "
		    "running", SPOOLDIR, SPOOL_CONTROL);
}

/* The three digits that open a reply line "NNN-" or "NNN "; else 0. */
static int
reply_code(const char *line)
{
	const char *end;
	uint64_t code;

	if (number_scan(line, 999, &code, &end) == -1 || end != line + 3)
		return 0;
	return (int)code;
}

/* Reads one SMTP reply; its code, or -1; its first line into text. */
static int
smtp_reply(int fd, char *text, size_t len)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	char buf[4096], *line, *nl;
	size_t got = 0;
	ssize_t n;

	text[0] = '\0';
	for (;;) {
		if (poll(&pf, 1, RELAY_WAIT * 1000) != 1 ||
		    (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = '\0';
		for (line = buf; (nl = strstr(line, "\r\n")) != NULL;
		    line = nl + 2) {
			*nl = '\0';
			if (strlen(line) < 4 || (line[3] != ' ' &&
			    line[3] != '-'))
				return -1;
			if (text[0] == '\0')
				strlcpy(text, line, len);
			if (line[3] == ' ')
				return reply_code(line);
		}
		got = strlen(line);
		memmove(buf, line, got + 1);
		if (got >= sizeof(buf) - 1)
			return -1;
	}
}

/* connect(2) within RELAY_WAIT seconds; 0, or -1 with errno. */
static int
connect_within(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct pollfd pf = { .fd = fd, .events = POLLOUT };
	socklen_t elen = sizeof(int);
	int e = 0;

	if (connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -1;
	if (poll(&pf, 1, RELAY_WAIT * 1000) != 1) {
		errno = ETIMEDOUT;
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == -1)
		return -1;
	errno = e;
	return e == 0 ? 0 : -1;
}

/* A blocking connection to host:port, or -1 (the error reported). */
static int
connect_relay(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *r;
	int fd = -1, e;

	if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
		finding("error", "relay %s:%s: %s", host, port,
		    gai_strerror(e));
		return -1;
	}
	for (r = res; r != NULL && fd == -1; r = r->ai_next) {
		fd = socket(r->ai_family, r->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd != -1 && connect_within(fd, r->ai_addr,
		    r->ai_addrlen) == -1) {
			e = errno;
			close(fd);
			fd = -1;
			errno = e;
		}
	}
	freeaddrinfo(res);
	if (fd == -1)
		finding("error", "relay %s:%s: %s", host, port,
		    strerror(errno));
	else
		fcntl(fd, F_SETFL, 0);
	return fd;
}

static void
check_relay(const struct config *c)
{
	char list[CONFIG_STR_MAX], *p = list, *item, *colon, line[512],
	    cmd[300];
	const char *port = "25";
	int fd, code;

	strlcpy(list, c->smarthost, sizeof(list));
	while ((item = strsep(&p, ",")) != NULL && *(item += strspn(item,
	    " ")) == '\0')
		continue;
	if (item == NULL) {
		finding("error", "relay: smarthost names none");
		return;
	}
	item[strcspn(item, " ")] = '\0';
	if ((colon = strrchr(item, ':')) != NULL) {
		*colon = '\0';
		port = colon + 1;
	}
	if ((fd = connect_relay(item, port)) == -1)
		return;
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", c->helo_name);
	if ((code = smtp_reply(fd, line, sizeof(line))) != 220)
		finding("error", "relay %s:%s: greeting %s", item, port,
		    code == -1 ? "missing" : line);
	else if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) == -1 ||
	    (code = smtp_reply(fd, line, sizeof(line))) != 250)
		finding("error", "relay %s:%s: EHLO answered %s", item, port,
		    code == -1 ? "nothing" : line);
	else
		finding("ok", "relay %s:%s answers EHLO: %s", item, port, line);
	send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL);
	close(fd);
}

int
cmd_check(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wrapper", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 } };
	const char *wrapper = LIBEXECDIR "/listq-wrapper";
	struct config c;

	while (admin_opt(argc, argv, "", opts) != -1)
		wrapper = optarg;
	if (optind != argc)
		usage_error();
	check_wrapper(wrapper);
	check_spool(a);
	check_config(a, &c);
	check_lists();
	check_daemon(a);
	check_relay(&c);
	return errors > 0 ? 1 : 0;
}
