/*
 * sockopt.c -- TCP options, a connect timeout, byte hooks and a crash
 * guard on the socket of libESMTP, which has no API for any of them.
 *
 * Why this file exists: libESMTP writes each batch of commands with one
 * write() and then waits for the answer.  With Nagle's algorithm on, the
 * last small segment of every message waits for the peer's delayed ACK
 * (40 ms): one connection moves ~23 messages/s.  TCP_NODELAY on its
 * socket removes that stall on our side; TCP_QUICKACK, re-armed before
 * every read because Linux falls back to delayed ACKs by itself, removes
 * the stall a CHUNKING server such as Postfix smtpd then shows on its
 * side.  libESMTP also connects with a blocking connect() and no
 * timeout, and writes with write(), so a peer that resets the
 * connection would kill the worker with SIGPIPE.  Worse, when the peer
 * closes while pipelined replies are still due, libESMTP polls once
 * more, sees the socket readable (EOF) and calls the reply handler of
 * state -1, a NULL pointer: SIGSEGV, in a plain libESMTP program too.
 * So once the socket has hit EOF, an error or a timeout, poll() on it
 * fails, and libESMTP ends the session instead.
 *
 * STARTTLS: once libESMTP starts TLS, it reads and writes through libssl
 * (SSL_read, SSL_write), and libssl's own read() and write() calls on
 * the socket come to this file's definitions too, carrying ciphertext.
 * So from the SSL_connect() libESMTP makes on the tracked socket on,
 * read() and write() leave the bytes alone (socket options, MSG_NOSIGNAL
 * and the dead-socket guard stay), and the rx and tx hooks run in
 * SSL_read() and SSL_write() instead, on the plaintext: the decoy is
 * removed, and CHUNKING hidden, in TLS sessions exactly as in plain ones.
 *
 * How: libesmtp.so imports connect, read, write, poll and close from
 * libc and SSL_connect, SSL_read and SSL_write from libssl (nm -D
 * libesmtp.so.6).  The executable defines these eight symbols; the
 * dynamic linker binds libesmtp.so's references to the executable's
 * definitions before libc's and libssl's, and each one passes through
 * to the next definition via dlsym(RTLD_NEXT).  Only a connect() whose
 * caller lies inside libesmtp.so, made while armed, starts tracking its
 * socket; read, write, poll and close act on that one descriptor only,
 * and the SSL functions on the one SSL that libESMTP connects over it.
 * sockopt_interposed() tells whether the binding really happened (it
 * does not if the executable is linked statically or without libesmtp),
 * so a caller that relies on the hooks can refuse to run without them.
 *
 * Coalescing: libESMTP writes through a 2 KiB buffer, so a 5 KB message
 * took three send() calls, each a trip into the kernel.  On a plaintext
 * socket, write() queues what it is given (after the tx hook) in a fixed
 * 64 KiB buffer, and the queue goes out in as few send() calls as the
 * socket takes before libESMTP can wait on the peer: at its next poll()
 * that may wait or read() on the socket, at close(), or when the buffer
 * is full.  The
 * peer gets the same bytes in the same order, and never waits for a
 * byte held here while libESMTP waits for its reply; a send error or a
 * timeout then shows at that poll(), as a dead socket.
 *
 * Early answers (sockopt_answer): for a command the tx hook lets go
 * ahead of its reply, libESMTP's next read() returns the reply it was
 * given at once, and poll() says readable without asking the kernel;
 * the command waits in the queue for those libESMTP writes next.  The
 * server's real reply, which comes first because no other was due, is
 * cut from what read() returns and handed to the answered hook; when
 * nothing else came with it, read() fails with EAGAIN and libESMTP
 * polls again, with its own timeout.  Likewise a poll() for POLLOUT is
 * answered at once while the queue has room, and the queue goes out at
 * a poll() that may wait (a timeout other than 0), a read() or close():
 * commands libESMTP issues one at a time leave in one send().  Over TLS
 * the same happens one level up: SSL_write() holds the answered command
 * and passes it to libssl with the next write (or before libESMTP waits
 * or reads), and SSL_read() cuts the reply (a record that held only the
 * cut reply makes it read the next, within libESMTP's timeout).  Sent
 * alone, the command's reply could arrive while libESMTP still holds
 * the RCPT whose reply it would then wait for.
 *
 * Invariants: at most one socket and one SSL are tracked; they stop
 * being tracked at close(); every other descriptor and SSL goes straight
 * to libc and libssl, untouched; the hooks never see ciphertext; no
 * queued byte is left behind when libESMTP waits in poll(), reads or
 * closes; libESMTP never reads the server's reply to a command answered
 * early, and reads every other server byte, in order.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* RTLD_NEXT, dladdr() */
