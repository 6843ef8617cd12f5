/*
 * SPDX-License-Identifier: ISC
 *
 * Logging to syslog (facility mail) and, on request, to stderr.
 *
 * Invariants: a message is formatted once into a bounded buffer (never
 * vsprintf, never a caller's string as format), control characters are
 * replaced so that one event is one line, and stderr gets the line in a
 * single write so that concurrent writers do not interleave.
 *
 * When nothing listens on the syslog socket (no /dev/log: a container, a
 * chroot), syslog(3) drops each line only after it has made, connected
 * and closed a socket for it.  So the socket is probed at most once a
 * second instead; while it is missing, syslog(3) is not called and a
 * line goes only where the flags send it (stderr with listqd -F), as
 * before, just without the socket per line.  It is used again once it
 * is back.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	1024
#define SYSLOG_PATH	"/dev/log"	/* glibc's _PATH_LOG */

static const char *log_ident = "listq";
static int log_flags;
static log_hook_fn log_hook;
static time_t syslog_checked = -1;	/* monotonic second of the last probe */
static int syslog_up;

/* Does a datagram to the syslog socket have a listener?  One probe. */
static int
syslog_probe(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, ok;

	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return 1;	/* let syslog(3) try, and fail, itself */
	strlcpy(sun.sun_path, SYSLOG_PATH, sizeof(sun.sun_path));
	ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return ok;
}

/* Is syslog worth a call?  Asked again at most once a second. */
static int
syslog_usable(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == -1)
		return 1;
	if (syslog_checked == -1 || ts.tv_sec != syslog_checked) {
		syslog_checked = ts.tv_sec;
		syslog_up = syslog_probe();
	}
	return syslog_up;
}

void
log_set_hook(log_hook_fn fn)
{
	log_hook = fn;
}

void
log_init(const char *ident, int flags)
{
	log_ident = ident;
	log_flags = flags;
	openlog(ident, LOG_PID, LOG_MAIL);
}

static void
log_line(int prio, const char *qid, const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX], line[LOG_LINE_MAX + 128];
	char *p;
	int n;

	vsnprintf(text, sizeof(text), fmt, ap);
	for (p = text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (log_hook != NULL)
		log_hook(prio, qid, text);
	if (!syslog_usable())
		;
	else if (qid != NULL)
		syslog(prio, "%s: %s", qid, text);
	else
		syslog(prio, "%s", text);
	if ((log_flags & LOG_ALSO_STDERR) == 0 &&
	    ((log_flags & LOG_ERRORS_STDERR) == 0 || prio > LOG_WARNING))
		return;
	n = snprintf(line, sizeof(line), "%s: %s%s%s\n", log_ident,
	    qid != NULL ? qid : "", qid != NULL ? ": " : "", text);
	if (n > 0 && (size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void
log_msg(int prio, const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(prio, qid, fmt, ap);
	va_end(ap);
}

void
log_exit(int ex, const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(ex == EX_TEMPFAIL ? LOG_WARNING : LOG_ERR, qid, fmt, ap);
	va_end(ap);
	exit(ex);
}
