/*
 * SPDX-License-Identifier: ISC
 *
 * smtp_io.h -- buffered non-blocking I/O of one SMTP client connection,
 * in clear text or over TLS (OpenSSL), for a caller that polls.
 *
 * Every call returns at once.  A call that cannot go on says which poll
 * event it waits for (smtp_io_events); the caller polls the fd and calls
 * again.  Output is queued whole (smtp_io_put) and leaves in as few
 * writes as the kernel takes, so that a pipelined group goes out in one
 * segment; input is read into a buffer and handed out line by line.
 */
#ifndef LISTQ_SMTP_IO_H
#define LISTQ_SMTP_IO_H

#include <sys/socket.h>

#include <stddef.h>

#include <openssl/ssl.h>

#define SMTP_IO_IN	8192		/* input buffer: several reply lines */

struct smtp_io {
	int	 fd;
	SSL	*ssl;
	int	 want;		/* POLLIN / POLLOUT the last call waits for */
	int	 eof;		/* the relay closed its side */
	char	 in[SMTP_IO_IN];
	size_t	 inlen, inoff;
	char	*out;
	size_t	 outlen, outoff, outcap;
	int	 ssl_wlen;	/* a TLS write to repeat: its length */
	unsigned long quickacks;	/* TCP_QUICKACK re-armed */
	int	 verified;	/* TLS: chain and name verified */
	char	 tls_error[128]; /* TLS: why the handshake or check failed */
};

void	smtp_io_init(struct smtp_io *);
/* Starts a non-blocking connect; 0 or -1 with errno. */
int	smtp_io_connect(struct smtp_io *, const struct sockaddr *, socklen_t);
/* After POLLOUT on a connecting socket: 0 connected, -1 with errno. */
int	smtp_io_connected(struct smtp_io *);
/* Queues bytes to send; -1 (ENOMEM) when they cannot be held. */
int	smtp_io_put(struct smtp_io *, const void *, size_t);
/* Bytes queued and not yet written. */
size_t	smtp_io_pending(const struct smtp_io *);
/* Writes what is queued: 0 all gone, 1 more to write, -1 with errno. */
int	smtp_io_flush(struct smtp_io *);
/* Reads what is there: >0 bytes read, 0 nothing now, -1 error or EOF. */
int	smtp_io_fill(struct smtp_io *);
/*
 * The next complete line in the input, CRLF (or LF) removed, *len set;
 * NULL when none is complete.  A line longer than SMTP_LINE_MAX sets
 * errno EMSGSIZE and returns NULL with *len = (size_t)-1.
 */
const char *smtp_io_line(struct smtp_io *, size_t *len);
/* Bytes received and not yet taken as lines. */
size_t	smtp_io_unread(const struct smtp_io *);
/*
 * Starts TLS as a client (after 220 to STARTTLS); peer names the relay
 * (host name or IP address) for SNI and the certificate check.  Then
 * smtp_io_handshake until it returns 0 (done) or -1 (failed).
 */
int	smtp_io_starttls(struct smtp_io *, SSL_CTX *, const char *peer);
int	smtp_io_handshake(struct smtp_io *);
/* "TLSv1.3 with cipher NAME (N bits)", "" in clear text. */
void	smtp_io_tls_desc(const struct smtp_io *, char *, size_t);
void	smtp_io_close(struct smtp_io *);
/*
 * A client context: TLS 1.2 or newer, the CA file or the system's store
 * for verification (NULL ca_file).  NULL with why filled on failure.
 */
SSL_CTX	*smtp_tls_context(const char *ca_file, char *why, size_t len);

#endif
