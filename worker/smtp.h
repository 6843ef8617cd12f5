/*
 * smtp.h -- the SMTP delivery layer of listqd, on top of libESMTP.
 *
 * One call sends a batch of messages over one SMTP session to the
 * smarthost and reports, for every message and every recipient, what
 * the server answered.  The bytes the server receives are the spooled
 * message, LF turned into CRLF, with only the prepend lines added in
 * front: libESMTP's own header rewriting (added Date:, From:,
 * Message-Id:, dropped Return-Path: and repeated To:/Cc:) is bypassed,
 * see smtp.c.
 *
 * The executable must be linked with worker/sockopt.c, libesmtp
 * (pkg-config libesmtp-1.0) and OpenSSL (openssl), dynamically:
 * smtp_deliver() refuses to run (-1, ENOSYS, every message deferred) if
 * the socket and SSL hooks of sockopt.c are not in effect, since without
 * them the byte-exact transfer cannot be guaranteed.
 *
 * STARTTLS (smtp_relay.tls): TLS_NONE never starts TLS (the relay is on
 * a trusted path); TLS_MAY uses it when the relay offers it, and goes on
 * (logging "Untrusted TLS connection") if the certificate does not
 * verify; TLS_ENCRYPT requires it with a certificate that chains to
 * tls_ca_file (or the system's store) and names the relay (host name or
 * IPv4 address): otherwise no MAIL is sent and every message is
 * deferred, reply "TLS required but not offered by relay" or "TLS
 * certificate of relay not trusted: ...".  A TLS session is logged once,
 * as Postfix does ("Verified TLS connection established to ...").
 *
 * AUTH (auth_user, auth_password_file): the first mechanism in the
 * relay's list that libESMTP has a plugin for (PLAIN, LOGIN, CRAM-MD5),
 * sent only if the relay offers AUTH.  The password
 * is the first line of the file, read at each session; a file that group
 * or others may access is refused (logged, every message deferred).
 * With auth_user set, no MAIL is sent unless the relay said 235: a 535
 * (tried once per session), no AUTH offered, or no usable mechanism
 * defers every message with the relay's reply or the reason.  The
 * password goes out only over TLS, or in clear text when tls is TLS_NONE
 * (the admin's statement that the path is trusted, e.g. a relay on the
 * same host); with TLS_MAY and a relay that offers no STARTTLS the mail
 * waits ("AUTH not attempted") rather than showing the password on the
 * wire.  It is never logged nor put in a reply.
 *
 * SIZE and 8BITMIME: each MAIL carries SIZE=smtp_msg.size (or an
 * estimate) when the relay offers SIZE, and BODY=8BITMIME for a message
 * with eightbit set when the relay offers 8BITMIME (an 8-bit message
 * goes as it is to a relay that does not).  A 552 to MAIL, or 552 5.3.4
 * after the data, fails the message's recipients (5, "5.3.4", reply
 * "message too big for relay (N bytes, limit L): 552 ...").
 *
 * Outcome of a recipient (struct smtp_rcpt.status):
 *   0  not looked at (only before the call)
 *   2  delivered: the server accepted the message for it
 *   4  deferred: retry later (4xx, 552 to RCPT as RFC 5321 says, lost
 *      connection, timeout, 421, local read error, TLS or AUTH that
 *      could not be had as configured)
 *   5  failed: permanent refusal (5xx other than 552 to RCPT; a
 *      message too big for the relay)
 * code is the SMTP reply code that decided it, 0 when none did (the
 * recipient was never tried, or the connection was lost or timed out
 * before the end-of-data reply).  enh is the RFC 3463 status: the
 * server's if it gave one, else derived from the outcome ("4.4.2" for a
 * lost connection, "4.4.1" for no connection, "2.0.0", "4.0.0", "5.0.0"
 * from the code), with class 4 for a 552 to RCPT.  reply is one line
 * of printable ASCII: "250 2.0.0 Ok: queued as X" or our own text.
 */

#ifndef LISTQ_SMTP_H
#define LISTQ_SMTP_H

#include <sys/types.h>

#include <stddef.h>

#define SMTP_REPLY_MAX	256

struct smtp_rcpt {		/* one envelope recipient */
	const char	*addr;
	int		 status;	/* out: 2, 4, 5 as above */
	int		 code;		/* out: deciding SMTP code, 0 if none */
	char		 enh[16];	/* out: "2.0.0" etc. */
	char		 reply[SMTP_REPLY_MAX];	/* out: sanitized */
};