#endif
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libesmtp.h>
#include <openssl/ssl.h>	/* includes no <unistd.h>: see below */

#include "sockopt.h"

/*
 * <unistd.h> is deliberately not included: with _FORTIFY_SOURCE it
 * defines read() as an inline wrapper, which would clash with the
 * definitions below.  These are the prototypes it would give.
 */
ssize_t	read(int, void *, size_t);
ssize_t	write(int, const void *, size_t);
int	close(int);
/* <poll.h> (for struct pollfd) inlines poll() the same way: this one is
   defined under another C name and exported as "poll". */
int	sockopt_poll(struct pollfd *, nfds_t, int) __asm__("poll");

static int	ssl_flush_held(SSL *);

static struct {
	ssize_t	(*read)(int, void *, size_t);
	ssize_t	(*write)(int, const void *, size_t);
	int	(*close)(int);
	int	(*connect)(int, const struct sockaddr *, socklen_t);
	int	(*poll)(struct pollfd *, nfds_t, int);
	void	 *esmtp;	/* load address of libesmtp.so */
} libc;

static struct {			/* libssl's, looked up at first use */
	int	(*connect)(SSL *);
	int	(*read)(SSL *, void *, int);
	int	(*write)(SSL *, const void *, int);
} ssl;

static struct {
	int			armed;
	int			opts;
	int			timeout_ms;
	int			fd;	/* tracked socket, -1 if none */
	int			dead;	/* EOF, error or timeout seen */
	SSL			*ssl;	/* libESMTP's TLS on fd, NULL before */
	struct sockopt_hooks	hooks;
	struct sockopt_stats	st;
	int			wait_ms; /* libESMTP's last poll timeout */
	size_t			qlen;	/* bytes queued in q */
	char			q[65536];
	char			ans[SOCKOPT_ANSWER_MAX]; /* early answer */
	size_t			anslen, anspos;	/* its length, bytes read */
	int			skip;	/* the server's reply to take out */
	size_t			skipcol;
	char			skipline[512];
	int			hold;	/* TLS: hold the answered command */
	size_t			heldlen;
	char			held[2048];	/* libESMTP flushes 2 KiB */
	char			both[2 * 2048];	/* held + the next write */
} T = { .fd = -1, .st.fd = -1, .wait_ms = -1 };

static void *
next_sym(const char *name)
{
	void	*p;

	if ((p = dlsym(RTLD_NEXT, name)) == NULL)
		abort();	/* no libc below us: nothing can work */
	return p;
}

/* Lazy: another library's constructor may call read() before ours. */
static void
resolve(void)
{
	Dl_info	di;

	if (libc.read != NULL)
		return;
	libc.write = next_sym("write");
	libc.close = next_sym("close");
	libc.connect = next_sym("connect");
	libc.poll = next_sym("poll");
	if (dladdr((void *)smtp_create_session, &di) != 0)
		libc.esmtp = di.dli_fbase;
	libc.read = next_sym("read");
}

static int
from_libesmtp(const void *caller)
{
	Dl_info	di;

	return libc.esmtp != NULL && dladdr(caller, &di) != 0 &&
	    di.dli_fbase == libc.esmtp;
}

