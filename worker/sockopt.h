/*
 * sockopt.h -- TCP options, connect timeout and byte hooks on the one
 * socket libESMTP opens.
 *
 * libESMTP 1.1 has no API to reach its socket: no socket options, no
 * connect timeout, no way to see or edit the bytes it exchanges.  The
 * executable therefore defines connect(), read(), write(), poll() and
 * close() itself, and SSL_connect(), SSL_read() and SSL_write() for the
 * same connection once STARTTLS is on; the dynamic linker binds
 * libesmtp.so's calls to these definitions, which pass through to libc
 * and libssl (dlsym(RTLD_NEXT)) and act only on a socket that libESMTP
 * itself connected while armed.  See sockopt.c for the details and the
 * reasons.
 *
 * Not thread-safe: one armed session per process (listqd workers are
 * single-threaded).
 */

#ifndef LISTQ_SOCKOPT_H
#define LISTQ_SOCKOPT_H

#include <sys/types.h>
#include <sys/socket.h>

/*
 * Hooks called for the tracked connection only, always on the SMTP
 * plaintext: on the socket's bytes until TLS starts, then on what
 * SSL_read() returns and SSL_write() is given (the ciphertext on the
 * socket is never shown to them).  All may be NULL.
 *  rx:     after every successful read, on the bytes read; may edit
 *          them in place (same length).
 *  tx:     before every write: returns how many leading bytes of buf
 *          must be dropped (not sent, but reported to libESMTP as
 *          written), or -1 to refuse the write: the connection is then
 *          shut down so that libESMTP sees it drop.  Must not change
 *          state: the same buffer comes back if the write is retried.
 *  txdone: after a write whose bytes were taken (queued to go out
 *          before libESMTP next polls, reads or closes), with what tx
 *          dropped.
 *  tls:    once, when libESMTP starts the TLS handshake on the socket
 *          (after the 220 to STARTTLS), with its SSL *.
 *  answered: with the last line (no CRLF) of the server's reply to a
 *          command that sockopt_answer() answered early; that reply is
 *          taken out of what libESMTP reads (rx never sees it).  Not
 *          called if the connection ends first.
 */
struct sockopt_hooks {
	void	(*rx)(void *arg, char *buf, size_t len);
	ssize_t	(*tx)(void *arg, const char *buf, size_t len);
	void	(*txdone)(void *arg, size_t dropped);
	void	(*tls)(void *arg, void *ssl);
	void	(*answered)(void *arg, const char *line);
	void	 *arg;
};

#define SOCKOPT_NODELAY		0x01	/* TCP_NODELAY at connect */
#define SOCKOPT_QUICKACK	0x02	/* TCP_QUICKACK re-armed before reads */

/* What happened on the tracked connection: for logs and for tests. */
struct sockopt_stats {
	int		fd;		/* tracked socket, -1 if none */
	int		nodelay;	/* TCP_NODELAY read back after setting */
	int		quickack;	/* TCP_QUICKACK read back (first read) */
	unsigned long	rearms;		/* TCP_QUICKACK re-arms */
	unsigned long	reads, writes;	/* read()/write() calls on the socket */
	unsigned long	answers;	/* commands answered early */
	int		connect_errno;	/* last failed connect, 0 if none */
	int		eof;		/* the peer closed the connection */
	int		timedout;	/* a libESMTP timeout expired */
	int		read_errno;	/* last hard read/write error, 0 if none */
	int		connected;	/* a connect succeeded while armed */
	int		tls;		/* a TLS handshake started on it */
	struct sockaddr_storage peer;	/* last address tried or connected */
	socklen_t	peerlen;
};

/* 1 if the process's connect/read/write/poll/close and SSL_connect/
   SSL_read/SSL_write are this file's. */
int	sockopt_interposed(void);
/* Track the next socket libESMTP connects; opts: SOCKOPT_* bits. */
void	sockopt_arm(int opts, int connect_timeout_ms,
	    const struct sockopt_hooks *);
void	sockopt_disarm(void);
void	sockopt_stats(struct sockopt_stats *);
/*
 * From the tx hook, for the one command being written when no reply is
 * due: libESMTP's next read returns reply (a complete "ddd ...\r\n"
 * line, at most SOCKOPT_ANSWER_MAX bytes) at once, the command stays
 * queued to leave with the ones libESMTP writes next, and the server's
 * own reply goes to the answered hook instead of libESMTP.  -1 (and
 * nothing changes) while an earlier answer is pending.  Over TLS the
 * command is held the same way, one level up (SSL_write).
 */
#define SOCKOPT_ANSWER_MAX	64
int	sockopt_answer(const char *reply);

#endif
