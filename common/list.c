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

static const char *
list_key(const char *key, const char *value, void *arg)
{
	struct list_conf *lc = arg;

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

static int
addr_push(struct addr_list *l, const char *a)
{
	char **v, *copy;

	if ((copy = strdup(a)) == NULL)
		return -1;
	if ((v = reallocarray(l->v, l->n + 1, sizeof(*v))) == NULL) {
		free(copy);
		return -1;
	}
	l->v = v;
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

int
list_addresses(const char *listdir, const char *name, const char *file,
    struct addr_list *out, size_t *bad, char *err, size_t errlen)
{
	char path[1024], line[1024], *a;
	FILE *f;

	memset(out, 0, sizeof(*out));
	*bad = 0;
	snprintf(path, sizeof(path), "%s/%s/%s", listdir, name, file);
	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		a = address_of_line(line);
		if (*a == '\0')
			continue;
		if (!address_valid(a)) {
			(*bad)++;
			continue;
		}
		if (addr_push(out, a) == -1) {
			snprintf(err, errlen, "%s: out of memory", path);
			fclose(f);
			addr_list_free(out);
			return -1;
		}
	}
	fclose(f);
	return 0;
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
	char path[1024];
	size_t i, kept = 0, badoff;

	if (list_addresses(listdir, name, "members", out, bad, err,
	    errlen) == -1)
		return -1;
	snprintf(path, sizeof(path), "%s/%s/disabled", listdir, name);
	if (access(path, F_OK) == -1 && errno == ENOENT)
		return 0;
	if (list_addresses(listdir, name, "disabled", &off, &badoff, err,
	    errlen) == -1) {
		addr_list_free(out);
		return -1;
	}
	qsort(off.v, off.n, sizeof(*off.v), address_cmp);
	for (i = 0; i < out->n; i++) {
		if (bsearch(&out->v[i], off.v, off.n, sizeof(*off.v),
		    address_cmp) != NULL)
			free(out->v[i]);
		else
			out->v[kept++] = out->v[i];
	}
	out->n = kept;
	addr_list_free(&off);
	return 0;
}
