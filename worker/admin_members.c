/*
 * SPDX-License-Identifier: ISC
 *
 * listq members, and the list directory as listq changes it:
 * LISTDIR/<name>/ with config, members, owners and disabled (list.h).
 *
 * Invariants: a list file is replaced whole (durable_replace: tmp file,
 * fsync, rename), so a worker expanding the list at any moment reads
 * all of the old file or all of the new, never a mix; listq edits of
 * one list are serialized by an flock on its directory; a new list
 * appears complete (written under a hidden name, then renamed) and a
 * removed one goes in one rename; every address listq writes is a valid
 * RFC 5321 mailbox, written once: duplicates are folded, their domains
 * compared without regard to case.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "durable.h"
#include "json.h"
#include "list.h"
#include "settings.h"

#define DIR_FLAGS	(O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

int
listdir_open(void)
{
	int fd;

	if ((fd = open(LISTDIR, DIR_FLAGS)) == -1)
		err(EX_TEMPFAIL, "list directory %s", LISTDIR);
	return fd;
}

int
list_open(const char *name, int lock)
{
	int top, fd;

	if (!list_name_valid(name))
		errx(EX_USAGE, "%s: not a list name ([a-z0-9][a-z0-9._-]*)",
		    name);
	top = listdir_open();
	fd = openat(top, name, DIR_FLAGS);
	close(top);
	if (fd == -1 && errno == ENOENT)
		errx(EX_NOUSER, "no such list: %s", name);
	if (fd == -1)
		err(EX_TEMPFAIL, "list %s", name);
	if (lock && flock(fd, LOCK_EX) == -1)
		err(EX_TEMPFAIL, "locking list %s", name);
	return fd;
}

/* The whole of dirfd/file ("" if it does not exist); caller frees. */
static char *
slurp(int dirfd, const char *file, size_t *len)
{
	char *buf = list_file_slurp(dirfd, file, len);

	if (buf == NULL)
		err(EX_TEMPFAIL, "%s", file);
	return buf;
}

/* Reads the addresses of a list file, sorted, for membership tests. */
static void
read_sorted(int dirfd, const char *file, struct addr_list *out)
{
	size_t len;
	char *text = slurp(dirfd, file, &len), *line, *p = text,
	    addr[ADDR_MAX + 1];
	const char *why;

	memset(out, 0, sizeof(*out));
	while ((line = strsep(&p, "\n")) != NULL)
		if (list_line_take(line, strlen(line), addr, sizeof(addr),
		    &why) == LIST_LINE_ADDRESS && addr_list_add(out, addr) == -1)
			err(EX_OSERR, "%s", file);
	free(text);
	addr_list_sort(out);
}

void
list_file_replace(int dirfd, const char *file, const char *buf, size_t len)
{
	if (durable_replace(dirfd, file, buf, len) == -1)
		err(EX_TEMPFAIL, "writing %s", file);
}

/* list_file_edit(), or the process ends naming the file. */
static void
edit_file(int dirfd, const char *file, const struct addr_list *drop,
    const struct addr_list *add, size_t *gone, size_t *added)
{
	if (list_file_edit(dirfd, file, drop, add, gone, added) == -1)
		err(EX_TEMPFAIL, "writing %s", file);
}

int
list_file_add(const char *name, const char *file, const char *addr)
{
	struct addr_list add = { NULL, 0 }, none = { NULL, 0 };
	size_t gone = 0, added = 0;
	int fd = list_open(name, 1);

	if (addr_list_add(&add, addr) == -1)
		err(EX_OSERR, NULL);
	edit_file(fd, file, &none, &add, &gone, &added);
	addr_list_free(&add);
	close(fd);
	return added > 0;
}

/* Addresses from the command line: all valid, or nothing is done. */
static void
args_addresses(int argc, char **argv, struct addr_list *l)
{
	int i;

	memset(l, 0, sizeof(*l));
	for (i = 0; i < argc; i++) {
		if (!address_valid(argv[i]))
			errx(EX_DATAERR, "%s: not a valid address (an RFC 5321 "
			    "mailbox: local@domain); nothing changed", argv[i]);
		if (addr_list_add(l, argv[i]) == -1)
			err(EX_OSERR, NULL);
	}
	if (addr_list_fold(l) == -1)
		err(EX_OSERR, NULL);
}

