/*
 * SPDX-License-Identifier: ISC
 *
 * smtp.h -- a batch of spooled messages sent to one relay over listqd's
 * own SMTP client (smtp_session.c), several sessions at once.
 *
 * One call sends msgs[0..n) to the relay and reports, for every message
 * and every recipient, what the relay answered.  The messages of one
 * entry (consecutive msgs with the same app pointer) travel in one
 * session, in order: an entry is in at most one session at a time.  Up
 * to smtp_relay.sessions sessions run side by side from one poll loop,
 * each taking the next entry when it has finished the last, and the
 * caller's done callback records each transaction before that session
 * starts its next (invariant 4).
 *
 * The bytes the relay receives: the prepend lines, then the spooled
 * message from start to end with insert placed at insert_at; line ends
 * made CRLF (a bare CR too), dot-stuffed under DATA, lines over 998
 * octets folded.  No header is added, dropped or reordered.
 *
 * STARTTLS (smtp_relay.tls): TLS_NONE never; TLS_MAY when offered, any
 * certificate (logged "Untrusted TLS connection" when it does not
 * verify); TLS_ENCRYPT and TLS_VERIFY require TLS with a certificate
 * that chains to tls_ca_file (or the system's store) and names the relay
 * (smtp_tls = encrypt is read as verify, as before: see config.c).
 * Otherwise no MAIL is sent and every message is deferred, reply "TLS
 * required but not offered by relay" or "TLS certificate of relay not
 * trusted: ...".  Each TLS session is logged once, as Postfix does.
 *
 * AUTH (auth_user, auth_password_file): PLAIN, else LOGIN, sent only
 * over TLS with a verified certificate, or in clear text with TLS_NONE
 * (the admin's statement that the path is trusted).  Otherwise, or with
 * no AUTH offered, or a 535, every message is deferred ("AUTH not
 * attempted: ...", "authentication failed: 535 ...").  The password is
 * the first line of the file, read at each call; a file that group or
 * others may access is refused.  It is never logged nor put in a reply.
 *
 * SIZE and 8BITMIME: each MAIL carries SIZE= (smtp_msg.size or an
 * estimate) when offered, and BODY=8BITMIME for an 8-bit message when
 * offered.  552 to MAIL, or 552 after the data, fails the message
 * ("message too big for relay (N bytes, limit L): 552 ...").
 *
 * Outcome of a recipient (smtp_session.h): 2 delivered, 4 deferred, 5
 * failed, with the deciding code, enhanced code and one line of reply.
 */
#ifndef LISTQ_SMTP_H
#define LISTQ_SMTP_H

#include <sys/types.h>

#include <stddef.h>

#include "smtp_session.h"

struct smtp_msg {		/* one message, one transaction */
	const char	*sender;	/* envelope sender, "" = <> */
	int		 fd;		/* spool file, read with pread only */
	off_t		 start;		/* its first message byte */
	off_t		 end;		/* its size; 0: read up to EOF */
	const char	*prepend;	/* header lines, each ending in "\n" */
	const char	*insert;	/* text inserted where the stream reaches */
	off_t		 insert_at;	/* this file offset (subject prefix) */
	off_t		 size;		/* bytes for SIZE=; 0: estimated here */
	int		 eightbit;	/* 8-bit body: BODY=8BITMIME if offered */
	struct smtp_rcpt *rcpts;
	size_t		 nrcpts;
	void		*app;		/* the caller's: one entry's messages */
	int		 reported;	/* out: given to relay->done already */
	int		 untried;	/* out: never offered to the relay */
	int		 status;	/* out: 2 accepted at end of data, 4, 5 */
	char		 reply[SMTP_REPLY_MAX];	/* out: final reply or error */
};

/* Timeouts in seconds; 0 takes the default shown. */
struct smtp_relay {
	const char	*host;		/* name, IPv4 or [IPv6] address */
	const char	*port;		/* NULL = "25" */
	int		 connect_timeout;	/* 30 */
	int		 cmd_timeout;	/* 300: greeting, EHLO, MAIL, RCPT, DATA */
	int		 data_timeout;	/* 600: each body write, end of data */
	const char	*helo;		/* NULL = the node name */
	int		 tls;		/* TLS_NONE ... TLS_VERIFY */
	int		 no_pipelining;	/* one command at a time */
	const char	*tls_ca_file;	/* NULL: the system's CA store */
	const char	*auth_user;	/* NULL: no AUTH */
	const char	*auth_password_file; /* read at each call */
	unsigned	 sessions;	/* at most this many at once; 0 = 1 */
	/*
	 * Called as each transaction ends, with its outcome filled in, so
	 * that the caller records it before the session starts the next.
	 * A non-zero return starts no new transaction (the ones in flight
	 * end).  NULL: not called.
	 */
	int		(*done)(struct smtp_msg *m, const char *relay,
			    void *arg);
	void		*done_arg;
};

/* How the last smtp_deliver went, for the worker's session log line. */
struct smtp_stats {
	unsigned	sessions;	/* sessions that greeted */
	int		nodelay;	/* TCP_NODELAY read back: 1, 0, -1 */
	unsigned long	quickacks;	/* TCP_QUICKACK re-armed */
	unsigned long	pipelined;	/* transactions sent as one group */
};

/*
 * Send msgs[0..n) to the relay.  relay_out receives "host[ip]:port" of
 * the relay that answered, or "none".
 *
 * Returns 0 when a session ran: look at each message and recipient.
 * Returns 1 when a session was set up (greeting and EHLO accepted, TLS
 * and AUTH as configured) and the relay ended one early (421, lost
 * connection, timeout), even before any MAIL was answered; the caller
 * stopping it is not that.  Returns -1 with errno set (ECONNREFUSED,
 * ETIMEDOUT, EHOSTUNREACH, EPROTO for a refusing greeting or EHLO and
 * for TLS or AUTH that stopped the session, EINVAL for a missing host,
 * ENOMEM) when no session was set up and no message could be tried:
 * then every message and recipient is deferred (status 4) and carries
 * the reason in reply.
 *
 * A session that ended early (421, lost connection, timeout) defers the
 * transaction in flight and leaves the later messages of its entry
 * untried: the relay never saw them.  Entries no session took are
 * untried too.
 *
 * Input that would inject SMTP commands or headers is refused per item:
 * a recipient address or sender with control characters, '<' or '>'
 * fails that recipient or message (5); a prepend that is not a list of
 * header lines defers the message (4).
 */
int	smtp_deliver(const struct smtp_relay *, struct smtp_msg *msgs, size_t n,
	    char *relay_out, size_t relay_len);
void	smtp_last_stats(struct smtp_stats *);

#endif
