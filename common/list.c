/*
 * Reading lists (see list.h).
 *
 * Invariants: an address handed out is valid by address_valid() and at
 * most ADDR_MAX bytes; a list's configuration is complete (its address
 * valid) or the load fails with the file and line named.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "list.h"

const char *const list_policy_words[] = { "members", "moderated",
	"announce", "open", NULL };
const char *const list_nonmember_words[] = { "hold", "reject", "discard",
	NULL };

/* The index of value in words, or -1. */
static int
word_index(const char *const *words, const char *value)
{
	int i;

	for (i = 0; words[i] != NULL; i++)
		if (strcmp(words[i], value) == 0)
			return i;
	return -1;
}

static const char *
list_key(const char *key, const char *value, void *arg)
{
	struct list_conf *lc = arg;

	if (strcmp(key, "post_policy") == 0)
		return (lc->post_policy = word_index(list_policy_words,
		    value)) == -1 ? "members, moderated, announce or open" : NULL;
	if (strcmp(key, "nonmember_action") == 0)
		return (lc->nonmember_action = word_index(list_nonmember_words,
		    value)) == -1 ? "hold, reject or discard" : NULL;

	if (strcmp(key, "address") == 0) {
		if (!address_valid(value))
			return "not a valid address";
		strlcpy(lc->address, value, sizeof(lc->address));
		return NULL;
	}
	if (strcmp(key, "subject_prefix") == 0) {
		if (strlcpy(lc->subject_prefix, value,
		    sizeof(lc->subject_prefix)) >= sizeof(lc->subject_prefix))
			return "value too long";
		return NULL;
	}
	if (strcmp(key, "verp") == 0) {
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0)
			return "yes or no";
		lc->verp = strcmp(value, "yes") == 0;
		return NULL;
	}
	return "unknown key";
}

int
list_conf_load(const char *listdir, const char *name, struct list_conf *lc,
    char *err, size_t errlen)
{
	char path[1024];

	memset(lc, 0, sizeof(*lc));
	if (!list_name_valid(name)) {
		snprintf(err, errlen, "bad list name");
		return -1;
	}
	strlcpy(lc->name, name, sizeof(lc->name));
	snprintf(path, sizeof(path), "%s/%s/config", listdir, name);
	if (conf_read(path, list_key, lc, err, errlen) == -1)
		return -1;
	if (lc->address[0] == '\0') {
		snprintf(err, errlen, "%s: no address", path);
		return -1;
	}
	return 0;
}

/*
 * The array grows by doubling, so reading n addresses costs O(n), not
 * O(n^2) copies (a realloc that cannot grow in place copies the whole
 * array; under ASan every realloc does).  The capacity is implied by n:
 * 16, then the next power of two; it only shrinks when entries are
 * removed, which leaves the allocation larger than implied, never
 * smaller.
 */
static int
addr_push(struct addr_list *l, const char *a)
{
	char **v, *copy;
	size_t cap;

	if ((copy = strdup(a)) == NULL)
		return -1;
	if (l->n == 0 || (l->n >= 16 && (l->n & (l->n - 1)) == 0)) {
		cap = l->n == 0 ? 16 : l->n * 2;
		if ((v = reallocarray(l->v, cap, sizeof(*v))) == NULL) {
			free(copy);
			return -1;
		}
		l->v = v;
	}
	l->v[l->n++] = copy;
	return 0;
}

/* Strips comment and surrounding space; returns the address or "". */
static char *
address_of_line(char *line)
{
	char *e;

	line[strcspn(line, "#\n")] = '\0';
	while (isspace((unsigned char)*line))
		line++;
	e = line + strlen(line);
	while (e > line && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return line;
}

void
list_line_address(const char *line, char *out, size_t len)
{
	char buf[1024];

	strlcpy(buf, line, sizeof(buf));
	strlcpy(out, address_of_line(buf), len);
}

int
addr_list_read(FILE *f, struct addr_list *out, size_t *bad,
    size_t *first_bad)
{
	char line[1024], *a;
	size_t lineno = 0;

	memset(out, 0, sizeof(*out));
	*bad = *first_bad = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		a = address_of_line(line);
		if (*a == '\0')
			continue;
		if (!address_valid(a)) {
			if ((*bad)++ == 0)
				*first_bad = lineno;
			continue;
		}
		if (addr_push(out, a) == -1) {
			addr_list_free(out);
			errno = ENOMEM;
			return -1;
		}
	}
	return 0;
}

