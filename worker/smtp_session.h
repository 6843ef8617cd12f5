/*
 * SPDX-License-Identifier: ISC
 *
 * smtp_session.h -- one SMTP client session of listqd, non-blocking,
 * driven by the worker's poll loop: many of these run in one process.
 *
 * A session connects to one relay address, reads the greeting, says
 * EHLO (HELO when EHLO is refused), starts TLS and authenticates as the
 * configuration says, then carries transactions one at a time: the
 * caller starts one on an idle session (smtp_session_idle), the session
 * sends it (MAIL, every RCPT and DATA, or BDAT, in one write when the
 * relay offers PIPELINING) and calls conf->done with every recipient's
 * outcome before it takes the next, so the caller records each
 * transaction before the next one starts on that session.
 *
 * Outcome of a recipient: 2 delivered (end-of-data reply 2xx after its
 * RCPT was accepted), 4 deferred (4xx, 552 to RCPT, 421, a lost
 * connection, a timeout, TLS or AUTH that could not be had as the policy
 * says), 5 failed (5xx).  code is the reply code that decided (0 when no
 * reply did), enh the RFC 3463 code (the relay's, or derived), reply one
 * line of printable ASCII: the relay's reply or the reason.
 *
 * TLS policy (smtp_conf.tls), with Postfix's meanings:
 *   SMTP_TLS_NONE     never STARTTLS (the path to the relay is trusted);
 *   SMTP_TLS_MAY      STARTTLS when offered, any certificate;
 *   SMTP_TLS_ENCRYPT  STARTTLS required, certificate not checked;
 *   SMTP_TLS_VERIFY   STARTTLS required, chain and name verified.
 * AUTH (PLAIN, else LOGIN) is sent only over TLS with a verified
 * certificate, or in clear text with SMTP_TLS_NONE; otherwise the
 * session ends before any MAIL ("AUTH not attempted: ...").
 */
#ifndef LISTQ_SMTP_SESSION_H
#define LISTQ_SMTP_SESSION_H

#include <sys/types.h>
#include <sys/socket.h>

#include <poll.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "smtp_reply.h"

enum { SMTP_TLS_NONE, SMTP_TLS_MAY, SMTP_TLS_ENCRYPT, SMTP_TLS_VERIFY };

struct smtp_rcpt {
	const char	*addr;
	int		 status;	/* out: 2, 4, 5 */
	int		 code;		/* out: deciding reply code, 0 if none */
	char		 enh[16];	/* out */
	char		 reply[SMTP_REPLY_MAX];	/* out */
};

/*
 * The message source: up to len bytes of the message as spooled (list
 * headers already in place); 0 at its end, -1 with errno on error.  The
 * session turns line ends into CRLF and dot-stuffs; the source gives
 * bytes as they are.
 */
typedef ssize_t	(*smtp_read_fn)(void *arg, char *buf, size_t len);

struct smtp_txn {
	const char	*sender;	/* "" for <> */
	struct smtp_rcpt *rcpts;
	size_t		 nrcpts;
	off_t		 size;		/* for SIZE=, 0: not sent */
	int		 eightbit;	/* BODY=8BITMIME when offered */
	smtp_read_fn	 read;
	void		*read_arg;
	void		*app;		/* the caller's */
	/* out: the message's end-of-data (or MAIL) outcome */
	int		 status;	/* 2, 4, 5 */
	char		 reply[SMTP_REPLY_MAX];
	int		 sent;		/* its MAIL went to the relay */
	int		 mail_code;	/* the reply to MAIL, 0: none came */
};

struct smtp_conf {
	const char	*helo;		/* the name EHLO gives */
	const char	*peer;		/* relay name for the TLS name check */
	int		 tls;		/* SMTP_TLS_* */
	SSL_CTX		*tls_ctx;	/* from smtp_tls_context; not NONE */
	const char	*auth_user;	/* NULL: no AUTH */
	const char	*auth_password;
	int		 no_pipelining;	/* one command at a time */
	int		 no_chunking;	/* DATA even where BDAT is offered */
	int		 connect_ms, cmd_ms, data_ms;	/* 0: 30 s, 300 s, 600 s */
	/* Called once per transaction, with its outcome filled in. */
	void		(*done)(struct smtp_txn *, void *arg);
	void		*done_arg;
};

