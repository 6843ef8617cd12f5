/*
 * SPDX-License-Identifier: ISC
 *
 * Reading a spooled message's own header section, for the few headers
 * listqd looks at (Subject, X-Loop, Content-Type, Delivered-To).
 *
 * Invariants: at most HEAD_MAX bytes are read, whatever the message; the
 * section ends at the first empty line; header names match without
 * regard to case and only at the start of a line (a folded continuation
 * never matches).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "msghead.h"

/* Cuts buf (n bytes of message, room for one more) to its header section. */
static char *
cut_head(char *buf, size_t n)
{
	char *end;

	buf[n] = '\0';
	if (buf[0] == '\n')
		buf[0] = '\0';
	else if ((end = strstr(buf, "\n\n")) != NULL)
		end[1] = '\0';
	return buf;
}

/* At most max bytes of the message from offset body, as a string. */
char *
msghead_pread(int fd, size_t body, size_t max, size_t *len)
{
	char *buf = malloc(max + 1);
	ssize_t n;

	if (buf == NULL || (n = pread(fd, buf, max, (off_t)body)) < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* The message's header section, at most HEAD_MAX bytes, as a string. */
char *
msghead_read(int fd, size_t body)
{
	size_t n;
	char *buf = msghead_pread(fd, body, HEAD_MAX, &n);

	return buf == NULL ? NULL : cut_head(buf, n);
}

char *
msghead_copy(const char *msg, size_t n)
{
	char *buf;

	if (n > HEAD_MAX)
		n = HEAD_MAX;
	if ((buf = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(buf, msg, n);
	return cut_head(buf, n);
}

/*
 * The value of the next header "name:" at a line start after *from, or
 * NULL; *from moves past it.
 */
const char *
msghead_next(const char **from, const char *name)
{
	size_t len = strlen(name);
	const char *p = *from, *v;

	for (; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 :
	    NULL) {
		if (strncasecmp(p, name, len) != 0 || p[len] != ':')
			continue;
		for (v = p + len + 1; *v == ' ' || *v == '\t'; v++)
			continue;
		*from = v;
		return v;
	}
	*from = NULL;
	return NULL;
}


void
msghead_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}
