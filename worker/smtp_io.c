/*
 * SPDX-License-Identifier: ISC
 *
 * smtp_io.c -- non-blocking buffered I/O and TLS for listqd's SMTP
 * client.
 *
 * Contract: no call blocks; a call that must wait records the poll event
 * it waits for in io->want and returns, and the same call is made again
 * once the fd is ready.  Output is queued and written in as few writes
 * as the kernel takes (a pipelined group leaves in one segment; with
 * TCP_NODELAY it leaves at once, and TCP_QUICKACK re-armed before each
 * read keeps the relay's small replies from waiting on a delayed ACK).
 * Over TLS a write may go out in parts (SSL_MODE_ENABLE_PARTIAL_WRITE)
 * and is repeated with the same length after WANT_READ/WANT_WRITE, as
 * OpenSSL requires; a read that finds only a TLS 1.3 session ticket
 * reads nothing and waits again.  Plain writes use send(MSG_NOSIGNAL) so
 * that a relay going away is an error here, never a SIGPIPE.
 *
 * TLS is 1.2 or newer; the relay's chain is checked against the CA file
 * or the system's store and its name with X509_VERIFY_PARAM_set1_host
 * (or _set1_ip_asc for an address).  The handshake itself does not fail
 * on an unverified certificate: io->verified says whether it held, and
 * the session applies the smtp_tls policy (may, encrypt, verify).
 *
 * Failure modes: -1 with errno (ECONNRESET for a relay that closed,
 * EPROTO for TLS failures with io->tls_error set, EMSGSIZE for a line
 * that is too long, ENOMEM); memory is bounded by SMTP_IO_IN and
 * SMTP_IO_OUT_MAX.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "smtp_io.h"
#include "smtp_reply.h"

#define SMTP_IO_OUT_MAX	((size_t)512 * 1024)

void
smtp_io_init(struct smtp_io *io)
{
	memset(io, 0, sizeof(*io));
	io->fd = -1;
}

static void
set_tcp_options(int fd)
{
	int on = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

int
smtp_io_connect(struct smtp_io *io, const struct sockaddr *sa, socklen_t len)
{
	io->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (io->fd == -1)
		return -1;
	set_tcp_options(io->fd);
	io->want = POLLOUT;
	if (connect(io->fd, sa, len) == -1 && errno != EINPROGRESS)
		return -1;
	return 0;
}

int
smtp_io_connected(struct smtp_io *io)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	io->want = POLLIN;
	return 0;
}

int
smtp_io_put(struct smtp_io *io, const void *p, size_t n)
{
	size_t need;
	char *nb;

	if (io->outoff > 0 && io->outoff == io->outlen && io->ssl_wlen == 0)
		io->outoff = io->outlen = 0;
	need = io->outlen + n;
	if (need > io->outcap) {
		if (io->outoff > 0 && io->ssl_wlen == 0) {
			memmove(io->out, io->out + io->outoff,
			    io->outlen - io->outoff);
			io->outlen -= io->outoff;
			io->outoff = 0;
			need = io->outlen + n;
		}
		if (need > SMTP_IO_OUT_MAX) {
			errno = ENOMEM;
			return -1;
		}
		if (need > io->outcap) {
			if ((nb = realloc(io->out, need + 4096)) == NULL)
				return -1;
			io->out = nb;
			io->outcap = need + 4096;
		}
	}
	memcpy(io->out + io->outlen, p, n);
	io->outlen += n;
	return 0;
}

size_t
smtp_io_pending(const struct smtp_io *io)
{
	return io->outlen - io->outoff;
}

/* OpenSSL's reason for an error code, never NULL. */
static const char *
reason_of(unsigned long e)
{
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "TLS protocol error";
}

