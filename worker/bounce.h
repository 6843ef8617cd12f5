/*
 * SPDX-License-Identifier: ISC
 *
 * Bounce processing (bounce.c): what arrives at a list's -bounces
 * address is parsed (RFC 3464 reports, qmail's QSBMF, Exim's and other
 * plain-text reports, the VERP address the MTA delivered it to), each
 * bounce is recorded against the member it names, a member whose score
 * reaches the threshold gets a VERP probe, and a member whose probe
 * bounces is disabled.
 */
#ifndef LISTQ_BOUNCE_H
#define LISTQ_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "address.h"
#include "config.h"
#include "probe.h"

#define BOUNCE_MAX	((size_t)1024 * 1024)	/* bytes of a bounce looked at */
#define BOUNCE_HITS	16		/* recipients taken from one */

enum bounce_kind { BOUNCE_SOFT = 1, BOUNCE_HARD };

struct bounce_hit {
	char		 addr[ADDR_MAX + 1];
	char		 status[16];	/* "5.1.1" */
	enum bounce_kind kind;
	char		 diag[200];	/* one line */
	const char	*how;		/* "dsn", "qmail", "exim", "text", "verp",
					   "probe" */
};

/*
 * The failed recipients a bounce message reports (msg: NUL-terminated,
 * LF or CRLF line ends).  Returns how many were stored, 0 when it is not
 * a bounce listq recognizes.  Never reads past the terminating NUL.
 */
size_t	bounce_parse(const char *msg, struct bounce_hit *hits, size_t max);

/*
 * The envelope recipient's extension, as the MTA delivered the bounce:
 * the topmost Delivered-To (Postfix's local(8) prepends it) when it is
 * local<delim>EXT@domain, EXT into ext.  No other header counts, nor a
 * Delivered-To below the topmost: the sender writes those.
 */
bool	bounce_envelope_ext(const char *headers, const char *local,
	    const char *domain, char delim, char *ext, size_t len);

/* VERP: the member user@host that an extension "user=host" names. */
bool	bounce_verp_member(const char *ext, char *member, size_t len);

/*
 * Records one bounce of member on list: a line in LISTDIR/<list>/bounces
 * and the member's score in LISTDIR/<list>/bounce-scores (hard 1.0, soft
 * 0.5, at most once a day, reset after bounce_info_stale_after).  Reaching
 * bounce_score_threshold records a VERP probe (probe.h) unless one is
 * pending, and starts the score again; nothing is disabled here.  The
 * list directory is flock'd for the update.  Returns 1 when a probe is
 * to be sent now (token set), 0 when not, -1 with err set on failure.
 * The caller has checked that member is a member.
 */
int	bounce_record(const char *listdir, const char *list,
	    const char *member, const struct bounce_hit *hit,
	    const struct config *c, time_t now,
	    char token[PROBE_TOKEN_LEN + 1], char *err, size_t errlen);

/*
 * A bounce of the probe with this token: under the list's flock the
 * token is taken (single use) and its member, if still a member, added
 * to LISTDIR/<list>/disabled.  Returns 1 when member (set) was disabled
 * now, 2 when it is not a member or was disabled already, 0 when no
 * pending probe has this token, -1 with err set on failure.
 */
int	bounce_probe_failed(const char *listdir, const char *list,
	    const char *token, const struct config *c, time_t now,
	    char *member, size_t len, char *err, size_t errlen);

#endif
