/*
 * SPDX-License-Identifier: ISC
 *
 * Tokens for decisions by mail: HMAC-SHA-256 (OpenSSL) over the list,
 * the action, the id and the expiry, keyed with a 32-byte secret that
 * listqd creates once per installation.
 *
 * Invariants (9 of the contract): a token cannot be made without the
 * secret, which is read from a service-owned file of mode 0600 and never
 * logged; a token checks only for the list it was made for; MACs are
 * compared in constant time.  Failure modes: no secret (listqd creates
 * it at start), an unreadable one (every token then fails, logged by
 * the caller).
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "durable.h"
#include "number.h"
#include "token.h"

/*
 * Written under a name of its own, then renamed without replacing: two
 * processes making it at once both end with the one that won.
 */
int
token_secret_create(int spoolfd)
{
	unsigned char key[TOKEN_KEY_LEN];
	char tmp[64];
	int fd, rc = -1, saved;

	if (faccessat(spoolfd, TOKEN_SECRET, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", TOKEN_SECRET, (long)getpid());
	if ((fd = openat(spoolfd, tmp, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600)) == -1)
		return -1;
	arc4random_buf(key, sizeof(key));
	if (write_full(fd, key, sizeof(key)) == 0 && fsync(fd) == 0 &&
	    (renameat2(spoolfd, tmp, spoolfd, TOKEN_SECRET,
	    RENAME_NOREPLACE) == 0 || errno == EEXIST))
		rc = durable_fsync_dir(spoolfd);
	saved = errno;
	explicit_bzero(key, sizeof(key));
	close(fd);
	unlinkat(spoolfd, tmp, 0);	/* ENOENT once renamed */
	errno = saved;
	return rc;
}

int
token_secret_load(int spoolfd, unsigned char key[TOKEN_KEY_LEN])
{
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = openat(spoolfd, TOKEN_SECRET, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1 || (st.st_mode & 077) != 0) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	n = read(fd, key, TOKEN_KEY_LEN);
	close(fd);
	if (n != TOKEN_KEY_LEN) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/*
 * The MAC, truncated to 128 bits (RFC 2104 allows half the hash): the
 * whole token then fits on one folded header line, which GMime would
 * otherwise split into encoded words.
 */
static void
mac_hex(const unsigned char key[TOKEN_KEY_LEN], const char *list,
    const struct token *t, char hex[TOKEN_MAC_HEX + 1])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char msg[256];
	size_t i;

	snprintf(msg, sizeof(msg), "listq-token 1\n%s\n%s\n%s\n%" PRId64 "\n",
	    list, t->action, t->id, t->expires);
	HMAC(EVP_sha256(), key, TOKEN_KEY_LEN, (const unsigned char *)msg,
	    strlen(msg), mac, &len);
	for (i = 0; i < len && i < TOKEN_MAC_HEX / 2; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	hex[TOKEN_MAC_HEX] = '\0';
}

void
token_make(const unsigned char key[TOKEN_KEY_LEN], const char *list,
    const struct token *t, char out[TOKEN_MAX])
{
	char hex[TOKEN_MAC_HEX + 1];

	mac_hex(key, list, t, hex);
	snprintf(out, TOKEN_MAX, "%s-%s-%" PRId64 "-%s", t->action, t->id,
	    t->expires, hex);
}

static bool
token_char(char c)
{
	return isalnum((unsigned char)c) || c == '-';
}

/* Splits word "ACTION-ID-EXPIRES-MAC" into t and mac; -1 if malformed. */
static int
parse(const char *word, size_t len, struct token *t,
    char mac[TOKEN_MAC_HEX + 1])
{
	char buf[TOKEN_MAX], *p = buf, *f[4];
	uint64_t n;
	size_t i;

	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, word, len);
	buf[len] = '\0';
	for (i = 0; i < 4; i++)
		if ((f[i] = strsep(&p, "-")) == NULL)
			return -1;
	if (p != NULL || strlen(f[0]) >= sizeof(t->action) ||
	    !qid_valid(f[1]) || number_parse(f[2], INT64_MAX, &n) == -1 ||
	    strlen(f[3]) != TOKEN_MAC_HEX)
		return -1;
	strlcpy(t->action, f[0], sizeof(t->action));
	strlcpy(t->id, f[1], sizeof(t->id));
	t->expires = (int64_t)n;
	memcpy(mac, f[3], TOKEN_MAC_HEX + 1);
	return 0;
}

int
token_find(const unsigned char key[TOKEN_KEY_LEN], const char *list,
    const char *text, struct token *t, const char **why)
{
	const char *p = text, *end;
	char mac[TOKEN_MAC_HEX + 1], want[TOKEN_MAC_HEX + 1];

	*why = "no token";
	for (; *p != '\0'; p = end) {
		while (*p != '\0' && !token_char(*p))
			p++;
		for (end = p; token_char(*end); end++)
			;
		if (end == p || memchr(p, '-', (size_t)(end - p)) == NULL ||
		    (size_t)(end - p) < TOKEN_MAC_HEX)
			continue;
		if (parse(p, (size_t)(end - p), t, mac) == -1) {
			*why = "malformed token";
			continue;
		}
		mac_hex(key, list, t, want);
		if (CRYPTO_memcmp(mac, want, TOKEN_MAC_HEX) != 0) {
			*why = "wrong token (altered, or for another list)";
			return -1;
		}
		return 0;
	}
	return -1;
}
