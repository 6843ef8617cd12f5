/*
 * SPDX-License-Identifier: ISC
 *
 * Build-time settings, compiled into every program (the Makefile passes
 * them; `listq status` shows them).  The privileged wrapper takes its
 * identities and paths from here only: never from the environment, a
 * configuration file or the name service.
 */
#ifndef LISTQ_SETTINGS_H
#define LISTQ_SETTINGS_H

#ifndef PREFIX
#define PREFIX		"/usr/local"
#endif
#ifndef LIBEXECDIR
#define LIBEXECDIR	PREFIX "/lib/listq"
#endif
#ifndef SYSCONFDIR
#define SYSCONFDIR	PREFIX "/etc"
#endif
#ifndef SPOOLDIR
#define SPOOLDIR	"/var/spool/listq"
#endif
#ifndef LISTDIR
#define LISTDIR		"/var/lib/listq/lists"
#endif
#ifndef LISTQ_USER
#define LISTQ_USER	"mailman"
#endif
#ifndef LISTQ_UID
#define LISTQ_UID	41
#endif
#ifndef LISTQ_GID
#define LISTQ_GID	41
#endif
/* Comma-separated gids allowed to run the wrapper, e.g. 65534,110. */
#ifndef MAIL_GIDS
#define MAIL_GIDS	65534
#endif
#ifndef MAX_MESSAGE_SIZE
#define MAX_MESSAGE_SIZE	(10 * 1024 * 1024)
#endif
/*
 * A setting as text.  Variadic, because a value may hold commas
 * (MAIL_GIDS=991,65534 arrives as two macro arguments otherwise).
 */
#define SETTING_TEXT_(...)	#__VA_ARGS__
#define SETTING_TEXT(...)	SETTING_TEXT_(__VA_ARGS__)

/*
 * Free bytes the spool's file system must have for the wrapper to take a
 * message (Postfix's queue_minfree): below it the wrapper answers 75
 * and writes nothing, so what is left stays for listqd's own writes
 * (state records, DSNs, notices, the pidfile).  A message takes at most
 * MAX_MESSAGE_SIZE of it; the default, four times that or 32 MiB,
 * whichever is larger, keeps at least three times that for listqd.
 */
#define SPOOL_RESERVE_FLOOR	(32LL * 1024 * 1024)
#ifndef SPOOL_RESERVE
#define SPOOL_RESERVE	(4LL * (MAX_MESSAGE_SIZE) > SPOOL_RESERVE_FLOOR ? \
			 4LL * (MAX_MESSAGE_SIZE) : SPOOL_RESERVE_FLOOR)
#endif

#ifndef LISTQ_VERSION
#define LISTQ_VERSION	"0.1"
#endif

#endif
