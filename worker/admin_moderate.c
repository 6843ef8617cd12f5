/*
 * SPDX-License-Identifier: ISC
 *
 * listq held, reject and accept: the moderation queue from the command
 * line (approve and discard are plain entry requests, admin_queue.c).
 *
 * held reads moderation/ without a lock (records are replaced whole);
 * every decision goes to the post's owner, listqd's worker or, with
 * listqd stopped, listq holding the spool lock (invariant 3), which logs
 * it with the caller's uid.
 */
#include <sys/wait.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "json.h"
#include "moderation.h"
#include "service.h"

struct held_item {
	char		id[QID_SIZE];
	struct held	r;
};

static int
by_id(const void *a, const void *b)
{
	return strcmp(((const struct held_item *)a)->id,
	    ((const struct held_item *)b)->id);
}

/* The held posts (of list, unless NULL), in arrival order. */
static struct held_item *
held_items(struct admin *a, const char *list, size_t *n)
{
	struct held_item *v = NULL, *nv;
	struct dirent *de;
	struct held r;
	DIR *d;
	int fd;

	*n = 0;
	if (a->sv.spoolfd == -1)
		spool_view_open(&a->sv);
	if ((fd = dup(a->sv.modfd)) == -1 || (d = fdopendir(fd)) == NULL)
		err(EX_TEMPFAIL, "moderation/");
	while ((de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name) || mod_record_read(a->sv.modfd,
		    de->d_name, &r) == -1 || (list != NULL &&
		    strcmp(r.list, list) != 0))
			continue;
		if ((nv = reallocarray(v, *n + 1, sizeof(*v))) == NULL)
			err(EX_OSERR, NULL);
		v = nv;
		strlcpy(v[*n].id, de->d_name, QID_SIZE);
		v[(*n)++].r = r;
	}
	closedir(d);
	if (*n > 0)
		qsort(v, *n, sizeof(*v), by_id);
	return v;
}

static void
held_json(const struct held_item *v, size_t n)
{
	struct json j;
	size_t i;

	json_start(&j, stdout);
	json_array(&j, NULL);
	for (i = 0; i < n; i++) {
		json_object(&j, NULL);
		json_str(&j, "id", v[i].id);
		json_str(&j, "list", v[i].r.list);
		json_int(&j, "held", v[i].r.held);
		json_int(&j, "expires", v[i].r.expires);
		json_str(&j, "from", v[i].r.poster);
		json_str(&j, "sender", v[i].r.sender);
		json_str(&j, "reason", v[i].r.reason);
		json_str(&j, "subject", v[i].r.subject);
		json_end(&j);
	}
	json_end(&j);
	putchar('\n');
}

int
cmd_held(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 } };
	struct held_item *v;
	bool json = false;
	char when[32];
	size_t n, i;

	while (admin_opt(argc, argv, "", opts) != -1)
		json = true;
	if (argc - optind > 1)
		usage_error();
	v = held_items(a, optind < argc ? argv[optind] : NULL, &n);
	if (json)
		held_json(v, n);
	else {
		if (n > 0)
			printf("%-18s  %-16s  %-19s  %-28s  %s\n", "ID", "LIST",
			    "EXPIRES", "FROM", "SUBJECT / REASON");
		for (i = 0; i < n; i++) {
			fmt_time((time_t)v[i].r.expires, when, sizeof(when));
			printf("%-18s  %-16s  %-19s  %-28s  %s / %s\n", v[i].id,
			    v[i].r.list, when, v[i].r.poster[0] != '\0' ?
			    v[i].r.poster : "<>", v[i].r.subject, v[i].r.reason);
		}
		if (n == 0)
			printf("no post is held\n");
	}
	free(v);
	return 0;
}

int
cmd_reject(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reason", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 } };
	char arg[CTL_REQUEST_MAX];
	const char *reason = NULL;
	int i, rc = 0, r;

	while (admin_opt(argc, argv, "", opts) != -1)
		reason = optarg;
	if (optind == argc)
		usage_error();
	if (reason != NULL && (strpbrk(reason, "\r\n") != NULL ||
	    strlen(reason) > 200))
		errx(EX_USAGE, "--reason: one line of at most 200 characters");
	for (i = optind; i < argc; i++) {
		if (!qid_valid(argv[i])) {
			warnx("%s: not a queue id", argv[i]);
			rc = EX_USAGE;
			continue;
		}
		snprintf(arg, sizeof(arg), "%s%s%s", argv[i], reason != NULL ?
		    " " : "", reason != NULL ? reason : "");
		if ((r = entries_request(a, "reject", arg)) != 0 && rc == 0)
			rc = r;
	}
	return rc;
}

/*
 * Adds addr to the list's accept file as the service user, whose file it
 * must be (invariant 6): root keeps its own uid for asking listqd, so a
 * child does the writing.  Exits with the child's failure.
 */
static void
accept_add(const char *addr, const char *list)
{
	pid_t pid;
	int st;

	if (geteuid() != 0) {
		printf("%s %s to the accept list of %s\n", list_file_add(list,
		    "accept", addr) ? "added" : "already in; nothing added",
		    addr, list);
		return;
	}
	fflush(stdout);
	if ((pid = fork()) == -1)
		err(EX_OSERR, "fork");
	if (pid == 0) {
		service_become("listq");
		accept_add(addr, list);
		exit(0);
	}
	if (waitpid(pid, &st, 0) == -1 || !WIFEXITED(st))
		errx(EX_SOFTWARE, "adding %s to %s's accept list failed", addr,
		    list);
	if (WEXITSTATUS(st) != 0)
		exit(WEXITSTATUS(st));
}

int
cmd_accept(struct admin *a, int argc, char **argv)
{
	struct held_item *v;
	size_t n, i;
	int rc = 0, r;

	if (admin_opt(argc, argv, "", NULL) != -1 || argc - optind != 2)
		usage_error();
	if (!address_valid(argv[optind]))
		errx(EX_DATAERR, "%s: not a valid address", argv[optind]);
	accept_add(argv[optind], argv[optind + 1]);
	v = held_items(a, argv[optind + 1], &n);
	for (i = 0; i < n; i++)
		if ((address_equal(v[i].r.poster, argv[optind]) ||
		    address_equal(v[i].r.sender, argv[optind])) &&
		    (r = entries_request(a, "approve", v[i].id)) != 0 &&
		    rc == 0)
			rc = r;
	free(v);
	return rc;
}
