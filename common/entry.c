/*
 * SPDX-License-Identifier: ISC
 *
 * Writing and parsing the header of a spool entry (format in entry.h).
 *
 * Invariants: what entry_header_format() writes, entry_header_parse()
 * reads back unchanged; the parser never reads past len, accepts exactly
 * one version and rejects anything it does not fully understand, with a
 * reason fit for a log line.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "number.h"

static const char *const commands[] = { "post", "owner", "bounces",
    "request" };
#define SEND	"send"
static const char *const keys[] = {
	"listq-entry", "id", "command", "list", "arrival", "uid", "gid",
	"sender", "rcpt"
};
#define NKEYS		7	/* every entry */
#define NKEYS_SEND	9	/* command send */

bool
entry_command_valid(const char *cmd)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i]) == 0)
			return true;
	return false;
}

static bool
list_char_valid(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return !first && (c == '.' || c == '_' || c == '-');
}

bool
list_name_valid(const char *name)
{
	size_t i;

	for (i = 0; name[i] != '\0'; i++)
		if (i >= LIST_NAME_MAX || !list_char_valid(name[i], i == 0))
			return false;
	return i > 0 && strstr(name, "..") == NULL;
}

int
entry_header_format(const struct entry_header *h, char *buf, size_t size)
{
	int n;

	int send = strcmp(h->command, SEND) == 0;

	if (!qid_valid(h->id) || !(entry_command_valid(h->command) || send) ||
	    !list_name_valid(h->list) || h->arrival_usec < 0 ||
	    h->arrival_usec > 999999 || (send && ((h->sender[0] != '\0' &&
	    !address_valid(h->sender)) || !address_valid(h->rcpt))))
		return -1;
	n = snprintf(buf, size,
	    "listq-entry: %d\nid: %s\ncommand: %s\nlist: %s\n"
	    "arrival: %" PRId64 ".%06ld\nuid: %lu\ngid: %lu\n%s%s%s%s%s\n",
	    ENTRY_VERSION, h->id, h->command, h->list, h->arrival_sec,
	    h->arrival_usec, (unsigned long)h->uid, (unsigned long)h->gid,
	    send ? "sender: " : "", send ? h->sender : "", send ? "\nrcpt: " :
	    "", send ? h->rcpt : "", send ? "\n" : "");
	if (n < 0 || (size_t)n >= size)
		return -1;
	return n;
}

static int
parse_arrival(const char *v, struct entry_header *h)
{
	char sec[24];
	const char *dot = strchr(v, '.');
	uint64_t s, us;

	if (dot == NULL || (size_t)(dot - v) >= sizeof(sec) ||
	    strlen(dot + 1) != 6)
		return -1;
	memcpy(sec, v, (size_t)(dot - v));
	sec[dot - v] = '\0';
	if (number_parse(sec, INT64_MAX, &s) == -1 ||
	    number_parse(dot + 1, 999999, &us) == -1)
		return -1;
	h->arrival_sec = (int64_t)s;
	h->arrival_usec = (long)us;
	return 0;
}

/* Stores the value of key number k; returns a reason on failure. */
static const char *
parse_field(size_t k, const char *v, struct entry_header *h)
{
	uint64_t n;

	switch (k) {
	case 0:
		return number_parse(v, 1000, &n) == -1 || n != ENTRY_VERSION ?
		    "unsupported entry format version" : NULL;
	case 1:
		if (!qid_valid(v))
			return "bad queue id";
		memcpy(h->id, v, QID_SIZE);
		return NULL;
	case 2:
		if (!entry_command_valid(v) && strcmp(v, SEND) != 0)
			return "bad command";
		memcpy(h->command, v, strlen(v) + 1);
		return NULL;
	case 3:
		if (!list_name_valid(v))
			return "bad list name";
		memcpy(h->list, v, strlen(v) + 1);
		return NULL;
	case 4:
		return parse_arrival(v, h) == -1 ? "bad arrival time" : NULL;
	case 5:
		if (number_parse(v, UINT32_MAX - 1, &n) == -1)
			return "bad uid";
		h->uid = (uid_t)n;
		return NULL;
	case 6:
		if (number_parse(v, UINT32_MAX - 1, &n) == -1)
			return "bad gid";
		h->gid = (gid_t)n;
		return NULL;
	case 7:
		if (*v != '\0' && !address_valid(v))
			return "bad sender";
		strlcpy(h->sender, v, sizeof(h->sender));
		return NULL;
	default:
		if (!address_valid(v))
			return "bad recipient";
		strlcpy(h->rcpt, v, sizeof(h->rcpt));
		return NULL;
	}
}

/* How many keys the header has, once its command is known. */
static size_t
nkeys(const struct entry_header *h)
{
	return strcmp(h->command, SEND) == 0 ? NKEYS_SEND : NKEYS;
}

/* Splits "key: value" (NUL-terminated line) for key number k. */
static const char *
parse_line(char *line, size_t k, struct entry_header *h)
{
	size_t klen = strlen(keys[k]);

	if (strncmp(line, keys[k], klen) != 0 || line[klen] != ':' ||
	    line[klen + 1] != ' ')
		return k == 0 ? "not a listq entry" : "missing or misplaced key";
	return parse_field(k, line + klen + 2, h);
}

int
entry_header_parse(const char *buf, size_t len, struct entry_header *h,
    size_t *body, const char **why)
{
	char line[ENTRY_HEADER_MAX];
	size_t k, off = 0, n;
	const char *nl;

	memset(h, 0, sizeof(*h));
	for (k = 0; k <= nkeys(h); k++) {
		nl = memchr(buf + off, '\n', len - off);
		n = nl == NULL ? 0 : (size_t)(nl - (buf + off));
		if (nl == NULL || n >= sizeof(line) ||
		    memchr(buf + off, '\0', n) != NULL) {
			*why = "header truncated or malformed";
			return -1;
		}
		memcpy(line, buf + off, n);
		line[n] = '\0';
		off += n + 1;
		if (k == nkeys(h)) {
			*why = n == 0 ? NULL : "header does not end with a blank line";
			break;
		}
		if ((*why = parse_line(line, k, h)) != NULL)
			return -1;
	}
	if (*why != NULL)
		return -1;
	*body = off;
	return 0;
}