struct smtp_msg {		/* one message, one transaction */
	const char	*sender;	/* envelope sender, "" = <> */
	int		 fd;		/* spool file, read with pread only */
	off_t		 start;		/* its first message byte; 0: the fd's
					   offset at smtp_deliver() */
	off_t		 end;		/* its size; 0: read up to EOF */
	const char	*prepend;	/* header lines, each ending in "\n" */
	const char	*insert;	/* text inserted where the stream reaches */
	off_t		 insert_at;	/* this file offset (subject prefix) */
	off_t		 size;		/* bytes for SIZE=; 0: estimated here */
	int		 eightbit;	/* 8-bit body: BODY=8BITMIME if offered */
	struct smtp_rcpt *rcpts;
	size_t		 nrcpts;
	void		*app;		/* the caller's, untouched */
	int		 reported;	/* out: given to relay->done already */
	int		 untried;	/* out: the session ended before it
					   was offered (see smtp_deliver) */
	int		 status;	/* out: 2 accepted at end of data, 4, 5 */
	char		 reply[SMTP_REPLY_MAX];	/* out: final reply or error */
};

/* Timeouts in seconds; 0 takes the default shown. */
struct smtp_relay {
	const char	*host;		/* name or IPv4 address (no IPv6 literal) */
	const char	*port;		/* NULL = "25" */
	int		 connect_timeout;	/* 30 */
	int		 cmd_timeout;	/* 300: greeting, EHLO, MAIL, RCPT, DATA */
	int		 data_timeout;	/* 600: each body write, end of data */
	const char	*helo;		/* NULL = the node name */
	int		 tls;		/* TLS_NONE, TLS_MAY, TLS_ENCRYPT */
	int		 no_pipelining;	/* one command at a time */
	const char	*tls_ca_file;	/* NULL: the system's CA store */
	const char	*auth_user;	/* NULL: no AUTH */
	const char	*auth_password_file; /* read at each session */
	/*
	 * Called as each transaction ends (its end-of-data reply read), with
	 * that message's outcome filled in, so that the caller can record it
	 * before the next transaction; the other messages are filled in when
	 * smtp_deliver returns.  A non-zero return ends the session after
	 * this transaction (nothing else is sent).  NULL: not called.
	 */
	int		(*done)(struct smtp_msg *m, const char *relay,
			    void *arg);
	void		*done_arg;
	unsigned	 flags;		/* SMTP_F_*, 0 in production */
};

/* Benchmarks and tests only: switch parts off to measure them. */
#define SMTP_F_NO_NODELAY	0x01	/* no TCP_NODELAY */
#define SMTP_F_NO_QUICKACK	0x02	/* no TCP_QUICKACK re-arming */
#define SMTP_F_NATIVE		0x04	/* let libESMTP rewrite headers and
					   use BDAT: the message is NOT sent
					   byte for byte */

/*
 * Send msgs[0..n) over one SMTP session, in order, PIPELINING where the
 * server offers it.  relay_out receives "host[ip]:port" of the server
 * that answered, or "none".
 *
 * Returns 0 when a session ran: look at each message and recipient
 * (a message whose every recipient was refused still counts as a
 * session that ran).  Returns 1 when a session was had (greeting and
 * EHLO accepted, TLS and AUTH as configured) and the relay ended it
 * before its last transaction was over (421, lost connection, timeout),
 * even before any MAIL was answered; the caller stopping it is not
 * that.  Returns -1 with errno set (ECONNREFUSED, ETIMEDOUT,
 * EHOSTUNREACH, EPROTO for a refusing greeting or EHLO and for TLS or
 * AUTH that stopped the session, EINVAL for a missing host or an IPv6
 * literal, ENOSYS if sockopt.c is not in effect, ENOMEM) when no
 * session was had: then every message and recipient is deferred
 * (status 4) and carries the reason in reply.
 *
 * A session that ended early (421, lost connection, timeout, the caller
 * stopping it) leaves the messages after the transaction in flight
 * deferred with untried set: the relay never saw them.  The transaction
 * in flight is the last one the relay answered, or, when that one was
 * over and the session was neither closed by a 421 nor stopped by the
 * caller, the next one (its MAIL may have gone out unanswered); with no
 * MAIL answered at all, the first one.
 *
 * One call at a time per process (see sockopt.h); the worker's
 * environment gets XDG_CONFIG_DIR set (see smtp.c, no_client_cert).
 *
 * Input that would inject SMTP commands or headers is refused per item:
 * a recipient address or sender with control characters, '<' or '>'
 * fails that recipient or message (5); a prepend that is not a list of
 * header lines defers the message (4).
 */
int	smtp_deliver(const struct smtp_relay *, struct smtp_msg *msgs, size_t n,
	    char *relay_out, size_t relay_len);

#endif