static int
tcp_flag(int fd, int opt, int on)
{
	int		v = on;
	socklen_t	len = sizeof(v);

	if (setsockopt(fd, IPPROTO_TCP, opt, &v, sizeof(v)) == -1)
		return -1;
	/* Read it back: the stats must show what the kernel holds. */
	v = -1;
	if (getsockopt(fd, IPPROTO_TCP, opt, &v, &len) == -1)
		return -1;
	return v;
}

static long
ms_left(const struct timespec *deadline)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000L +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000L;
}

static int
wait_connected(int fd, int ms)
{
	struct timespec	deadline;
	struct pollfd	pfd = { .fd = fd, .events = POLLOUT };
	long		left;
	int		err, n;
	socklen_t	len = sizeof(err);

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (;;) {
		if ((left = ms_left(&deadline)) < 0)
			left = 0;
		if ((n = libc.poll(&pfd, 1, (int)left)) > 0)
			break;
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

/* libESMTP's own connect() blocks for as long as the kernel tries. */
static int
timed_connect(int fd, const struct sockaddr *sa, socklen_t len, int ms)
{
	int	fl, rc, err;

	if (ms <= 0)
		return libc.connect(fd, sa, len);
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	rc = libc.connect(fd, sa, len);
	if (rc == -1 && errno == EINPROGRESS)
		rc = wait_connected(fd, ms);
	err = errno;
	(void)fcntl(fd, F_SETFL, fl);
	errno = err;
	return rc;
}

static int
tracked_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int	inet;

	if (len <= sizeof(T.st.peer)) {
		memcpy(&T.st.peer, sa, len);
		T.st.peerlen = len;
	}
	inet = sa->sa_family == AF_INET || sa->sa_family == AF_INET6;
	if (inet && (T.opts & SOCKOPT_NODELAY))
		T.st.nodelay = tcp_flag(fd, TCP_NODELAY, 1);
	if (timed_connect(fd, sa, len, T.timeout_ms) == -1) {
		T.st.connect_errno = errno;
		return -1;
	}
	T.fd = T.st.fd = fd;
	T.st.connected = 1;
	T.st.connect_errno = 0;
	if (inet && (T.opts & SOCKOPT_QUICKACK))
		T.st.quickack = tcp_flag(fd, TCP_QUICKACK, 1);
	if (!inet)
		T.opts &= ~(SOCKOPT_NODELAY | SOCKOPT_QUICKACK);
	return 0;
}

int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	resolve();
	if (!T.armed || T.fd != -1 || sa == NULL ||
	    !from_libesmtp(__builtin_return_address(0)))
		return libc.connect(fd, sa, len);
	return tracked_connect(fd, sa, len);
}

/* A refused write: make libESMTP see a dropped connection. */
static int
refuse(int fd)
{
	(void)shutdown(fd, SHUT_RDWR);
	T.st.read_errno = errno = EPROTO;
	T.dead = 1;
	return -1;
}

static void
note_error(ssize_t r)
{
	if (r == 0)
		T.st.eof = T.dead = 1;
	else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR) {
		T.st.read_errno = errno;
		T.dead = 1;
	}
}

/* MSG_NOSIGNAL: a reset peer must give EPIPE, not kill us. */
static ssize_t
send_now(int fd, const void *buf, size_t n)
{
	ssize_t	r = send(fd, buf, n, MSG_NOSIGNAL);

	if (r < 0)
		note_error(r);
	return r;
}

/*
 * Sends the queue, waiting for room at most ms (-1: no limit) in all, as
 * libESMTP itself would have; 0 when it is all out, -1 with the socket
 * dead otherwise (a timeout counts as libESMTP's own).
 */
