/*
 * Lists: LISTDIR/<name>/ holds "config" (address = name@domain, optional
 * subject_prefix), "members" and "owners" (one address per line, '#'
 * comments and blank lines ignored), and "disabled": members kept in the
 * list but not delivered to (same format; missing means none).  A reader takes each file as one
 * snapshot: writers replace them by rename, so it sees all of the old
 * list or all of the new, never half.
 */
#ifndef LISTQ_LIST_H
#define LISTQ_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "address.h"
#include "entry.h"

struct list_conf {
	char	name[LIST_NAME_MAX + 1];
	char	address[ADDR_MAX + 1];		/* name@domain */
	char	subject_prefix[128];
};

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

/* The members to deliver to: "members" less "disabled". */
int	list_enabled_members(const char *listdir, const char *name,
	    struct addr_list *out, size_t *bad, char *err, size_t errlen);

#endif
