/*
 * SPDX-License-Identifier: ISC
 *
 * A message's header section (msghead.c).
 */
#ifndef LISTQ_MSGHEAD_H
#define LISTQ_MSGHEAD_H

#include <stddef.h>
#include <time.h>

#define HEAD_MAX	65536

/*
 * The header section of the message at offset body of fd, as a string
 * (each line ending in LF, no empty line), or NULL.  Caller frees.
 */
char	*msghead_read(int fd, size_t body);
/* At most max bytes of the message from offset body, NUL-terminated. */
char	*msghead_pread(int fd, size_t body, size_t max, size_t *len);

/*
 * The same from the first n bytes of a message already in memory (those
 * past HEAD_MAX are not looked at), or NULL.  Caller frees.
 */
char	*msghead_copy(const char *msg, size_t n);

/*
 * The value of the next header "name:" at a line start from *from on
 * (the value runs to the end of its line), or NULL; *from moves past it.
 */
const char *msghead_next(const char **from, const char *name);

/* Formats t as the value of a Date: header (RFC 5322). */
void	msghead_date(time_t t, char *buf, size_t len);

#endif