static int
flush(int ms)
{
	struct timespec	deadline;
	struct pollfd	pfd = { .fd = T.fd, .events = POLLOUT };
	size_t		off = 0;
	ssize_t		r;
	long		left = ms;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
	while (off < T.qlen && !T.dead) {
		r = send(T.fd, T.q + off, T.qlen - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			note_error(r);
			break;
		}
		if (ms >= 0 && (left = ms_left(&deadline)) < 0)
			left = 0;
		if (libc.poll(&pfd, 1, ms < 0 ? -1 : (int)left) == 0) {
			T.st.timedout = T.dead = 1;
			errno = ETIMEDOUT;
		}
	}
	if (off > 0 && off < T.qlen)	/* what is left goes first */
		memmove(T.q, T.q + off, T.qlen - off);
	T.qlen -= off;
	return T.qlen == 0 ? 0 : -1;
}

/* Queues n bytes, sending the queue first if they do not fit. */
static ssize_t
queue(int fd, const char *buf, size_t n)
{
	if (n > sizeof(T.q) - T.qlen && flush(T.wait_ms) == -1)
		return -1;
	if (n > sizeof(T.q))
		return send_now(fd, buf, n);
	memcpy(T.q + T.qlen, buf, n);
	T.qlen += n;
	return (ssize_t)n;
}

/* libESMTP reads the early answer (sockopt_answer) as the reply. */
static ssize_t
give_answer(char *buf, size_t n)
{
	size_t	k = T.anslen - T.anspos;

	if (k > n)
		k = n;
	memcpy(buf, T.ans + T.anspos, k);
	T.anspos += k;
	if (T.hooks.rx != NULL)
		T.hooks.rx(T.hooks.arg, buf, k);
	return (ssize_t)k;
}

/* One line of the server's reply to the answered command is complete. */
static void
skip_line_done(void)
{
	T.skipline[T.skipcol] = '\0';
	T.skipline[strcspn(T.skipline, "\r")] = '\0';
	T.skipcol = 0;
	/* "ddd-" goes on to another line; anything else ends the reply. */
	if (strlen(T.skipline) >= 4 && T.skipline[3] == '-')
		return;
	T.skip = 0;
	if (T.hooks.answered != NULL)
		T.hooks.answered(T.hooks.arg, T.skipline);
}

/*
 * Takes the server's reply to an answered command out of the n bytes
 * at buf (it comes first: no other reply was due); returns how many
 * bytes are left for libESMTP, moved to the front.
 */
static size_t
take_out(char *buf, size_t n)
{
	size_t	i = 0;

	while (T.skip && i < n) {
		if (buf[i] == '\n')
			skip_line_done();
		else if (T.skipcol < sizeof(T.skipline) - 1)
			T.skipline[T.skipcol++] = buf[i];
		i++;
	}
	memmove(buf, buf + i, n - i);
	return n - i;
}

ssize_t
read(int fd, void *buf, size_t n)
{
	static const int	one = 1;
	ssize_t			r;

	resolve();
	if (fd < 0 || fd != T.fd)
		return libc.read(fd, buf, n);
	if (T.ssl == NULL && T.anspos < T.anslen)
		return give_answer(buf, n);
	if (T.qlen > 0 && flush(T.wait_ms) == -1)
		return -1;
	/* Linux leaves quick-ACK mode by itself: re-arm it every time.
	   Reading it back once per connection is proof enough. */
	if ((T.opts & SOCKOPT_QUICKACK) && T.st.rearms++ == 0)
		T.st.quickack = tcp_flag(fd, TCP_QUICKACK, 1);
	else if (T.opts & SOCKOPT_QUICKACK)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one,
		    sizeof(one));
	T.st.reads++;
	r = libc.read(fd, buf, n);
	if (r <= 0) {
		note_error(r);
		return r;
	}
	if (T.skip && T.ssl == NULL &&
	    (r = (ssize_t)take_out(buf, (size_t)r)) == 0) {
		errno = EAGAIN;		/* nothing yet: libESMTP polls again */
		return -1;
	}
	if (T.hooks.rx != NULL && T.ssl == NULL)	/* not ciphertext */
		T.hooks.rx(T.hooks.arg, buf, (size_t)r);
	return r;
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	ssize_t	drop = 0, r;

	resolve();
	if (fd < 0 || fd != T.fd)
		return libc.write(fd, buf, n);
	T.st.writes++;
	if (T.ssl != NULL)				/* ciphertext */
		return T.qlen > 0 && flush(T.wait_ms) == -1 ? -1 :
		    send_now(fd, buf, n);
	if (T.hooks.tx != NULL)
		drop = T.hooks.tx(T.hooks.arg, buf, n);
	if (drop < 0 || (size_t)drop > n)
		return refuse(fd);
	if ((r = queue(fd, (const char *)buf + drop, n - (size_t)drop)) < 0)
		return -1;
	if (T.hooks.txdone != NULL)
		T.hooks.txdone(T.hooks.arg, (size_t)drop);
	return r + drop;
}