static int
members_list(const char *name, bool json)
{
	struct addr_list off;
	int fd = list_open(name, 0);
	size_t len, n = 0, nd = 0;
	char *text = slurp(fd, "members", &len), *p = text, *line,
	    addr[ADDR_MAX + 1];
	const char *why;
	struct json j;
	bool on;

	read_sorted(fd, "disabled", &off);
	if (json) {
		json_start(&j, stdout);
		json_object(&j, NULL);
		json_str(&j, "list", name);
		json_array(&j, "members");
	}
	while ((line = strsep(&p, "\n")) != NULL) {
		if (list_line_take(line, strlen(line), addr, sizeof(addr),
		    &why) != LIST_LINE_ADDRESS)
			continue;
		on = !addr_list_has(&off, addr);
		n++;
		nd += !on;
		if (!json) {
			printf("%s%s\n", addr, on ? "" : " (disabled)");
			continue;
		}
		json_object(&j, NULL);
		json_str(&j, "address", addr);
		json_bool(&j, "enabled", on);
		json_end(&j);
	}
	if (json) {
		json_end(&j);
		json_int(&j, "count", (long long)n);
		json_int(&j, "disabled", (long long)nd);
		json_end(&j);
	}
	free(text);
	addr_list_free(&off);
	close(fd);
	return 0;
}

static void
report(const char *name, const char *what, size_t n, const char *other,
    size_t m)
{
	printf("%s: %zu %s", name, n, what);
	if (m > 0)
		printf(", %zu %s", m, other);
	printf("\n");
}

static int
members_add(const char *name, int argc, char **argv)
{
	struct addr_list add, none = { NULL, 0 };
	size_t gone = 0, added = 0;
	int fd;

	args_addresses(argc, argv, &add);
	fd = list_open(name, 1);
	edit_file(fd, "members", &none, &add, &gone, &added);
	report(name, "added", added, "already members", add.n - added);
	addr_list_free(&add);
	close(fd);
	return 0;
}

static int
members_remove(const char *name, int argc, char **argv)
{
	struct addr_list drop, none = { NULL, 0 };
	size_t gone = 0, added = 0, off = 0;
	int fd, rc;

	args_addresses(argc, argv, &drop);
	addr_list_sort(&drop);
	fd = list_open(name, 1);
	edit_file(fd, "members", &drop, &none, &gone, &added);
	edit_file(fd, "disabled", &drop, &none, &off, &added);
	report(name, "removed", gone, "not members", drop.n - gone);
	rc = gone < drop.n ? EX_NOINPUT : 0;
	addr_list_free(&drop);
	close(fd);
	return rc;
}

/* enable: out of "disabled"; disable: into it, members only. */
static int
members_toggle(const char *name, int enable, int argc, char **argv)
{
	struct addr_list l, members, none = { NULL, 0 };
	size_t gone = 0, added = 0, i, strangers = 0;
	int fd;

	args_addresses(argc, argv, &l);
	fd = list_open(name, 1);
	read_sorted(fd, "members", &members);
	for (i = 0; i < l.n; i++)
		if (!addr_list_has(&members, l.v[i])) {
			warnx("%s: %s is not a member", name, l.v[i]);
			strangers++;
		}
	if (strangers > 0)
		errx(EX_NOINPUT, "nothing changed");
	if (enable) {
		addr_list_sort(&l);
		edit_file(fd, "disabled", &l, &none, &gone, &added);
		report(name, "enabled", gone, "were not disabled", l.n - gone);
	} else {
		edit_file(fd, "disabled", &none, &l, &gone, &added);
		report(name, "disabled", added, "were already disabled",
		    l.n - added);
	}
	addr_list_free(&l);
	addr_list_free(&members);
	close(fd);
	return 0;
}

