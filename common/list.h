/*
 * SPDX-License-Identifier: ISC
 *
 * Lists: LISTDIR/<name>/ holds "config" (address = name@domain, optional
 * subject_prefix, archive_url, verp = yes|no, post_policy, nonmember_action,
 * subscribe_policy and the
 * dmarc_ keys of listq.conf(5)), "members" and "owners" (one address per
 * line, '#' comments and blank lines ignored; a line that is no address
 * or longer than LIST_LINE_MAX is bad, skipped whole and counted), and
 * "disabled": members kept in the list but not delivered to (same
 * format; missing means none).  "moderators" and "accept" (same format)
 * say who moderates (none: the owners) and which non-members may post.
 * A reader takes each file as one
 * snapshot: writers replace them by rename, so it sees all of the old
 * list or all of the new, never half.
 */
#ifndef LISTQ_LIST_H
#define LISTQ_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "address.h"
#include "entry.h"

/* Who may post; a config without the keys is members + hold (inv. 10). */
enum post_policy { POLICY_MEMBERS, POLICY_MODERATED, POLICY_ANNOUNCE,
	POLICY_OPEN };
enum nonmember_action { NONMEMBER_HOLD, NONMEMBER_REJECT, NONMEMBER_DISCARD };

struct list_conf {
	char	name[LIST_NAME_MAX + 1];
	char	address[ADDR_MAX + 1];		/* name@domain */
	char	subject_prefix[128];
	char	archive_url[256];		/* List-Archive; "" = none */
	int	verp;				/* verp = yes */
	int	dmarc_mitigation;		/* enum dmarc_mitigation */
	int	dmarc_always;			/* dmarc_mitigation_always */
	int	dmarc_author_cc;		/* dmarc_author_header = cc */
	int	post_policy;			/* enum post_policy */
	int	nonmember_action;		/* enum nonmember_action */
	int	subscribe_policy;		/* enum subscribe_policy */
};

/* Who may join by mail: confirm (default) or closed (the admin only). */
enum subscribe_policy { SUBSCRIBE_CONFIRM, SUBSCRIBE_CLOSED };

/* What a post From: a DMARC reject or quarantine domain becomes. */
enum dmarc_mitigation { DMARC_MITIGATE_NONE, DMARC_MUNGE_FROM, DMARC_WRAP };

/* The words of post_policy and nonmember_action, by value. */
extern const char *const list_policy_words[];
extern const char *const list_nonmember_words[];

struct addr_list {
	char	**v;
	size_t	  n;
};

/* Loads LISTDIR/<name>/config; errors name the file and line. */
int	list_conf_load(const char *listdir, const char *name,
	    struct list_conf *lc, char *err, size_t errlen);

/*
 * Reads the addresses of LISTDIR/<name>/<file> into out, skipping and
 * counting in *bad the lines that are not valid addresses.  Returns -1
 * with a reason in err when the file cannot be read.
 */
int	list_addresses(const char *listdir, const char *name,
	    const char *file, struct addr_list *out, size_t *bad, char *err,
	    size_t errlen);

void	addr_list_free(struct addr_list *l);

/* Appends a copy of a; -1 when out of memory. */
int	addr_list_add(struct addr_list *l, const char *a);

/* The members to deliver to: "members" less "disabled". */
int	list_enabled_members(const char *listdir, const char *name,
	    struct addr_list *out, size_t *bad, char *err, size_t errlen);

/* The longest line of a list file, its newline not counted. */
#define LIST_LINE_MAX		1023
#define LIST_LINE_MAX_TEXT	"1023"

/* Lines of a list file skipped as bad: how many, and the first one. */
struct bad_lines {
	size_t		 n;
	size_t		 first;		/* its line number, 0: none */
	const char	*why;		/* what is wrong with it (static) */
};

/* list_addresses() telling which line was the first bad one. */
int	list_file_read(const char *listdir, const char *name,
	    const char *file, struct addr_list *out, struct bad_lines *bad,
	    char *err, size_t errlen);

/*
 * Reads the addresses of an open file of the same format into out,
 * whole lines at a time, describing in *bad the lines that are not
 * valid addresses or are longer than LIST_LINE_MAX.  -1 with errno
 * ENOMEM when out of memory (out is then empty).
 */
int	addr_list_read(FILE *f, struct addr_list *out, struct bad_lines *bad);

enum list_line { LIST_LINE_NONE, LIST_LINE_ADDRESS, LIST_LINE_BAD };

/*
 * The one rule for a line of a list file (line[0..len), a trailing
 * newline allowed), for every reader: blank or comment only (NONE), an
 * address, copied into out (ADDRESS), or bad (BAD, *why says why): not
 * a valid address, or longer than LIST_LINE_MAX -- such a line is never
 * cut into pieces.
 */
enum list_line list_line_take(const char *line, size_t len, char *out,
	    size_t outlen, const char **why);

/* Orders two valid addresses the way address_equal() compares them. */
int	address_compare(const char *a, const char *b);

/* Sorts l by address_compare(), for addr_list_has(). */
void	addr_list_sort(struct addr_list *l);

/* Is a in l, sorted by addr_list_sort()? */
bool	addr_list_has(const struct addr_list *l, const char *a);

/*
 * Removes every address equal (address_equal) to an earlier one,
 * keeping the order of the rest; returns how many went.  -1 when out of
 * memory (l unchanged).
 */
long	addr_list_fold(struct addr_list *l);

/*
 * The whole of dirfd/file, NUL-terminated ("" when it does not exist);
 * NULL with errno.  The caller frees.
 */
char	*list_file_slurp(int dirfd, const char *file, size_t *len);

/*
 * The one writer of list files (listq members, subscriptions by mail):
 * rewrites dirfd/file keeping every line, comments included, but those
 * whose address is in drop (sorted), appends the addresses of add not
 * there yet, and replaces the file whole (durable_replace) only if that
 * changed anything, counting what went and what came.  The caller holds
 * the flock of the list's directory.  -1 with errno: nothing changed.
 */
int	list_file_edit(int dirfd, const char *file,
	    const struct addr_list *drop, const struct addr_list *add,
	    size_t *gone, size_t *added);

#endif
