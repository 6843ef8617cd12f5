/*
 * Logging to syslog (facility mail) and, on request, to stderr.
 *
 * Invariants: a message is formatted once into a bounded buffer (never
 * vsprintf, never a caller's string as format), control characters are
 * replaced so that one event is one line, and stderr gets the line in a
 * single write so that concurrent writers do not interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	1024

static const char *log_ident = "listq";
static int log_flags;
static log_hook_fn log_hook;

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
	if (qid != NULL)
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
