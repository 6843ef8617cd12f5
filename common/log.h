/*
 * SPDX-License-Identifier: ISC
 *
 * Logging: syslog with facility mail, one line per event, prefixed with
 * the queue id when there is one ("ID: text"), as Postfix does.  With
 * LOG_ALSO_STDERR (or LOG_ERRORS_STDERR, for warnings and errors only) the
 * same line goes to stderr, in one write(2).
 */
#ifndef LISTQ_LOG_H
#define LISTQ_LOG_H

#include <syslog.h>

#define LOG_ALSO_STDERR	0x1	/* every line to stderr too */
#define LOG_ERRORS_STDERR	0x2	/* warnings and errors to stderr too */

void	log_init(const char *ident, int flags);
void	log_msg(int prio, const char *qid, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/*
 * Called with every line logged from then on (after control characters
 * are replaced), before it is written: lets a listqd worker count the
 * deliveries it logs.  NULL removes it.
 */
typedef void (*log_hook_fn)(int prio, const char *qid, const char *text);
void	log_set_hook(log_hook_fn fn);
/* Logs at LOG_ERR (LOG_WARNING for EX_TEMPFAIL) and exit(3)s with ex. */
void	log_exit(int ex, const char *qid, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4), noreturn));

#endif