/* What an SSL call's failure means: 0 wait (io->want set), -1 error. */
static int
tls_wait(struct smtp_io *io, int ret)
{
	unsigned long e;

	switch (SSL_get_error(io->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		io->want = POLLIN;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		io->want = POLLOUT;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		io->eof = 1;
		errno = ECONNRESET;
		return -1;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			errno = ECONNRESET;
		io->eof = 1;
		return -1;
	default:
		e = ERR_get_error();
		snprintf(io->tls_error, sizeof(io->tls_error), "%s",
		    reason_of(e));
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

/* One write of the queue's head; bytes written, 0 to wait, -1 error. */
static ssize_t
write_some(struct smtp_io *io)
{
	size_t n = io->outlen - io->outoff;
	ssize_t w;
	int r;

	if (io->ssl == NULL) {
		w = send(io->fd, io->out + io->outoff, n, MSG_NOSIGNAL);
		if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			io->want = POLLOUT;
			return 0;
		}
		return w;
	}
	/* A write that must be repeated goes again with the same length. */
	if (io->ssl_wlen > 0 && (size_t)io->ssl_wlen < n)
		n = (size_t)io->ssl_wlen;
	if (n > 16384)
		n = 16384;
	ERR_clear_error();
	if ((r = SSL_write(io->ssl, io->out + io->outoff, (int)n)) > 0) {
		io->ssl_wlen = 0;
		return r;
	}
	io->ssl_wlen = (int)n;
	return tls_wait(io, r) == 0 ? 0 : -1;
}

int
smtp_io_flush(struct smtp_io *io)
{
	ssize_t w;

	while (io->outoff < io->outlen) {
		if ((w = write_some(io)) == -1)
			return -1;
		if (w == 0)
			return 1;
		io->outoff += (size_t)w;
	}
	io->outoff = io->outlen = 0;
	io->want = POLLIN;
	return 0;
}

/* One read into the free end of the input buffer. */
static ssize_t
read_some(struct smtp_io *io, size_t room)
{
	ssize_t r;
	int on = 1, n;

	if (io->ssl == NULL) {
		/* Re-armed before each read: the kernel clears it. */
		if (setsockopt(io->fd, IPPROTO_TCP, TCP_QUICKACK, &on,
		    sizeof(on)) == 0)
			io->quickacks++;
		r = recv(io->fd, io->in + io->inlen, room, 0);
		if (r == 0) {
			io->eof = 1;
			errno = ECONNRESET;
			return -1;
		}
		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			io->want = POLLIN;
			return 0;
		}
		return r;
	}
	ERR_clear_error();
	if ((n = SSL_read(io->ssl, io->in + io->inlen, (int)room)) > 0)
		return n;
	return tls_wait(io, n) == 0 ? 0 : -1;
}

int
smtp_io_fill(struct smtp_io *io)
{
	ssize_t r;
	size_t total = 0;

	if (io->inoff > 0) {
		memmove(io->in, io->in + io->inoff, io->inlen - io->inoff);
		io->inlen -= io->inoff;
		io->inoff = 0;
	}
	while (io->inlen < sizeof(io->in)) {
		if ((r = read_some(io, sizeof(io->in) - io->inlen)) == -1)
			return total > 0 ? (int)total : -1;
		if (r == 0)
			break;
		io->inlen += (size_t)r;
		total += (size_t)r;
	}
	return (int)total;
}

const char *
smtp_io_line(struct smtp_io *io, size_t *len)
{
	char *start = io->in + io->inoff, *nl;
	size_t avail = io->inlen - io->inoff;

	if ((nl = memchr(start, '\n', avail)) == NULL) {
		if (avail >= SMTP_LINE_MAX || avail == sizeof(io->in)) {
			errno = EMSGSIZE;
			*len = (size_t)-1;
		}
		return NULL;
	}
	*len = (size_t)(nl - start);
	io->inoff += *len + 1;
	if (*len > 0 && start[*len - 1] == '\r')
		(*len)--;
	if (*len >= SMTP_LINE_MAX) {
		errno = EMSGSIZE;
		*len = (size_t)-1;
		return NULL;
	}
	return start;
}

size_t
smtp_io_unread(const struct smtp_io *io)
{
	return io->inlen - io->inoff;
}

/* The name check that verification applies: an address or a name. */
static int
expect_peer(SSL *ssl, const char *peer)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, peer, &a4) == 1 ||
	    inet_pton(AF_INET6, peer, &a6) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(vp, peer) == 1 ? 0 : -1;
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(vp, peer, 0) != 1)
		return -1;
	return SSL_set_tlsext_host_name(ssl, peer) == 1 ? 0 : -1;
}

int
smtp_io_starttls(struct smtp_io *io, SSL_CTX *ctx, const char *peer)
{
	if ((io->ssl = SSL_new(ctx)) == NULL ||
	    SSL_set_fd(io->ssl, io->fd) != 1 ||
	    expect_peer(io->ssl, peer) == -1) {
		snprintf(io->tls_error, sizeof(io->tls_error),
		    "cannot set up TLS");
		errno = EPROTO;
		return -1;
	}
	SSL_set_mode(io->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_connect_state(io->ssl);
	/* Anything read in clear after 220 is not the relay's to send. */
	io->inlen = io->inoff = 0;
	return 0;
}

/* io->verified and, when not, io->tls_error: why the check failed. */
static void
check_peer(struct smtp_io *io)
{
	X509 *cert = SSL_get1_peer_certificate(io->ssl);
	long v = SSL_get_verify_result(io->ssl);

	if (cert == NULL)
		snprintf(io->tls_error, sizeof(io->tls_error),
		    "no certificate");
	else if (v != X509_V_OK)
		snprintf(io->tls_error, sizeof(io->tls_error), "%s",
		    X509_verify_cert_error_string(v));
	else
		io->verified = 1;
	X509_free(cert);
}

int
smtp_io_handshake(struct smtp_io *io)
{
	int r;

	ERR_clear_error();
	if ((r = SSL_do_handshake(io->ssl)) == 1) {
		check_peer(io);
		io->want = POLLIN;
		return 0;
	}
	if (tls_wait(io, r) == 0)
		return 1;
	if (io->tls_error[0] == '\0')
		snprintf(io->tls_error, sizeof(io->tls_error),
		    "connection lost in the TLS handshake");
	errno = EPROTO;
	return -1;
}

void
smtp_io_tls_desc(const struct smtp_io *io, char *buf, size_t len)
{
	if (io->ssl == NULL) {
		snprintf(buf, len, "%s", "");
		return;
	}
	snprintf(buf, len, "%s with cipher %s (%d bits)",
	    SSL_get_version(io->ssl), SSL_get_cipher_name(io->ssl),
	    SSL_get_cipher_bits(io->ssl, NULL));
}

void
smtp_io_close(struct smtp_io *io)
{
	if (io->ssl != NULL) {
		SSL_free(io->ssl);
		io->ssl = NULL;
	}
	if (io->fd != -1)
		(void)close(io->fd);
	io->fd = -1;
	free(io->out);
	io->out = NULL;
	io->outlen = io->outoff = io->outcap = 0;
}

SSL_CTX *
smtp_tls_context(const char *ca_file, char *why, size_t len)
{
	SSL_CTX *ctx;
	unsigned long e;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		goto fail;
	return ctx;
fail:
	e = ERR_get_error();
	snprintf(why, len, "TLS set-up failed: %s%s%s",
	    ca_file ? ca_file : "", ca_file ? ": " : "",
	    reason_of(e));
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}
