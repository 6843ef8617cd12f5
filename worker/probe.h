/*
 * SPDX-License-Identifier: ISC
 *
 * VERP probes (probe.c): before bounces disable a member, listqd sends
 * the member a short probe from the envelope sender
 * LIST-bounces<delim>probe-TOKEN@domain, TOKEN random and recorded with
 * the member in LISTDIR/<list>/probes.  Only a bounce that the MTA
 * delivers to that address -- the probe itself bouncing -- disables the
 * member; a forged report costs the forger a probe the member receives.
 */
#ifndef LISTQ_PROBE_H
#define LISTQ_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define PROBE_TOKEN_BYTES	16	/* 128 random bits */
#define PROBE_TOKEN_LEN		32	/* the same in hex */
#define PROBE_TAG		"probe-"		/* before the token */

/*
 * With the list directory dirfd flock'd by the caller: records a new
 * probe of member, its token in token.  Probes older than lifetime are
 * forgotten.  Returns 1 when a probe is to be sent, 0 when one for the
 * member is still pending (none is added), -1 with errno on failure.
 */
int	probe_add(int dirfd, const char *member, time_t now, time_t lifetime,
	    char token[PROBE_TOKEN_LEN + 1]);

/*
 * With dirfd flock'd: removes the probe with this token (single use).
 * Returns 1 with its member in member, 0 when there is no such probe or
 * it is older than lifetime, -1 with errno on failure.
 */
int	probe_take(int dirfd, const char *token, time_t now, time_t lifetime,
	    char *member, size_t len);

/*
 * The token of an envelope recipient's extension "probe-TOKEN" (as the
 * MTA delivered it), or false when ext is not one.
 */
bool	probe_token_of(const char *ext, char token[PROBE_TOKEN_LEN + 1]);

#endif
