/*
 * SPDX-License-Identifier: ISC
 *
 * listq lists, newlist, rmlist and aliases.
 *
 * Invariants: a new list appears whole: its files are written under a
 * hidden name, then the directory is renamed into place (never over an
 * existing list); rmlist takes a list away in one rename, and refuses,
 * unless forced, while entries of the list are queued or held; alias
 * lines quote the wrapper path for /bin/sh, through which Postfix runs
 * the pipe, so any path works; for Exim and OpenSMTPD, whose guides
 * route a whole domain to the wrapper, aliases prints the lists their
 * configuration looks up (list names; the lists' addresses).
 */
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "json.h"
#include "list.h"
#include "settings.h"

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
list_names(size_t *n)
{
	char **v = NULL, **nv;
	struct dirent *de;
	DIR *d;

	*n = 0;
	if ((d = fdopendir(listdir_open())) == NULL)
		err(EX_TEMPFAIL, "%s", LISTDIR);
	while ((de = readdir(d)) != NULL) {
		if (!list_name_valid(de->d_name))
			continue;
		if ((nv = reallocarray(v, *n + 1, sizeof(*v))) == NULL ||
		    (nv[*n] = strdup(de->d_name)) == NULL)
			err(EX_OSERR, NULL);
		v = nv;
		(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(v, *n, sizeof(*v), name_cmp);
	return v;
}

void
free_names(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The addresses of one file of a list, its bad lines added to li's. */
static int
count_file(const char *name, const char *file, struct list_info *li,
    size_t *n)
{
	struct addr_list l;
	struct bad_lines bad;

	if (list_file_read(LISTDIR, name, file, &l, &bad, li->error,
	    sizeof(li->error)) == -1)
		return -1;
	*n = l.n;
	addr_list_free(&l);
	if (bad.n > 0 && li->bad == 0)
		snprintf(li->first_bad, sizeof(li->first_bad), "%s line %zu: "
		    "%s", file, bad.first, bad.why);
	li->bad += bad.n;
	return 0;
}

void
list_info(const char *name, struct list_info *li)
{
	struct addr_list l;
	size_t bad;

	memset(li, 0, sizeof(*li));
	if (list_conf_load(LISTDIR, name, &li->lc, li->error,
	    sizeof(li->error)) == -1)
		return;
	if (count_file(name, "members", li, &li->members) == -1)
		return;
	if (list_enabled_members(LISTDIR, name, &l, &bad, li->error,
	    sizeof(li->error)) == -1)
		return;
	li->enabled = l.n;
	addr_list_free(&l);
	count_file(name, "owners", li, &li->owners);
}

int
cmd_lists(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 } };
	struct list_info li;
	bool json = false;
	struct json j;
	char **names;
	size_t n, i;

	(void)a;
	while (admin_opt(argc, argv, "", opts) != -1)
		json = true;
	if (optind != argc)
		usage_error();
	names = list_names(&n);
	if (json) {
		json_start(&j, stdout);
		json_object(&j, NULL);
		json_array(&j, "lists");
	} else if (n > 0)
		printf("%-20s %-32s %8s %8s %6s\n", "LIST", "ADDRESS",
		    "MEMBERS", "ENABLED", "OWNERS");
	for (i = 0; i < n; i++) {
		list_info(names[i], &li);
		if (!json && li.error[0] != '\0')
			printf("%-20s error: %s\n", names[i], li.error);
		else if (!json)
			printf("%-20s %-32s %8zu %8zu %6zu\n", names[i],
			    li.lc.address, li.members, li.enabled, li.owners);
		if (!json)
			continue;
		json_object(&j, NULL);
		json_str(&j, "name", names[i]);
		json_str(&j, "address", li.error[0] ? NULL : li.lc.address);
		json_int(&j, "members", (long long)li.members);
		json_int(&j, "enabled", (long long)li.enabled);
		json_int(&j, "owners", (long long)li.owners);
		json_int(&j, "invalid_lines", (long long)li.bad);
		json_str(&j, "error", li.error[0] ? li.error : NULL);
		json_end(&j);
	}
	if (json) {
		json_end(&j);
		json_end(&j);
	} else if (n == 0)
		printf("no lists in %s\n", LISTDIR);
	free_names(names, n);
	return 0;
}

/* Writes a new list's files into the (hidden) directory fd. */
static void
write_list(int fd, const char *name, const char *address, int nowners,
    char **owners)
{
	struct addr_list l = { NULL, 0 };
	char text[1024], *buf = NULL;
	size_t len, i;
	FILE *f;
	int k;

	/* Invariant 10: members post, the rest waits for a moderator. */
	snprintf(text, sizeof(text), "# list %s\naddress = %s\n"
	    "post_policy = members\nnonmember_action = hold\n", name, address);
	list_file_replace(fd, "config", text, strlen(text));
	snprintf(text, sizeof(text), "# members of %s, one address a line\n",
	    name);
	list_file_replace(fd, "members", text, strlen(text));
	for (k = 0; k < nowners; k++)
		if (addr_list_add(&l, owners[k]) == -1)
			err(EX_OSERR, NULL);
	if (addr_list_fold(&l) == -1 || (f = open_memstream(&buf, &len)) ==
	    NULL)
		err(EX_OSERR, NULL);
	fprintf(f, "# owners of %s\n", name);
	for (i = 0; i < l.n; i++)
		fprintf(f, "%s\n", l.v[i]);
	if (fclose(f) != 0)
		err(EX_OSERR, NULL);
	list_file_replace(fd, "owners", buf, len);
	free(buf);
	addr_list_free(&l);
}

int
cmd_newlist(struct admin *a, int argc, char **argv)
{
	char name[LIST_NAME_MAX + 1], tmp[LIST_NAME_MAX + 32], *address;
	const char *at;
	struct stat st;
	int top, fd, i;

	(void)a;
	if (admin_opt(argc, argv, "", (struct option[]){ { NULL, 0, NULL,
	    0 } }) != -1 || argc - optind < 2)
		usage_error();
	address = argv[optind];
	if (!address_valid(address))
		errx(EX_DATAERR, "%s: not a valid address", address);
	at = strrchr(address, '@');
	snprintf(name, sizeof(name), "%.*s", (int)(at - address), address);
	if (!list_name_valid(name) || (size_t)(at - address) > LIST_NAME_MAX)
		errx(EX_DATAERR, "%s: the list's name, the address's local "
		    "part, must be [a-z0-9][a-z0-9._-]*", name);
	for (i = optind + 1; i < argc; i++)
		if (!address_valid(argv[i]))
			errx(EX_DATAERR, "%s: not a valid owner address",
			    argv[i]);
	top = listdir_open();
	if (fstatat(top, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		errx(EX_CANTCREAT, "list %s exists already", name);
	snprintf(tmp, sizeof(tmp), ".newlist-%s-%ld", name, (long)getpid());
	if (mkdirat(top, tmp, 0700) == -1 || (fd = openat(top, tmp, O_RDONLY |
	    O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		err(EX_CANTCREAT, "%s/%s", LISTDIR, tmp);
	write_list(fd, name, address, argc - optind - 1, argv + optind + 1);
	if (renameat2(top, tmp, top, name, RENAME_NOREPLACE) == -1) {
		i = errno;
		unlinkat(fd, "config", 0);
		unlinkat(fd, "members", 0);
		unlinkat(fd, "owners", 0);
		unlinkat(top, tmp, AT_REMOVEDIR);
		errno = i;
		err(EX_CANTCREAT, "list %s", name);
	}
	fsync(top);
	printf("list %s created: %s, %d owner%s; its MTA aliases: listq "
	    "aliases\n", name, address, argc - optind - 1, argc - optind - 1 ==
	    1 ? "" : "s");
	return 0;
}

struct list_count {
	const char	*list;
	unsigned long	 n;
};

static void
count_list(void *arg, const struct qitem *it)
{
	struct list_count *c = arg;

	c->n += it->ok && strcmp(it->h.list, c->list) == 0;
}

/* Empties and removes the directory of a list taken out of place. */
static void
remove_dir(int top, const char *tmp)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if ((fd = openat(top, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1 || (d = fdopendir(fd)) == NULL)
		err(EX_TEMPFAIL, "%s/%s", LISTDIR, tmp);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") !=
		    0 && unlinkat(fd, de->d_name, 0) == -1)
			warn("%s/%s/%s", LISTDIR, tmp, de->d_name);
	closedir(d);
	if (unlinkat(top, tmp, AT_REMOVEDIR) == -1)
		warn("%s/%s", LISTDIR, tmp);
}

int
cmd_rmlist(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' }, { NULL, 0, NULL, 0 } };
	struct list_count c = { NULL, 0 };
	char tmp[LIST_NAME_MAX + 32];
	bool force = false;
	int top, fd;

	while (admin_opt(argc, argv, "", opts) != -1)
		force = true;
	if (optind != argc - 1)
		usage_error();
	c.list = argv[optind];
	fd = list_open(c.list, 1);
	spool_view_open(&a->sv);
	spool_walk(&a->sv, ADM_QUEUE | ADM_HOLD, LOAD_HEADER, count_list, &c);
	if (c.n > 0 && !force)
		errx(EX_TEMPFAIL, "list %s has %lu entr%s queued or held "
		    "(listq queue --list %s); delete them first, or use "
		    "--force",
		    c.list, c.n, c.n == 1 ? "y" : "ies", c.list);
	top = listdir_open();
	snprintf(tmp, sizeof(tmp), ".rmlist-%s-%ld", c.list, (long)getpid());
	if (renameat2(top, c.list, top, tmp, RENAME_NOREPLACE) == -1)
		err(EX_TEMPFAIL, "removing list %s", c.list);
	fsync(top);
	close(fd);
	remove_dir(top, tmp);
	printf("list %s removed; remove its MTA aliases too", c.list);
	if (c.n > 0)
		printf("; its %lu queued entr%s will be held by listqd (no "
		    "such list)", c.n, c.n == 1 ? "y" : "ies");
	printf("\n");
	return 0;
}

static bool
plain(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("/._+-", *s) == NULL)
			return false;
	return true;
}

/* The wrapper path as /bin/sh takes it in the pipe command. */
static void
quote_path(FILE *f, const char *path)
{
	if (plain(path)) {
		fputs(path, f);
		return;
	}
	fputc('\'', f);
	for (; *path != '\0'; path++) {
		if (*path == '\'')
			fputs("'\\''", f);	/* sh: end, quoted ', restart */
		else
			fputc(*path, f);
	}
	fputc('\'', f);
}

/* One alias line: the whole pipe as an RFC 5322 quoted string. */
static void
alias_line(const char *key, const char *wrapper, const char *role,
    const char *name)
{
	char *cmd = NULL, *p;
	size_t len;
	FILE *f;

	if ((f = open_memstream(&cmd, &len)) == NULL)
		err(EX_OSERR, NULL);
	fputc('|', f);
	quote_path(f, wrapper);
	fprintf(f, " %s %s", role, name);
	fclose(f);
	printf("%-24s \"", key);
	for (p = cmd; *p != '\0'; p++)
		printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
	printf("\"\n");
	free(cmd);
}

/* Postfix (and Sendmail): the alias lines, piping into the wrapper. */
static void
print_postfix(char **names, size_t n, const char *wrapper)
{
	static const char *const roles[] = { "post", "owner", "bounces",
	    "request" };
	char key[LIST_NAME_MAX + 16];
	size_t i, r;

	printf("# listq: aliases for Postfix (or Sendmail): add them to the "
	    "aliases file,\n# then run newaliases.  The pipe runs as "
	    "default_privs, whose group\n# must be allowed to run the "
	    "wrapper (MAIL_GIDS: %s).\n", SETTING_TEXT(MAIL_GIDS));
	for (i = 0; i < n; i++)
		for (r = 0; r < 4; r++) {
			snprintf(key, sizeof(key), "%s%s%s:", names[i],
			    r ? "-" : "", r ? roles[r] : "");
			alias_line(key, wrapper, roles[r], names[i]);
		}
}

/*
 * Exim: the file of list names that the guide's listq router looks up
 * (local_parts = lsearch;LISTQ_LISTS); its transport knows the roles.
 */
static void
print_exim(char **names, size_t n)
{
	size_t i;

	printf("# listq: the lists, one name a line, for the listq router of "
	    "the Exim guide\n# (local_parts = lsearch;LISTQ_LISTS); its "
	    "pipe runs in a group allowed\n# to run the wrapper (MAIL_GIDS: "
	    "%s).\n", SETTING_TEXT(MAIL_GIDS));
	for (i = 0; i < n; i++)
		printf("%s\n", names[i]);
}

/*
 * OpenSMTPD: the table of the lists' addresses, every role, that the
 * guide's match rule names (match for rcpt-to <listq-lists>).
 */
static void
print_opensmtpd(char **names, size_t n)
{
	static const char *const suffix[] = { "", "-owner", "-bounces",
	    "-request" };
	struct list_conf lc;
	char error[256];
	const char *at;
	size_t i, r;

	printf("# listq: the lists' addresses, for the table of the OpenSMTPD "
	    "guide's match\n# rule; its mda runs as a user whose group is "
	    "allowed to run the wrapper\n# (MAIL_GIDS: %s).\n",
	    SETTING_TEXT(MAIL_GIDS));
	for (i = 0; i < n; i++) {
		if (list_conf_load(LISTDIR, names[i], &lc, error,
		    sizeof(error)) == -1 ||
		    (at = strrchr(lc.address, '@')) == NULL) {
			warnx("%s: %s", names[i], error[0] ? error :
			    "no address");
			continue;
		}
		for (r = 0; r < 4; r++)
			printf("%s%s%s\n", names[i], suffix[r], at);
	}
}

int
cmd_aliases(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mta", required_argument, NULL, 'm' },
		{ "format", required_argument, NULL, 'm' },
		{ "wrapper", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 } };
	const char *wrapper = LIBEXECDIR "/listq-wrapper", *mta = "postfix";
	char **names;
	size_t n;
	int ch;

	(void)a;
	while ((ch = admin_opt(argc, argv, "", opts)) != -1)
		*(ch == 'm' ? &mta : &wrapper) = optarg;
	if (optind != argc || (strcmp(mta, "postfix") != 0 &&
	    strcmp(mta, "exim") != 0 && strcmp(mta, "opensmtpd") != 0))
		usage_error();
	names = list_names(&n);
	if (mta[0] == 'p')
		print_postfix(names, n, wrapper);
	else if (mta[0] == 'e')
		print_exim(names, n);
	else
		print_opensmtpd(names, n);
	free_names(names, n);
	return 0;
}