/*
 * The addresses of one list file; a missing file is an error unless
 * optional, when it reads as empty (one open, no access() before it).
 */
static int
read_list_file(const char *listdir, const char *name, const char *file,
    int optional, struct addr_list *out, size_t *bad, char *err,
    size_t errlen)
{
	char path[1024];
	size_t first;
	FILE *f;
	int rc;

	memset(out, 0, sizeof(*out));
	*bad = 0;
	snprintf(path, sizeof(path), "%s/%s/%s", listdir, name, file);
	if ((f = fopen(path, "re")) == NULL) {
		if (optional && errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((rc = addr_list_read(f, out, bad, &first)) == -1)
		snprintf(err, errlen, "%s: out of memory", path);
	fclose(f);
	return rc;
}

int
list_addresses(const char *listdir, const char *name, const char *file,
    struct addr_list *out, size_t *bad, char *err, size_t errlen)
{
	return read_list_file(listdir, name, file, 0, out, bad, err, errlen);
}

int
addr_list_add(struct addr_list *l, const char *a)
{
	return addr_push(l, a);
}

void
addr_list_free(struct addr_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int
list_enabled_members(const char *listdir, const char *name,
    struct addr_list *out, size_t *bad, char *err, size_t errlen)
{
	struct addr_list off;
	size_t i, kept = 0, badoff;

	if (list_addresses(listdir, name, "members", out, bad, err,
	    errlen) == -1)
		return -1;
	if (read_list_file(listdir, name, "disabled", 1, &off, &badoff, err,
	    errlen) == -1) {
		addr_list_free(out);
		return -1;
	}
	if (off.n == 0)
		return 0;
	addr_list_sort(&off);
	for (i = 0; i < out->n; i++) {
		if (addr_list_has(&off, out->v[i]))
			free(out->v[i]);
		else
			out->v[kept++] = out->v[i];
	}
	out->n = kept;
	addr_list_free(&off);
	return 0;
}

int
address_compare(const char *a, const char *b)
{
	return address_cmp(&a, &b);
}

void
addr_list_sort(struct addr_list *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), address_cmp);
}

bool
addr_list_has(const struct addr_list *l, const char *a)
{
	return l->n > 0 && bsearch(&a, l->v, l->n, sizeof(*l->v),
	    address_cmp) != NULL;
}

/* Orders slots of one array by address, then by position. */
static int
slot_cmp(const void *pa, const void *pb)
{
	char **const *a = pa, **const *b = pb;
	int c = address_cmp(*a, *b);

	if (c != 0)
		return c;
	return *a < *b ? -1 : *a > *b;
}

long
addr_list_fold(struct addr_list *l)
{
	char ***by;
	size_t i, head = 0, kept = 0;
	long gone = 0;

	if (l->n < 2)
		return 0;
	if ((by = reallocarray(NULL, l->n, sizeof(*by))) == NULL)
		return -1;
	for (i = 0; i < l->n; i++)
		by[i] = &l->v[i];
	qsort(by, l->n, sizeof(*by), slot_cmp);
	for (i = 1; i < l->n; i++) {
		if (!address_equal(*by[head], *by[i])) {
			head = i;
			continue;
		}
		free(*by[i]);
		*by[i] = NULL;
		gone++;
	}
	free(by);
	for (i = 0; i < l->n; i++)
		if (l->v[i] != NULL)
			l->v[kept++] = l->v[i];
	l->n = kept;
	return gone;
}
