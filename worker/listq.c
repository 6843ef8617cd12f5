/*
 * SPDX-License-Identifier: ISC
 *
 * listq: the admin command of listq.
 *
 *	listq [-f CONFIG] COMMAND [ARGS]
 *
 * Run by root or the service user only (anyone else: exit 77).  The
 * commands that change entries (flush, hold, release, delete, requeue)
 * go to a running listqd over SPOOLDIR/control, whose master passes each
 * to the worker owning the entry; with listqd stopped, listq takes the
 * spool's pidfile lock itself, which keeps listqd from starting, and
 * acts as the owner of every entry (admin_ops.c).  Reading the queue
 * needs no lock: entries and state files are replaced whole by rename.
 *
 * Invariants: listq renames, rewrites or unlinks an entry only while it
 * holds the spool lock (invariant 3); whatever it creates in the spool
 * or the list directory it creates as the service user (invariant 6):
 * root becomes the service before it touches either, and stays root only
 * to talk to listqd, which then logs the admin's real uid.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <bsd/libutil.h>

#include "admin.h"
#include "config.h"
#include "control.h"
#include "log.h"
#include "service.h"
#include "settings.h"
#include "spool.h"

#define LOCK_TRIES	25	/* times 200 ms: listqd may be starting */

static const struct command commands[] = {
	{ "status", cmd_status, NEED_DAEMON, "status [--json]",
	    "the daemon, its workers, the queue, recent deliveries, the "
	    "settings", NULL },
	{ "queue", cmd_queue, 0, "queue [--json] [--list LIST] [--deferred] "
	    "[--held] [--corrupt]", "one line per entry, oldest first", NULL },
	{ "show", cmd_show, 0, "show [--json] [--message] ID",
	    "an entry's header, state and recipients, or its message", NULL },
	{ "flush", cmd_entries, NEED_OWNER, "flush [ID... | -]",
	    "retry deferred entries now (all, or those named)", NULL },
	{ "hold", cmd_entries, NEED_OWNER, "hold ID... | - | --list LIST",
	    "put entries on hold: no delivery until released", NULL },
	{ "release", cmd_entries, NEED_OWNER, "release ID... | - | --all",
	    "release held entries: they are due at once", NULL },
	{ "delete", cmd_entries, NEED_OWNER, "delete ID... | - | --list LIST",
	    "remove entries for good (logged with your uid)", NULL },
	{ "requeue", cmd_entries, NEED_OWNER, "requeue ID... | -",
	    "attempt entries now with their backoff reset", NULL },
	{ "held", cmd_held, 0, "held [--json] [LIST]",
	    "posts waiting for a moderator", NULL },
	{ "approve", cmd_entries, NEED_OWNER, "approve ID...",
	    "deliver held posts to the members", NULL },
	{ "reject", cmd_reject, NEED_OWNER, "reject [--reason TEXT] ID...",
	    "refuse held posts, telling their senders", NULL },
	{ "discard", cmd_entries, NEED_OWNER, "discard ID...",
	    "drop held posts silently", NULL },
	{ "accept", cmd_accept, NEED_OWNER, "accept ADDRESS LIST",
	    "let a non-member post, and approve its held posts", NULL },
	{ "lists", cmd_lists, 0, "lists [--json]",
	    "every list with its address and member counts", NULL },
	{ "newlist", cmd_newlist, 0, "newlist NAME@DOMAIN OWNER...",
	    "create a list", NULL },
	{ "rmlist", cmd_rmlist, 0, "rmlist [--force] NAME",
	    "remove a list (refused while entries of it are queued)", NULL },
	{ "members", cmd_members, 0, "members NAME [list [--json] | "
	    "add ADDR... | remove ADDR... | import FILE | enable ADDR... | "
	    "disable ADDR...]", "show or change a list's members",
	    prep_members },
	{ "aliases", cmd_aliases, 0, "aliases [--mta postfix|exim|opensmtpd] "
	    "[--wrapper PATH]", "the MTA alias lines of every list", NULL },
	{ "check", cmd_check, NEED_DAEMON, "check [--wrapper PATH]",
	    "check the installation, one line per finding", NULL },
	{ "metrics", cmd_metrics, NEED_DAEMON, "metrics",
	    "Prometheus text format, for node_exporter's textfile collector",
	    NULL },
};
#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

static const struct command *current;

static void __attribute__((noreturn))
usage_all(FILE *f, int code)
{
	size_t i;

	fprintf(f, "usage: listq [-f CONFIG] COMMAND [ARGS]\n\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nEvery command takes --help.  See listq(8).\n");
	exit(code);
}

static void __attribute__((noreturn))
usage_command(FILE *f, int code)
{
	fprintf(f, "usage: listq %s\n       %s\n", current->usage,
	    current->help);
	exit(code);
}

void
usage_error(void)
{
	usage_command(stderr, EX_USAGE);
}

int
admin_opt(int argc, char **argv, const char *shortopts,
    const struct option *opts)
{
	static int started;
	int ch;

	if (!started) {
		optind = 0;	/* glibc: start over, after main's getopt */
		started = 1;
	}
	opterr = 0;
	if ((ch = getopt_long(argc, argv, shortopts, opts, NULL)) == '?' ||
	    ch == ':') {
		warnx("%s: bad option %s", current->name, argv[optind - 1]);
		usage_error();
	}
	return ch;
}

void
fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0 || localtime_r(&t, &tm) == NULL)
		strlcpy(buf, "-", len);
	else
		strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

void
fmt_age(long s, char *buf, size_t len)
{
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, len, "%lds", s);
	else if (s < 7200)
		snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
	else if (s < 172800)
		snprintf(buf, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%ldd%02ldh", s / 86400, s / 3600 % 24);
}

