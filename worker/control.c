/*
 * SPDX-License-Identifier: ISC
 *
 * The control path of listqd: the master's unix socket SPOOLDIR/control
 * (SOCK_SEQPACKET: every message arrives whole, or not at all).
 *
 *	listq -> master		one request: VERB [ARG]
 *	master -> worker	"UID VERB [ARG]" with the connection attached
 *				(SCM_RIGHTS): the worker owning the entry
 *				answers listq itself
 *	replies			lines, several to a message:
 *				  parts N	N workers will answer
 *				  ok ID TEXT	done to entry ID
 *				  err CODE ID TEXT	not done (sysexits code)
 *				  end W		worker W has answered
 *				  (status and ping: lines of their own)
 *
 * listq reads until end of file, which comes once the master and every
 * worker given the connection have closed it.
 *
 * Invariants: only root and the service uid get past the master
 * (SO_PEERCRED, checked there); a send never blocks longer than
 * CTL_SEND_TIMEOUT, so a stuck reader cannot stall the pool.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"

static int
sun_path(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlcpy(sun->sun_path, path, sizeof(sun->sun_path)) >=
	    sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
ctl_listen(const char *path)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, rc;

	if (sun_path(&sun, path) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1)
		return -1;
	unlink(path);
	old = umask(077);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1 || listen(fd, 64) == -1) {
		rc = errno;
		close(fd);
		errno = rc;
		return -1;
	}
	return fd;
}

int
ctl_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, saved;

	if (sun_path(&sun, path) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
ctl_peer_uid(int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return -1;
	*uid = cred.uid;
	return 0;
}

int
ctl_send_fd(int chan, int fd, const char *msg)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)msg,
	    .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	memset(&cm, 0, sizeof(cm));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(chan, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == -1 ? -1 : 0;
}

ssize_t
ctl_recv_fd(int chan, char *buf, size_t len, int *fd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	if ((n = recvmsg(chan, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) == -1)
		return -1;
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	buf[n] = '\0';
	return n;
}

int
ctl_send(int fd, const char *msg, size_t len)
{
	struct timeval tv = { .tv_sec = CTL_SEND_TIMEOUT };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return send(fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

void
ctl_out_init(struct ctl_out *o, int fd)
{
	o->fd = fd;
	o->failed = 0;
	o->len = 0;
}

void
ctl_flush(struct ctl_out *o)
{
	if (o->len > 0 && !o->failed && ctl_send(o->fd, o->buf, o->len) == -1)
		o->failed = 1;
	o->len = 0;
}

void
ctl_line(struct ctl_out *o, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (o->len + (size_t)n > sizeof(o->buf))
		ctl_flush(o);
	memcpy(o->buf + o->len, line, (size_t)n);
	o->len += (size_t)n;
}
