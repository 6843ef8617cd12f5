/*
 * SPDX-License-Identifier: ISC
 *
 * smtp_reply.h -- SMTP replies as listqd's client reads them: lines
 * gathered into one reply (RFC 5321 4.2), the reply code, the RFC 3463
 * enhanced status code, and the outcome a code means for a recipient.
 */
#ifndef LISTQ_SMTP_REPLY_H
#define LISTQ_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_MAX	256	/* one sanitized line, NUL included */
#define SMTP_LINE_MAX	2048	/* longest reply line accepted */

struct smtp_reply {
	int	code;			/* 200..599 once complete */
	char	enh[16];		/* "2.1.0", "" when none given */
	char	text[SMTP_REPLY_MAX];	/* the lines joined by a space */
	size_t	lines;
	int	complete;
};

void	smtp_reply_reset(struct smtp_reply *);
/*
 * Adds one line (without its CRLF).  Returns 1 when it was the last line
 * of the reply, 0 when more lines follow, -1 (reply unchanged) when the
 * line is not a reply line or its code differs from the earlier lines'.
 */
int	smtp_reply_add(struct smtp_reply *, const char *line, size_t len);
/*
 * The text of one reply line past "ddd-" or "ddd " (the EHLO keyword
 * lines), or NULL when line is not a reply line.
 */
const char *smtp_reply_body(const char *line, size_t len, size_t *bodylen);

/* 2 accepted, 4 deferred, 5 failed: what a RCPT reply means (552 is 4). */
int	smtp_rcpt_outcome(int code);
/* The same for the reply to MAIL or to the end of the data. */
int	smtp_msg_outcome(int code);
/*
 * The enhanced code to report: the relay's when it gave one of the right
 * class, else derived from the outcome ("2.0.0", "4.0.0", "5.0.0").
 */
void	smtp_enh_of(char *out, size_t len, int outcome, const char *given);
/* Printable ASCII of src, at most len - 1 bytes, control bytes as '?'. */
void	smtp_clean(char *dst, size_t len, const char *src, size_t srclen);

#endif
