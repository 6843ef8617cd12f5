/*
 * SPDX-License-Identifier: ISC
 *
 * listq.conf: "key = value" lines, '#' comments, blank lines ignored.
 * Durations take a unit suffix s, m, h or d (default seconds), as in
 * Postfix.  Unknown keys and bad values are errors that name the file,
 * the line and the key: a daemon refuses to start rather than guess.
 */
#ifndef LISTQ_CONFIG_H
#define LISTQ_CONFIG_H

#include <stddef.h>

#define CONFIG_FILE	"listq/listq.conf"	/* below SYSCONFDIR */
#define CONFIG_STR_MAX	512

struct config {
	char		smarthost[CONFIG_STR_MAX];	/* host[:port], ... */
	char		helo_name[256];			/* default: hostname */
	unsigned int	workers;
	unsigned int	max_messages_per_session;
	unsigned int	max_rcpts_per_transaction;
	unsigned int	connect_timeout;	/* seconds */
	unsigned int	command_timeout;
	unsigned int	data_timeout;
	unsigned int	min_backoff;
	unsigned int	max_backoff;
	unsigned int	max_queue_lifetime;
	unsigned int	rescan_interval;
	unsigned int	smarthost_backoff;	/* a relay's first pause */
	unsigned int	relay_retry_time;	/* its longest pause */
	unsigned int	delay_warning_time;	/* 0: no delay warnings */
	char		recipient_delimiter[2];	/* VERP: name-bounces+u=h@d */
	unsigned int	bounce_score_threshold;	/* in tenths: 50 = 5.0 */
	unsigned int	bounce_info_stale_after;
	unsigned int	smtp_tls;		/* TLS_NONE, TLS_MAY, ... */
	unsigned int	smtp_pipelining;	/* 0: never pipeline */
	unsigned int	smtp_sessions;		/* per worker, at once */
	char		smtp_tls_ca_file[CONFIG_STR_MAX];
	char		smtp_auth_user[256];
	char		smtp_auth_password_file[CONFIG_STR_MAX];
	char		dns_resolver[CONFIG_STR_MAX];	/* ""= resolv.conf */
	unsigned int	dns_timeout;		/* one DMARC lookup, seconds */
	unsigned int	dmarc_defer_time;	/* wait for DNS, then mitigate */
	unsigned int	moderation_lifetime;	/* a held post, then discarded */
	unsigned int	subscribe_lifetime;	/* a pending (un)subscription */
	unsigned int	subscribe_confirm_daily;  /* per address, all lists */
	unsigned int	subscribe_confirm_hourly; /* all addresses */
};

enum { TLS_NONE, TLS_MAY, TLS_ENCRYPT, TLS_VERIFY };

/* Fills c with the documented defaults. */
void	config_defaults(struct config *c);

/*
 * Reads path over the defaults already in c.  A missing file is not an
 * error when missing_ok.  On error returns -1 with "FILE:LINE: ..." in err.
 */
int	config_load(const char *path, int missing_ok, struct config *c,
	    char *err, size_t errlen);

/*
 * The reader behind config_load, for any file of the same syntax: fn is
 * called with each key and value (trimmed) and returns NULL or what is
 * wrong with the value.
 */
typedef const char *(*conf_handler)(const char *key, const char *value,
	    void *arg);
int	conf_read(const char *path, conf_handler fn, void *arg, char *err,
	    size_t errlen);

#endif