/* Whether libESMTP asks for ev on the tracked socket. */
static int
asks_for(const struct pollfd *fds, nfds_t n, short ev)
{
	nfds_t	i;

	for (i = 0; i < n; i++)
		if (fds[i].fd == T.fd && (fds[i].events & ev))
			return 1;
	return 0;
}

/*
 * libESMTP handles a readable socket before it flushes the command it
 * has just buffered.  Over TLS 1.3 the relay's session tickets, sent
 * unasked after the handshake, make the socket readable with no reply
 * in them: libESMTP would then wait for the reply to an EHLO it has not
 * sent, until the command timeout.  So while TLS is on, a socket that
 * can be written to is reported as writable only; its input waits for
 * the next poll, which comes once the command is out.
 */
static int
write_first(struct pollfd *fds, nfds_t n, int r)
{
	nfds_t	i;
	int	out = 0;

	for (i = 0; i < n; i++)
		if (fds[i].fd == T.fd && (fds[i].revents & POLLOUT))
			out = 1;
	if (!out)
		return r;
	for (r = 0, i = 0; i < n; i++) {
		if (fds[i].fd == T.fd)
			fds[i].revents &= ~POLLIN;
		r += fds[i].revents != 0;
	}
	return r;
}

/*
 * The tracked socket is ready for ev (POLLIN: an early answer waits;
 * POLLOUT: the queue takes the write) without asking the kernel.
 */
static int
ready_now(struct pollfd *fds, nfds_t n, short ev)
{
	nfds_t	i;
	int	r = 0;

	for (i = 0; i < n; i++) {
		fds[i].revents = 0;
		if (fds[i].fd == T.fd)
			fds[i].revents = (short)(fds[i].events & ev);
		r += fds[i].revents != 0;
	}
	return r;
}


/*
 * A dead socket must not look readable to libESMTP again (see top).
 * The queue goes out when libESMTP is about to wait, not when it only
 * asks (timeout 0), so that commands it issues one by one while
 * pipelining leave together.
 */
int
sockopt_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int	r;

	resolve();
	if (T.fd < 0 || fds == NULL || !asks_for(fds, n, POLLIN | POLLOUT))
		return libc.poll(fds, n, timeout);
	if (T.anspos < T.anslen && (r = ready_now(fds, n, POLLIN)) > 0)
		return r;
	if (timeout != 0)	/* a 0 only asks: not a time to wait */
		T.wait_ms = timeout;
	if (T.ssl == NULL && !T.dead && T.qlen < sizeof(T.q) &&
	    (r = ready_now(fds, n, POLLOUT)) > 0)
		return r;
	if (timeout != 0 && T.qlen > 0 && flush(T.wait_ms) == -1 &&
	    T.st.timedout)
		return 0;	/* libESMTP's timeout, on the way out */
	/* Not when libESMTP asks to write: the held bytes go with its own. */
	if (timeout != 0 && T.ssl != NULL && !asks_for(fds, n, POLLOUT))
		(void)ssl_flush_held(T.ssl);	/* failed: T.dead */
	if (T.dead) {
		errno = ECONNRESET;
		return -1;
	}
	r = libc.poll(fds, n, timeout);
	if (r == 0 && timeout > 0)
		T.st.timedout = T.dead = 1;
	if (r > 0 && T.ssl != NULL)
		r = write_first(fds, n, r);
	return r;
}

