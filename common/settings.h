/*
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

#ifndef LISTQ_VERSION
#define LISTQ_VERSION	"0.1"
#endif

#endif
