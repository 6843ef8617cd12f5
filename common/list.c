/*
 * SPDX-License-Identifier: ISC
 *
 * Reading lists (see list.h).
 *
 * Invariants: an address handed out is valid by address_valid() and at
 * most ADDR_MAX bytes; every reader of a list file (listqd, listq, an
 * import) takes its lines by list_line_take(), whole: a line longer than
 * LIST_LINE_MAX is one bad line, never a comment and an address; a
 * list's configuration is complete (its address valid) or the load
 * fails with the file and line named.  Failure modes: out of memory
 * (ENOMEM, nothing returned), a file that cannot be opened (named).
 */
#include <sys/stat.h>

#include <ctype.h>
#include <fcntl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "durable.h"
#include "list.h"

const char *const list_policy_words[] = { "members", "moderated",
	"announce", "open", NULL };
const char *const list_nonmember_words[] = { "hold", "reject", "discard",
	NULL };

/* Sets *out to the index of value in words; NULL, or why when absent. */
static const char *
list_word(const char *value, const char *const *words, int *out,
    const char *why)
{
	int i;

	for (i = 0; words[i] != NULL; i++)
		if (strcmp(value, words[i]) == 0) {
			*out = i;
			return NULL;
		}
	return why;
}

/* The dmarc_ keys (listq.conf(5), section LIST KEYS). */
static const char *
dmarc_key(const char *key, const char *value, struct list_conf *lc)
{
	static const char *const mitigations[] = { "none", "munge_from",
	    "wrap", NULL }, *const no_yes[] = { "no", "yes", NULL },
	    *const headers[] = { "reply-to", "cc", NULL };

	if (strcmp(key, "dmarc_mitigation") == 0)
		return list_word(value, mitigations, &lc->dmarc_mitigation,
		    "munge_from, wrap or none");
	if (strcmp(key, "dmarc_mitigation_always") == 0)
		return list_word(value, no_yes, &lc->dmarc_always, "yes or no");
	if (strcmp(key, "dmarc_author_header") == 0)
		return list_word(value, headers, &lc->dmarc_author_cc,
		    "reply-to or cc");
	return "unknown key";
}

/*
 * archive_url goes into every post as "List-Archive: <url>": a URL of
 * printable ASCII with a scheme, nothing that could end the angle
 * brackets or the header line.
 */