/* No early answer pending, no reply to take out. */
static void
forget_answer(void)
{
	T.anslen = T.anspos = T.skipcol = T.heldlen = 0;
	T.skip = T.hold = 0;
}

int
close(int fd)
{
	resolve();
	if (fd >= 0 && fd == T.fd) {
		if (T.qlen > 0 && !T.dead)	/* a last QUIT: no wait */
			(void)send(fd, T.q, T.qlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		T.qlen = 0;
		T.fd = -1;
		T.ssl = NULL;
		forget_answer();
	}
	return libc.close(fd);
}

/* ---- TLS: the same hooks, on the plaintext ---------------------------- */

static void
ssl_resolve(void)
{
	resolve();
	if (ssl.write != NULL)
		return;
	ssl.connect = next_sym("SSL_connect");
	ssl.read = next_sym("SSL_read");
	ssl.write = next_sym("SSL_write");
}

/*
 * libESMTP calls this in a loop until the handshake is done; the first
 * call on the tracked socket switches read() and write() to ciphertext
 * pass-through, before libssl sends its first byte.
 */
int
SSL_connect(SSL *s)
{
	ssl_resolve();
	if (s != NULL && s != T.ssl && T.fd != -1 && SSL_get_rfd(s) == T.fd &&
	    from_libesmtp(__builtin_return_address(0))) {
		T.ssl = s;
		T.st.tls = 1;
		if (T.hooks.tls != NULL)
			T.hooks.tls(T.hooks.arg, s);
	}
	return ssl.connect(s);
}

/* TLS: the held command goes out before libESMTP waits or reads. */
static int
ssl_flush_held(SSL *s)
{
	if (T.heldlen == 0)
		return 0;
	if (ssl.write(s, T.held, (int)T.heldlen) != (int)T.heldlen) {
		T.dead = 1;
		return -1;
	}
	T.heldlen = 0;
	return 0;
}

/*
 * TLS: as the queue does for the plain socket, the answered command is
 * held, and leaves with what libESMTP writes next (or before it waits):
 * sent alone, its reply could come before libESMTP has flushed the
 * RCPT it then waits for.  A retried write rebuilds the same bytes at
 * the same address, as libssl requires.
 */
static int
ssl_send(SSL *s, const char *p, int len)
{
	int	r;

	if (T.hold) {		/* the answered command: this write */
		T.hold = 0;
		if (T.heldlen == 0 && (size_t)len <= sizeof(T.held)) {
			memcpy(T.held, p, (size_t)len);
			T.heldlen = (size_t)len;
			return len;
		}
	}
	if (T.heldlen == 0)
		return ssl.write(s, p, len);
	if (T.heldlen + (size_t)len > sizeof(T.both))
		return ssl_flush_held(s) == -1 ? -1 : ssl.write(s, p, len);
	memcpy(T.both, T.held, T.heldlen);
	memcpy(T.both + T.heldlen, p, (size_t)len);
	if ((r = ssl.write(s, T.both, (int)(T.heldlen + (size_t)len))) <= 0)
		return r;
	T.heldlen = 0;
	return len;
}

/* Waits, as libESMTP would have, for more of the server's reply. */
static int
wait_readable(void)
{
	struct pollfd	pfd = { .fd = T.fd, .events = POLLIN };
	int		r = libc.poll(&pfd, 1, T.wait_ms);

	if (r == 0)
		T.st.timedout = T.dead = 1;
	return r > 0 ? 0 : -1;
}

/*
 * As read(), one level up: the early answer, the server's reply to the
 * answered command cut out.  A record that held only that reply is not
 * the end of the stream: the next one is read, within libESMTP's
 * timeout; 0 (the session ends) if it does not come.
 */
int
SSL_read(SSL *s, void *buf, int n)
{
	int	r;

	ssl_resolve();
	if (s == NULL || s != T.ssl || n <= 0)
		return ssl.read(s, buf, n);
	if (T.anspos < T.anslen)
		return (int)give_answer(buf, (size_t)n);
	if (ssl_flush_held(s) == -1)
		return -1;
	while ((r = ssl.read(s, buf, n)) > 0 && T.skip &&
	    (r = (int)take_out(buf, (size_t)r)) == 0)
		if (SSL_pending(s) == 0 && wait_readable() == -1)
			return 0;
	if (r > 0 && T.hooks.rx != NULL)
		T.hooks.rx(T.hooks.arg, buf, (size_t)r);
	return r;
}

/*
 * As write(), one level up.  A retried SSL_write() (after WANT_WRITE)
 * gets the same arguments again, and tx drops the same prefix, so libssl
 * sees its retry repeated exactly.  Nothing left to send after the drop:
 * libssl is not called (a zero-length SSL_write reports an error).
 */
int
SSL_write(SSL *s, const void *buf, int n)
{
	ssize_t	drop;
	int	r;

	ssl_resolve();
	if (s == NULL || s != T.ssl || T.hooks.tx == NULL || n <= 0)
		return ssl.write(s, buf, n);
	drop = T.hooks.tx(T.hooks.arg, buf, (size_t)n);
	if (drop < 0 || drop > n)
		return refuse(T.fd);
	if (drop == n)
		r = 0;
	else if ((r = ssl_send(s, (const char *)buf + drop,
	    n - (int)drop)) <= 0)
		return r;
	if (T.hooks.txdone != NULL)
		T.hooks.txdone(T.hooks.arg, (size_t)drop);
	return r + (int)drop;
}

int
sockopt_interposed(void)
{
	resolve();
	return libc.esmtp != NULL &&
	    dlsym(RTLD_DEFAULT, "connect") == (void *)connect &&
	    dlsym(RTLD_DEFAULT, "read") == (void *)read &&
	    dlsym(RTLD_DEFAULT, "write") == (void *)write &&
	    dlsym(RTLD_DEFAULT, "poll") == (void *)sockopt_poll &&
	    dlsym(RTLD_DEFAULT, "close") == (void *)close &&
	    dlsym(RTLD_DEFAULT, "SSL_connect") == (void *)SSL_connect &&
	    dlsym(RTLD_DEFAULT, "SSL_read") == (void *)SSL_read &&
	    dlsym(RTLD_DEFAULT, "SSL_write") == (void *)SSL_write;
}

void
sockopt_arm(int opts, int connect_timeout_ms, const struct sockopt_hooks *h)
{
	resolve();
	memset(&T.st, 0, sizeof(T.st));
	T.st.fd = -1;
	T.st.nodelay = T.st.quickack = -1;
	T.fd = -1;
	T.ssl = NULL;
	T.dead = 0;
	T.qlen = 0;
	T.wait_ms = -1;
	forget_answer();
	T.opts = opts;
	T.timeout_ms = connect_timeout_ms;
	if (h != NULL)
		T.hooks = *h;
	else
		memset(&T.hooks, 0, sizeof(T.hooks));
	T.armed = 1;
}

void
sockopt_disarm(void)
{
	T.armed = 0;
	T.fd = -1;
	T.ssl = NULL;
	T.qlen = 0;
	forget_answer();
	memset(&T.hooks, 0, sizeof(T.hooks));
}

int
sockopt_answer(const char *reply)
{
	size_t	len = strlen(reply);

	if (T.fd < 0 || T.dead || T.skip || T.anspos < T.anslen ||
	    len > sizeof(T.ans))
		return -1;
	memcpy(T.ans, reply, len);
	T.anslen = len;
	T.anspos = T.skipcol = 0;
	T.skip = 1;
	T.hold = T.ssl != NULL;
	T.st.answers++;
	return 0;
}

void
sockopt_stats(struct sockopt_stats *st)
{
	*st = T.st;
}