struct smtp_session;

/* A session connecting to sa; NULL with errno when it cannot start. */
struct smtp_session *smtp_session_new(const struct smtp_conf *,
	    const struct sockaddr *sa, socklen_t len);
/* True when the session can take a transaction now. */
int	smtp_session_idle(const struct smtp_session *);
/* True once the session is over (closed, failed or after QUIT). */
int	smtp_session_closed(const struct smtp_session *);
/* Why the session ended or failed to start, "" while it runs well. */
const char *smtp_session_error(const struct smtp_session *);
/*
 * The cause as an errno value: ECONNREFUSED and the like for a connect,
 * ETIMEDOUT, ECONNRESET (lost, 421), EPROTO (refused greeting or EHLO,
 * TLS, AUTH, a reply that makes no sense); 0 while it runs.
 */
int	smtp_session_errno(const struct smtp_session *);
/* True once the relay greeted and took EHLO/HELO, TLS and AUTH. */
int	smtp_session_ready_once(const struct smtp_session *);
/*
 * Starts a transaction on an idle session; -1 (EBUSY) when not idle.
 * t stays the caller's and must live until done is called for it.
 */
int	smtp_session_start(struct smtp_session *, struct smtp_txn *t);
/* Sends QUIT on an idle session and closes after its reply. */
void	smtp_session_quit(struct smtp_session *);
/* TLS: "TLSv1.3 with cipher ...", "" in clear; verified 1/0, why not. */
const char *smtp_session_tls(const struct smtp_session *, int *verified,
	    const char **why);
/* What the relay offered and how the session went, for a log line. */
struct smtp_session_stats {
	unsigned long	size_limit;	/* the relay's SIZE, 0: none */
	unsigned long	pipelined;	/* transactions sent in one group */
	int		nodelay;	/* TCP_NODELAY read back: 1, 0, -1 */
	unsigned long	quickacks;	/* TCP_QUICKACK re-armed */
};
void	smtp_session_stats(const struct smtp_session *,
	    struct smtp_session_stats *);
/* The relay's address as "ip" and "port" (numeric), "" before connect. */
void	smtp_session_peer(const struct smtp_session *, char *ip, size_t,
	    char *port, size_t);

/* Ends the session at once (a transaction in flight is deferred). */
void	smtp_session_abort(struct smtp_session *, const char *why);
void	smtp_session_free(struct smtp_session *);

/* The poll entry of the session and its deadline (ms); 0 if none. */
int	smtp_session_pollfd(const struct smtp_session *, struct pollfd *,
	    long long *deadline);
/* After poll: revents for its fd (0 on a timeout check). */
void	smtp_session_handle(struct smtp_session *, short revents,
	    long long now);
/* Monotonic milliseconds. */
long long smtp_now_ms(void);
/*
 * One poll round over n sessions, waiting at most max_ms: the loop of a
 * caller that has no other fds.  Returns poll's result.
 */
int	smtp_poll(struct smtp_session **, size_t n, int max_ms);

/*
 * The wire form of a message: line ends (LF, CRLF, a bare CR) become
 * CRLF, a leading dot is doubled when stuff is set (DATA), and a line
 * longer than 998 octets is folded with CRLF SPACE.
 */
struct smtp_enc {
	int	stuff, cr;
	size_t	col;
};
#define SMTP_ENC_SLACK	8	/* out room one input byte may need */
void	smtp_enc_init(struct smtp_enc *, int stuff);
/* Encodes in while out has room; returns the bytes of in consumed. */
size_t	smtp_enc_run(struct smtp_enc *, const char *in, size_t n,
	    char *out, size_t cap, size_t *outlen);
/* The end of the message: a last line end if missing (2 bytes room). */
void	smtp_enc_end(struct smtp_enc *, char *out, size_t *outlen);

#endif
