/*
 * SPDX-License-Identifier: ISC
 *
 * The control path of listqd (see control.c for the protocol).
 */
#ifndef LISTQ_CONTROL_H
#define LISTQ_CONTROL_H

#include <sys/types.h>

#include <stddef.h>

#define CTL_REQUEST_MAX	512		/* one request, NUL included */
#define CTL_REPLY_MAX	65536		/* one reply message */
#define CTL_SEND_TIMEOUT 5		/* seconds a sender waits on a reader */

/* Master: a fresh listening socket at path (umask 077). */
int	ctl_listen(const char *path);

/* listq: a connection to the master at path, or -1 with errno. */
int	ctl_connect(const char *path);

/* The uid of the peer of a connected socket (SO_PEERCRED); -1 on error. */
int	ctl_peer_uid(int fd, uid_t *uid);

/* Sends msg (a string) with fd attached, without blocking; -1 errno. */
int	ctl_send_fd(int chan, int fd, const char *msg);

/*
 * Receives one message of at most len - 1 bytes, NUL-terminated, and the
 * descriptor attached to it, if any (*fd, else -1), without blocking.
 * Returns its length, 0 at end of file, -1 with errno (EAGAIN: none).
 */
ssize_t	ctl_recv_fd(int chan, char *buf, size_t len, int *fd);

/* Sends one message; -1 when the reader is gone or too slow. */
int	ctl_send(int fd, const char *msg, size_t len);

/*
 * Replies gathered into messages of whole lines: ctl_line() appends a
 * line (no newline given), sending what is gathered when it would not
 * fit; ctl_flush() sends the rest.  After a failed send nothing more is
 * sent (failed is set).
 */
struct ctl_out {
	int	 fd;
	int	 failed;
	size_t	 len;
	char	 buf[8192];
};
void	ctl_out_init(struct ctl_out *o, int fd);
void	ctl_line(struct ctl_out *o, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	ctl_flush(struct ctl_out *o);

#endif
