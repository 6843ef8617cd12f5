/*
 * SPDX-License-Identifier: ISC
 *
 * The spool entry: a text header, a blank line, then the raw message.
 *
 *	listq-entry: 1
 *	id: <queue id>
 *	command: post | owner | bounces | request
 *	list: <list name>
 *	arrival: <seconds>.<microseconds>
 *	uid: <caller's real uid>
 *	gid: <caller's real gid>
 *	sender: <address or nothing for <>>	only for command send
 *	rcpt: <address>				only for command send
 *	<blank line>
 *	<message bytes, unchanged>
 *
 * post, owner, bounces and request (mail to name-request: a moderator's
 * decision) come from the MTA through the wrapper; send is
 * listqd's own (DSNs, notices): a finished message with its envelope.
 * The header is ASCII, at most ENTRY_HEADER_MAX bytes, keys in this order,
 * each once.  A reader that meets another version, an unknown key or a bad
 * value rejects the entry (it goes to corrupt/), it never guesses.
 */
#ifndef LISTQ_ENTRY_H
#define LISTQ_ENTRY_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "qid.h"

#define ENTRY_VERSION		1
#define ENTRY_HEADER_MAX	1024
#define LIST_NAME_MAX		64
#define COMMAND_MAX		8

struct entry_header {
	char		id[QID_SIZE];
	char		command[COMMAND_MAX];
	char		list[LIST_NAME_MAX + 1];
	int64_t		arrival_sec;
	long		arrival_usec;
	uid_t		uid;
	gid_t		gid;
	char		sender[ADDR_MAX + 1];	/* send only; "" = <> */
	char		rcpt[ADDR_MAX + 1];	/* send only */
};

/* True for "post", "owner", "bounces", "request": what an MTA submits. */
bool	entry_command_valid(const char *cmd);

/* True for [a-z0-9][a-z0-9._-]{0,63} without "..". */
bool	list_name_valid(const char *name);

/*
 * Formats h, blank line included, into buf.  Returns the length, or -1
 * when a field is invalid or buf is too small.
 */
int	entry_header_format(const struct entry_header *h, char *buf,
	    size_t size);

/*
 * Parses the header at the start of buf[0..len).  On success fills h, sets
 * *body to the offset of the first message byte and returns 0; otherwise
 * returns -1 and points *why at a short reason.
 */
int	entry_header_parse(const char *buf, size_t len,
	    struct entry_header *h, size_t *body, const char **why);

#endif