static const char *
archive_url(const char *value, struct list_conf *lc)
{
	const char *p;

	for (p = value; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>')
			return "not a URL (space, angle bracket or "
			    "non-ASCII byte)";
	if (strncmp(value, "https://", 8) != 0 &&
	    strncmp(value, "http://", 7) != 0 &&
	    strncmp(value, "mailto:", 7) != 0)
		return "not an http, https or mailto URL";
	if (strlcpy(lc->archive_url, value, sizeof(lc->archive_url)) >=
	    sizeof(lc->archive_url))
		return "value too long";
	return NULL;
}

static const char *
list_key(const char *key, const char *value, void *arg)
{
	struct list_conf *lc = arg;

	if (strcmp(key, "post_policy") == 0)
		return list_word(value, list_policy_words, &lc->post_policy,
		    "members, moderated, announce or open");
	if (strcmp(key, "nonmember_action") == 0)
		return list_word(value, list_nonmember_words,
		    &lc->nonmember_action, "hold, reject or discard");
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
	if (strcmp(key, "subscribe_policy") == 0)
		return list_word(value, (const char *const[]){ "confirm",
		    "closed", NULL }, &lc->subscribe_policy,
		    "confirm or closed");
	if (strcmp(key, "archive_url") == 0)
		return archive_url(value, lc);
	if (strcmp(key, "verp") == 0)
		return list_word(value, (const char *const[]){ "no", "yes",
		    NULL }, &lc->verp, "yes or no");
	return dmarc_key(key, value, lc);
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

/*
 * A line is judged whole: one longer than LIST_LINE_MAX is bad as a
 * whole, never cut into a comment and an address.
 */
enum list_line
list_line_take(const char *line, size_t len, char *out, size_t outlen,
    const char **why)
{
	char buf[LIST_LINE_MAX + 1], *a;

	*why = NULL;
	out[0] = '\0';
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > LIST_LINE_MAX) {
		*why = "longer than " LIST_LINE_MAX_TEXT " bytes";
		return LIST_LINE_BAD;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		*why = "holds a NUL byte";
		return LIST_LINE_BAD;
	}
	if (*(a = address_of_line(buf)) == '\0')
		return LIST_LINE_NONE;
	if (!address_valid(a) || strlcpy(out, a, outlen) >= outlen) {
		out[0] = '\0';
		*why = "not a valid address";
		return LIST_LINE_BAD;
	}
	return LIST_LINE_ADDRESS;
}

static void
bad_line(struct bad_lines *bad, size_t lineno, const char *why)
{
	if (bad->n++ == 0) {
		bad->first = lineno;
		bad->why = why;
	}
}

int
addr_list_read(FILE *f, struct addr_list *out, struct bad_lines *bad)
{
	char *line = NULL, addr[ADDR_MAX + 1];
	const char *why;
	size_t lineno = 0, cap = 0;
	ssize_t len;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	memset(bad, 0, sizeof(*bad));
	while ((len = getline(&line, &cap, f)) > 0) {
		lineno++;
		switch (list_line_take(line, (size_t)len, addr, sizeof(addr),
		    &why)) {
		case LIST_LINE_NONE:
			break;
		case LIST_LINE_BAD:
			bad_line(bad, lineno, why);
			break;
		case LIST_LINE_ADDRESS:
			if (addr_push(out, addr) == -1) {
				addr_list_free(out);
				rc = -1;
			}
			break;
		}
		if (rc == -1)
			break;
	}
	free(line);
	if (rc == -1)
		errno = ENOMEM;
	return rc;
}

/*
 * The addresses of one list file; a missing file is an error unless
 * optional, when it reads as empty (one open, no access() before it).
 */
static int
read_list_file(const char *listdir, const char *name, const char *file,
    int optional, struct addr_list *out, struct bad_lines *bad, char *err,
    size_t errlen)
{
	char path[1024];
	FILE *f;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(bad, 0, sizeof(*bad));
	snprintf(path, sizeof(path), "%s/%s/%s", listdir, name, file);
	if ((f = fopen(path, "re")) == NULL) {
		if (optional && errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((rc = addr_list_read(f, out, bad)) == -1)
		snprintf(err, errlen, "%s: out of memory", path);
	fclose(f);
	return rc;
}

int
list_file_read(const char *listdir, const char *name, const char *file,
    struct addr_list *out, struct bad_lines *bad, char *err, size_t errlen)
{
	return read_list_file(listdir, name, file, 0, out, bad, err, errlen);
}

int
list_addresses(const char *listdir, const char *name, const char *file,
    struct addr_list *out, size_t *bad, char *err, size_t errlen)
{
	struct bad_lines b;
	int rc = read_list_file(listdir, name, file, 0, out, &b, err, errlen);

	*bad = b.n;
	return rc;
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
	struct bad_lines badoff;
	size_t i, kept = 0;

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

char *
list_file_slurp(int dirfd, const char *file, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd, saved;

	*len = 0;
	if ((fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) ==
	    -1)
		return errno == ENOENT ? calloc(1, 1) : NULL;
	if (fstat(fd, &st) == -1 || (buf = malloc((size_t)st.st_size + 1)) ==
	    NULL) {
		saved = errno;
		close(fd);
		errno = saved;
		return NULL;
	}
	while (*len < (size_t)st.st_size && (n = read(fd, buf + *len,
	    (size_t)st.st_size - *len)) > 0)
		*len += (size_t)n;
	close(fd);
	buf[*len] = '\0';
	return buf;
}

/* Copies the lines of old to f but those in drop; collects the rest. */
static int
edit_lines(char *old, FILE *f, const struct addr_list *drop,
    struct addr_list *have, size_t *gone)
{
	char *p = old, *line, addr[ADDR_MAX + 1];
	const char *why;
	bool is_addr;

	while ((line = strsep(&p, "\n")) != NULL) {
		if (p == NULL && *line == '\0')
			break;		/* after the last newline */
		is_addr = list_line_take(line, strlen(line), addr,
		    sizeof(addr), &why) == LIST_LINE_ADDRESS;
		if (is_addr && addr_list_has(drop, addr)) {
			(*gone)++;
			continue;
		}
		fprintf(f, "%s\n", line);
		if (is_addr && addr_list_add(have, addr) == -1)
			return -1;
	}
	return 0;
}

int
list_file_edit(int dirfd, const char *file, const struct addr_list *drop,
    const struct addr_list *add, size_t *gone, size_t *added)
{
	struct addr_list have = { NULL, 0 };
	char *old, *buf = NULL;
	size_t len, i;
	int rc = -1;
	FILE *f;

	if ((old = list_file_slurp(dirfd, file, &len)) == NULL)
		return -1;
	if ((f = open_memstream(&buf, &len)) == NULL) {
		free(old);
		return -1;
	}
	if (edit_lines(old, f, drop, &have, gone) == 0) {
		addr_list_sort(&have);
		for (i = 0; i < add->n; i++)
			if (!addr_list_has(&have, add->v[i])) {
				fprintf(f, "%s\n", add->v[i]);
				(*added)++;
			}
		rc = 0;
	}
	if (fclose(f) != 0)
		rc = -1;
	if (rc == 0 && (*gone > 0 || *added > 0))
		rc = durable_replace(dirfd, file, buf, len);
	free(buf);
	free(old);
	addr_list_free(&have);
	return rc;
}
