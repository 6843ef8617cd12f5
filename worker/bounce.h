/*
 * Bounce processing (bounce.c): what arrives at a list's -bounces
 * address is parsed (RFC 3464 reports, qmail's QSBMF, Exim's and other
 * plain-text reports, VERP addresses), each bounce is recorded against
 * the member it names, and a member whose score reaches the threshold is
 * disabled.
 */
#ifndef LISTQ_BOUNCE_H
#define LISTQ_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "address.h"
#include "config.h"

#define BOUNCE_MAX	((size_t)1024 * 1024)	/* bytes of a bounce looked at */
#define BOUNCE_HITS	16		/* recipients taken from one */

enum bounce_kind { BOUNCE_SOFT = 1, BOUNCE_HARD };

struct bounce_hit {
	char		 addr[ADDR_MAX + 1];
	char		 status[16];	/* "5.1.1" */
	enum bounce_kind kind;
	char		 diag[200];	/* one line */
	const char	*how;		/* "dsn", "qmail", "exim", "text", "verp" */
};

/*
 * The failed recipients a bounce message reports (msg: NUL-terminated,
 * LF or CRLF line ends).  Returns how many were stored, 0 when it is not
 * a bounce listq recognizes.  Never reads past the terminating NUL.
 */
size_t	bounce_parse(const char *msg, struct bounce_hit *hits, size_t max);

/*
 * VERP: the member named by an address local+user=host@domain found in
 * the bounce's Delivered-To, X-Original-To or To header.
 */
bool	bounce_verp(const char *headers, const char *local,
	    const char *domain, char delim, char *member, size_t len);

/*
 * Records one bounce of member on list: a line in LISTDIR/<list>/bounces
 * and the member's score in LISTDIR/<list>/bounce-scores (hard 1.0, soft
 * 0.5, at most once a day, reset after bounce_info_stale_after).  Reaching
 * bounce_score_threshold adds the member to LISTDIR/<list>/disabled.
 * The list directory is flock'd for the update.  Returns 1 when the
 * member was disabled now, 0 when not, -1 with err set on failure.
 */
int	bounce_record(const char *listdir, const char *list,
	    const char *member, const struct bounce_hit *hit,
	    const struct config *c, time_t now, char *err, size_t errlen);

#endif