/* Keeps in "disabled" only the addresses still members. */
static void
prune_disabled(int fd, const struct addr_list *members)
{
	struct addr_list off, drop = { NULL, 0 }, none = { NULL, 0 };
	size_t i, gone = 0, added = 0;

	read_sorted(fd, "disabled", &off);
	for (i = 0; i < off.n; i++)
		if (!addr_list_has(members, off.v[i]) &&
		    addr_list_add(&drop, off.v[i]) == -1)
			err(EX_OSERR, NULL);
	addr_list_sort(&drop);
	if (drop.n > 0)
		edit_file(fd, "disabled", &drop, &none, &gone, &added);
	addr_list_free(&off);
	addr_list_free(&drop);
}

static int
members_import(struct admin *a, const char *name, const char *file)
{
	struct addr_list l;
	struct bad_lines bad;
	size_t i, len;
	char *buf = NULL;
	long folded;
	FILE *f;
	int fd;

	if (a->in == NULL)
		usage_error();
	if (addr_list_read(a->in, &l, &bad) == -1)
		err(EX_OSERR, "%s", file);
	if (bad.n > 0)
		errx(EX_DATAERR, "%s:%zu: %s (%zu bad line%s in all); nothing "
		    "imported", file, bad.first, bad.why, bad.n,
		    bad.n == 1 ? "" : "s");
	if ((folded = addr_list_fold(&l)) == -1 ||
	    (f = open_memstream(&buf, &len)) == NULL)
		err(EX_OSERR, NULL);
	fprintf(f, "# members of %s, imported by uid %lu from %s\n", name,
	    (unsigned long)a->who, file);
	for (i = 0; i < l.n; i++)
		fprintf(f, "%s\n", l.v[i]);
	if (fclose(f) != 0)
		err(EX_OSERR, NULL);
	fd = list_open(name, 1);
	list_file_replace(fd, "members", buf, len);
	addr_list_sort(&l);
	prune_disabled(fd, &l);
	report(name, "members imported", l.n, "duplicates folded",
	    (size_t)folded);
	free(buf);
	addr_list_free(&l);
	close(fd);
	return 0;
}

/* The words of a members command line, options left out. */
static int
words(int argc, char **argv, char **out, int max)
{
	int i, n = 0, dashdash = 0;

	for (i = 1; i < argc && n < max; i++) {
		if (!dashdash && strcmp(argv[i], "--") == 0)
			dashdash = 1;
		else if (dashdash || argv[i][0] != '-' || argv[i][1] == '\0')
			out[n++] = argv[i];
	}
	return n;
}

/* Opens the file of "members NAME import FILE" as the caller. */
void
prep_members(struct admin *a, int argc, char **argv)
{
	char *w[3];

	if (words(argc, argv, w, 3) < 3 || strcmp(w[1], "import") != 0)
		return;
	if (strcmp(w[2], "-") == 0)
		a->in = stdin;
	else if ((a->in = fopen(w[2], "re")) == NULL)
		err(EX_NOINPUT, "%s", w[2]);
}

int
cmd_members(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 } };
	const char *name, *sub;
	bool json = false;
	int n;

	while (admin_opt(argc, argv, "", opts) != -1)
		json = true;
	if ((n = argc - optind) < 1)
		usage_error();
	name = argv[optind];
	sub = n > 1 ? argv[optind + 1] : "list";
	argv += optind + 2;
	n -= 2;
	if (strcmp(sub, "list") == 0 && n <= 0)
		return members_list(name, json);
	if (json || n < 1)
		usage_error();
	if (strcmp(sub, "add") == 0)
		return members_add(name, n, argv);
	if (strcmp(sub, "remove") == 0)
		return members_remove(name, n, argv);
	if (strcmp(sub, "enable") == 0 || strcmp(sub, "disable") == 0)
		return members_toggle(name, sub[0] == 'e', n, argv);
	if (strcmp(sub, "import") == 0 && n == 1)
		return members_import(a, name, argv[0]);
	usage_error();
}