/* Splits one reply message into lines for fn; -1 if fn says stop. */
static int
lines(char *msg, int (*fn)(void *, char *), void *arg)
{
	char *line;

	while ((line = strsep(&msg, "\n")) != NULL)
		if (*line != '\0' && fn(arg, line) == -1)
			return -1;
	return 0;
}

int
ctl_ask(struct admin *a, const char *req, int (*fn)(void *, char *),
    void *arg)
{
	static char buf[CTL_REPLY_MAX + 1];
	time_t end = time(NULL) + CLIENT_WAIT;
	int fd = a->ctl, rc = -1;
	struct pollfd pf;
	ssize_t n;
	long left;

	a->ctl = -1;
	if (fd == -1 && (fd = ctl_connect(SPOOLDIR "/" SPOOL_CONTROL)) == -1)
		return -1;
	if (ctl_send(fd, req, strlen(req)) == 0) {
		for (;;) {
			pf = (struct pollfd){ .fd = fd, .events = POLLIN };
			if ((left = end - time(NULL)) < 0 ||
			    poll(&pf, 1, (int)left * 1000) <= 0)
				break;
			if ((n = recv(fd, buf, sizeof(buf) - 1, 0)) <= 0) {
				rc = n == 0 ? 0 : -1;
				break;
			}
			buf[n] = '\0';
			if (lines(buf, fn, arg) == -1) {
				rc = 0;
				break;
			}
		}
	}
	close(fd);
	return rc;
}

/*
 * listqd is not answering: take the spool lock and act as the owner.
 * A listqd that holds the lock may just be starting, so its socket is
 * tried again for a while before listq gives up.
 */
static void
take_spool(struct admin *a)
{
	char path[1024];
	pid_t other = 0;
	int i;

	snprintf(path, sizeof(path), "%s/%s", SPOOLDIR, SPOOL_PIDFILE);
	for (i = 0; i < LOCK_TRIES; i++) {
		if ((a->pfh = pidfile_open(path, 0600, &other)) != NULL) {
			if (pidfile_write(a->pfh) == -1)
				err(EX_TEMPFAIL, "pidfile %s", path);
			spool_view_open(&a->sv);
			a->ops = (struct adm){ .spoolfd = a->sv.spoolfd,
			    .holdfd = a->sv.holdfd, .corruptfd =
			    a->sv.corruptfd, .modfd = a->sv.modfd,
			    .bucketfd = a->sv.bucketfd, .who = a->who };
			return;
		}
		if (errno != EEXIST)
			err(EX_TEMPFAIL, "pidfile %s", path);
		if ((a->ctl = ctl_connect(SPOOLDIR "/" SPOOL_CONTROL)) != -1)
			return;
		usleep(200000);
	}
	errx(EX_TEMPFAIL, "the spool is locked by pid %ld (listqd, or another "
	    "listq), but %s/%s does not answer; nothing was changed",
	    (long)other, SPOOLDIR, SPOOL_CONTROL);
}

static const struct command *
find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0)
			return &commands[i];
	return NULL;
}

/* Does the command line ask for help (before any "--")? */
static bool
wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") ==
		    0)
			return true;
	return false;
}

static void
admin_init(struct admin *a)
{
	size_t i;

	memset(a, 0, sizeof(*a));
	a->config_path = SYSCONFDIR "/" CONFIG_FILE;
	a->ctl = -1;
	a->sv.spoolfd = a->sv.holdfd = a->sv.corruptfd = a->sv.modfd = -1;
	for (i = 0; i < QID_BUCKETS; i++)
		a->sv.bucketfd[i] = -1;
}

/*
 * Root keeps its uid only to ask listqd to act on entries; for anything
 * else, and to act on the spool itself, listq becomes the service.
 */
static void
settle(struct admin *a)
{
	if (current->flags & (NEED_DAEMON | NEED_OWNER))
		a->ctl = ctl_connect(SPOOLDIR "/" SPOOL_CONTROL);
	if ((current->flags & NEED_OWNER) && a->ctl != -1)
		return;
	service_become("listq");
	if (current->flags & NEED_OWNER)
		take_spool(a);
}

int
main(int argc, char *argv[])
{
	struct admin a;
	int ch, rc;

	log_init("listq", LOG_ERRORS_STDERR);
	admin_init(&a);
	if (argc > 1 && strcmp(argv[1], "--help") == 0)
		usage_all(stdout, 0);
	opterr = 0;
	while ((ch = getopt(argc, argv, "+f:h")) != -1) {
		if (ch == 'f') {
			a.config_path = optarg;
			a.config_given = 1;
		} else
			usage_all(ch == 'h' ? stdout : stderr, ch == 'h' ? 0 :
			    EX_USAGE);
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage_all(stderr, EX_USAGE);
	if (strcmp(argv[0], "help") == 0)
		usage_all(stdout, 0);
	if ((current = find_command(argv[0])) == NULL)
		errx(EX_USAGE, "unknown command \"%s\" (listq --help lists "
		    "them)", argv[0]);
	if (wants_help(argc, argv))
		usage_command(stdout, 0);
	service_check_caller("listq");
	a.who = getuid();
	if (current->prep != NULL)
		current->prep(&a, argc, argv);
	settle(&a);
	umask(077);
	rc = current->fn(&a, argc, argv);
	if (a.pfh != NULL)
		pidfile_remove(a.pfh);
	if (fflush(stdout) == EOF || ferror(stdout))
		err(EX_IOERR, "stdout");
	return rc;
}
