/*
 * Lists: LISTDIR/<name>/ holds "config" (address = name@domain, optional
 * subject_prefix, verp = yes|no, post_policy and nonmember_action),
 * "members" and "owners" (one address per line, '#'
 * comments and blank lines ignored), and "disabled": members kept in the
 * list but not delivered to (same format; missing means none).
 * "moderators" and "accept" (same format) say who moderates (none: the
 * owners) and which non-members may post.  A reader takes each file as one
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
	int	verp;				/* verp = yes */
	int	post_policy;			/* enum post_policy */
	int	nonmember_action;		/* enum nonmember_action */
};

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

/*
 * Reads the addresses of an open file of the same format into out,
 * counting in *bad the lines that are not valid addresses; *first_bad
 * gets the number of the first such line (0: none).  -1 with errno
 * ENOMEM when out of memory (out is then empty).
 */
int	addr_list_read(FILE *f, struct addr_list *out, size_t *bad,
	    size_t *first_bad);

/*
 * The address on a line of a list file, as readers take it (comment and
 * surrounding space stripped), into out; "" when the line has none.
 */
void	list_line_address(const char *line, char *out, size_t len);

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

#endif
