/*
 * SPDX-License-Identifier: ISC
 *
 * Unguessable single-use tokens for decisions by mail (token.c).
 *
 * A token reads ACTION-ID-EXPIRES-MAC: MAC is the hex HMAC-SHA-256
 * (its first 128 bits), keyed
 * with the installation's secret, of the list name, ACTION, ID and
 * EXPIRES.  Whoever holds a token may take that one action on that one
 * thing of that one list until it expires; single use comes from the
 * thing (a held post) being gone once decided.
 */
#ifndef LISTQ_TOKEN_H
#define LISTQ_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "qid.h"

#define TOKEN_SECRET	"secret"	/* SPOOLDIR/secret, 0600 */
#define TOKEN_KEY_LEN	32
#define TOKEN_ACTION_MAX 16
#define TOKEN_MAC_HEX	32
#define TOKEN_MAX	(TOKEN_ACTION_MAX + QID_SIZE + 24 + TOKEN_MAC_HEX + 4)

struct token {
	char	 action[TOKEN_ACTION_MAX];
	char	 id[QID_SIZE];
	int64_t	 expires;
};

/*
 * Creates the secret (random, mode 0600) under spoolfd if there is none
 * yet; listqd's master does it at start.  -1 with errno.
 */
int	token_secret_create(int spoolfd);

/* Loads the secret into key; -1 with errno. */
int	token_secret_load(int spoolfd, unsigned char key[TOKEN_KEY_LEN]);

/* Writes the token for t on list into out (TOKEN_MAX). */
void	token_make(const unsigned char key[TOKEN_KEY_LEN], const char *list,
	    const struct token *t, char out[TOKEN_MAX]);

/*
 * Finds the first word of text that looks like a token and parses it
 * into t; returns 0 if its MAC is right for list, -1 otherwise with
 * *why: "no token", "malformed token" or "wrong token" (altered, or for
 * another list).  Expiry is the caller's to check.
 */
int	token_find(const unsigned char key[TOKEN_KEY_LEN], const char *list,
	    const char *text, struct token *t, const char **why);

#endif
