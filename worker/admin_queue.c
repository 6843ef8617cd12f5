/*
 * SPDX-License-Identifier: ISC
 *
 * listq queue, show, and the commands that change entries: flush, hold,
 * release, delete, requeue.
 *
 * A change goes to listqd when it runs (the master passes it to the
 * owning worker, which answers) and is done here, by admin_ops.c, when
 * listq holds the spool lock instead: the same code, the same log lines.
 * Each answer is one line, "ID: what was done" on stdout or "listq: ID:
 * why not" on stderr; the exit code is the first failure's (sysexits).
 *
 * Invariants: listq itself touches an entry only with the lock held
 * (a.pfh); every worker asked must answer ("end"), or listq says which
 * part of the queue was not handled and exits 75.
 */
#include <sys/stat.h>

#include <err.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "json.h"
#include "number.h"

struct outcome {
	int		 code;		/* first failure, or 0 */
	long		 done;		/* entries answered for */
	unsigned int	 parts, ends;	/* workers asked, answered */
};

static void
print_outcome(void *arg, int code, const char *id, const char *msg)
{
	struct outcome *o = arg;

	o->done++;
	if (code == 0 && strcmp(id, "-") == 0)
		printf("%s\n", msg);
	else if (code == 0)
		printf("%s: %s\n", id, msg);
	else {
		fflush(stdout);
		warnx("%s%s%s", strcmp(id, "-") == 0 ? "" : id,
		    strcmp(id, "-") == 0 ? "" : ": ", msg);
		if (o->code == 0)
			o->code = code;
	}
}

/* The exit code of an "err" answer; one that is no number is a fault. */
static int
err_code(const char *code)
{
	uint64_t v;

	return number_parse(code, 255, &v) == 0 ? (int)v : EX_PROTOCOL;
}

/* One line of listqd's answer: parts, ok, err or end. */
static int
reply_line(void *arg, char *line)
{
	struct outcome *o = arg;
	char *word = strsep(&line, " "), *id, *code;
	uint64_t n;

	if (strcmp(word, "parts") == 0 && line != NULL &&
	    number_parse(line, UINT_MAX, &n) == 0)
		o->parts += (unsigned int)n;
	else if (strcmp(word, "end") == 0)
		o->ends++;
	else if (strcmp(word, "ok") == 0 && (id = strsep(&line, " ")) != NULL)
		print_outcome(o, 0, id, line != NULL ? line : "done");
	else if (strcmp(word, "err") == 0 && (code = strsep(&line, " ")) !=
	    NULL && (id = strsep(&line, " ")) != NULL) {
		print_outcome(o, err_code(code), id, line != NULL ? line :
		    "failed");
		o->done -= strcmp(id, "-") == 0;	/* not about an entry */
	}
	return 0;
}

/* One request, through listqd or, holding the lock, done here. */
static void
request(struct admin *a, const char *verb, const char *arg,
    struct outcome *o)
{
	char req[CTL_REQUEST_MAX];
	struct outcome one = { 0, 0, 0, 0 };

	if (a->pfh != NULL) {
		if (adm_request(&a->ops, verb, arg, print_outcome, o) == -1)
			errx(EX_SOFTWARE, "%s: unknown request", verb);
		return;
	}
	snprintf(req, sizeof(req), "%s%s%s", verb, arg != NULL ? " " : "",
	    arg != NULL ? arg : "");
	if (ctl_ask(a, req, reply_line, &one) == -1)
		errx(EX_TEMPFAIL, "listqd did not answer \"%s\" (it may have "
		    "stopped, or be busy for %d s); see listq status", req,
		    CLIENT_WAIT);
	if (one.ends < one.parts) {
		warnx("%u of %u workers did not answer \"%s\": that part of "
		    "the queue may not be done", one.parts - one.ends,
		    one.parts, req);
		one.code = one.code != 0 ? one.code : EX_TEMPFAIL;
	}
	o->done += one.done;
	if (o->code == 0)
		o->code = one.code;
}

static void
request_id(struct admin *a, const char *verb, const char *id,
    struct outcome *o)
{
	if (qid_valid(id))
		request(a, verb, id, o);
	else
		print_outcome(o, EX_USAGE, id, "not a queue id");
}

/* The changing commands: what each does to one entry, and to many. */
static const struct entry_cmd {
	const char	*name;		/* also its request for one ID */
	const char	*bulk_opt;	/* option for many, or NULL */
	const char	*bulk_verb;	/* request for many */
	int		 bulk_has_arg;	/* the option names a list */
} entry_cmds[] = {
	{ "flush", NULL, "flush", 0 },
	{ "hold", "list", "hold-list", 1 },
	{ "release", "all", "release-all", 0 },
	{ "delete", "list", "delete-list", 1 },
	{ "requeue", NULL, NULL, 0 },
	{ "approve", NULL, NULL, 0 },
	{ "discard", NULL, NULL, 0 },
};

static const struct entry_cmd *
entry_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(entry_cmds) / sizeof(entry_cmds[0]); i++)
		if (strcmp(name, entry_cmds[i].name) == 0)
			return &entry_cmds[i];
	abort();
}

int
entries_request(struct admin *a, const char *verb, const char *arg)
{
	struct outcome o = { 0, 0, 0, 0 };

	request(a, verb, arg, &o);
	return o.code;
}

/* IDs from stdin, one a line (as postsuper -d - reads them). */
static void
ids_from_stdin(struct admin *a, const char *verb, struct outcome *o)
{
	char line[256];

	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, " \t\r\n")] = '\0';
		if (line[0] != '\0')
			request_id(a, verb, line, o);
	}
}

int
cmd_entries(struct admin *a, int argc, char **argv)
{
	const struct entry_cmd *c = entry_cmd(argv[0]);
	struct option opts[2] = { { NULL, 0, NULL, 0 }, { NULL, 0, NULL, 0 } };
	struct outcome o = { 0, 0, 0, 0 };
	const char *bulk = NULL;
	int i;

	if (c->bulk_opt != NULL)
		opts[0] = (struct option){ c->bulk_opt, c->bulk_has_arg ?
		    required_argument : no_argument, NULL, 'b' };
	while (admin_opt(argc, argv, "", opts) != -1)
		bulk = c->bulk_has_arg ? optarg : "";
	if (bulk != NULL && optind < argc)
		usage_error();
	/* Without IDs: the bulk option, or (flush) the whole queue. */
	if (optind == argc && bulk == NULL && (c->bulk_opt != NULL ||
	    c->bulk_verb == NULL))
		usage_error();
	if (optind == argc)
		request(a, c->bulk_verb, c->bulk_has_arg ? bulk : NULL, &o);
	for (i = optind; i < argc; i++) {
		if (strcmp(argv[i], "-") == 0)
			ids_from_stdin(a, c->name, &o);
		else
			request_id(a, c->name, argv[i], &o);
	}
	if (o.done == 0 && o.code == 0)
		printf("no entry matched\n");
	return o.code;
}

struct queue_opts {
	struct json	 j;
	bool		 json;
	const char	*list;
	int		 states;	/* bits: 1 queued 2 deferred 4 held 8
					   corrupt */
	unsigned long	 n;
	unsigned long long bytes;
};

static int
state_bit(const struct qitem *it)
{
	if (it->area == ADM_HOLD)
		return 4;
	if (it->area == ADM_CORRUPT)
		return 8;
	return it->attempts > 0 ? 2 : 1;
}

static void
json_item(struct json *j, const struct qitem *it)
{
	json_object(j, NULL);
	json_str(j, "id", it->id);
	json_str(j, "state", item_state(it));
	json_int(j, "size", (long long)it->size);
	if (it->ok) {
		json_num(j, "arrival", (double)it->h.arrival_sec +
		    (double)it->h.arrival_usec / 1e6);
		json_str(j, "list", it->h.list);
		json_str(j, "command", it->h.command);
		json_int(j, "uid", (long long)it->h.uid);
		json_int(j, "gid", (long long)it->h.gid);
	}
	json_str(j, "error", it->why);
	if (it->has_state) {
		json_int(j, "recipients", (long long)it->nrcpt);
		json_int(j, "pending", (long long)it->pending +
		    (long long)it->deferred);
		json_int(j, "sent", (long long)it->sent);
		json_int(j, "failed", (long long)it->failed);
		json_int(j, "attempts", it->attempts);
		json_int(j, "next_attempt", (long long)it->next);
	} else
		json_null(j, "recipients");
	json_str(j, "last_error", it->last_error[0] ? it->last_error : NULL);
	json_end(j);
}

static void
text_item(const struct qitem *it)
{
	char arrival[32], next[32], rcpt[32];

	fmt_time(it->ok ? (time_t)it->h.arrival_sec : 0, arrival,
	    sizeof(arrival));
	if (it->area != ADM_QUEUE)
		strlcpy(next, "-", sizeof(next));
	else if (!it->has_state || it->next == 0)
		strlcpy(next, "now", sizeof(next));
	else
		fmt_time((time_t)it->next, next, sizeof(next));
	if (it->has_state)
		snprintf(rcpt, sizeof(rcpt), "%zu/%zu", it->pending +
		    it->deferred, it->nrcpt);
	else
		strlcpy(rcpt, "-", sizeof(rcpt));
	printf("%-18s %-8s %8lld %-19s %-16s %-7s %-11s %-19s %s\n", it->id,
	    item_state(it), (long long)it->size, arrival, it->ok ? it->h.list :
	    "?", it->ok ? it->h.command : "?", rcpt, next, it->why != NULL ?
	    it->why : it->last_error);
}

static void
queue_item(void *arg, const struct qitem *it)
{
	struct queue_opts *q = arg;

	if (!(q->states & state_bit(it)) || (q->list != NULL && (!it->ok ||
	    strcmp(it->h.list, q->list) != 0)))
		return;
	if (q->json)
		json_item(&q->j, it);
	else {
		if (q->n == 0)
			printf("%-18s %-8s %8s %-19s %-16s %-7s %-11s %-19s "
			    "%s\n", "ID", "STATE", "SIZE", "ARRIVAL", "LIST",
			    "CMD",
			    "PENDING", "NEXT ATTEMPT", "LAST ERROR");
		text_item(it);
	}
	q->n++;
	q->bytes += (unsigned long long)it->size;
}

int
cmd_queue(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "list", required_argument, NULL, 'l' },
		{ "deferred", no_argument, NULL, 'd' },
		{ "held", no_argument, NULL, 'H' },
		{ "corrupt", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 } };
	struct queue_opts q;
	int ch;

	memset(&q, 0, sizeof(q));
	while ((ch = admin_opt(argc, argv, "", opts)) != -1) {
		if (ch == 'j')
			q.json = true;
		else if (ch == 'l')
			q.list = optarg;
		else
			q.states |= ch == 'd' ? 2 : ch == 'H' ? 4 : 8;
	}
	if (optind != argc)
		usage_error();
	if (q.states == 0)
		q.states = 1 | 2 | 4;
	spool_view_open(&a->sv);
	if (q.json) {
		json_start(&q.j, stdout);
		json_object(&q.j, NULL);
		json_array(&q.j, "entries");
	}
	spool_walk(&a->sv, ADM_QUEUE | ADM_HOLD | ADM_CORRUPT, LOAD_STATE,
	    queue_item, &q);
	if (q.json) {
		json_end(&q.j);
		json_int(&q.j, "count", (long long)q.n);
		json_int(&q.j, "bytes", (long long)q.bytes);
		json_end(&q.j);
	} else if (q.n == 0)
		printf("queue is empty%s\n", q.states != (1 | 2 | 4) ||
		    q.list != NULL ? " (of what was asked)" : "");
	else
		printf("-- %lu entr%s, %llu bytes\n", q.n, q.n == 1 ? "y" :
		    "ies", q.bytes);
	return 0;
}

/* Writes the message of an entry, exactly as spooled, to stdout. */
static int
print_message(struct admin *a, const struct qitem *it)
{
	char buf[65536];
	struct stat st;
	ssize_t n;
	int fd;

	fd = openat(spool_dirfd(&a->sv, it), it->id, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1 || fstat(fd, &st) == -1 || lseek(fd, st.st_size -
	    it->size, SEEK_SET) == -1)
		err(EX_NOINPUT, "%s", it->id);
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			err(EX_IOERR, "stdout");
	close(fd);
	return n == 0 ? 0 : EX_IOERR;
}

static void
show_text(const struct qitem *it, const struct state *st)
{
	char t[32], age[32], b[3];
	size_t i;

	qid_bucket_name(it->bucket, b);
	printf("id:         %s\nlocation:   %s/%s\nstate:      %s\n"
	    "size:       %lld bytes\n", it->id, area_name(it->area),
	    it->area == ADM_QUEUE ? b : "", item_state(it),
	    (long long)it->size);
	if (!it->ok)
		printf("error:      %s\n", it->why);
	else {
		fmt_time((time_t)it->h.arrival_sec, t, sizeof(t));
		fmt_age((long)(time(NULL) - it->h.arrival_sec), age,
		    sizeof(age));
		printf("list:       %s\ncommand:    %s\narrival:    %s (%s ago)"
		    "\ncaller:     uid %lu, gid %lu\n", it->h.list,
		    it->h.command, t, age, (unsigned long)it->h.uid,
		    (unsigned long)it->h.gid);
	}
	if (!it->has_state) {
		printf("recipients: not expanded yet (no attempt made)\n");
		return;
	}
	fmt_time((time_t)it->first, t, sizeof(t));
	printf("attempts:   %u (first %s)\ncrashes:    %u\n", it->attempts, t,
	    it->crashes);
	fmt_time((time_t)it->next, t, sizeof(t));
	printf("next:       %s\nsender:     <%s>\nrecipients: %zu (%zu sent, "
	    "%zu deferred, %zu failed, %zu pending)\n", it->next == 0 ? "now" :
	    t, st->sender, it->nrcpt, it->sent, it->deferred, it->failed,
	    it->pending);
	for (i = 0; i < st->n; i++) {
		printf("  %-8s %s", rcpt_state_name(st->r[i].st),
		    st->r[i].addr);
		if (st->r[i].reply[0] != '\0')
			printf("  %s", st->r[i].reply);
		else if (st->r[i].code != 0)
			printf("  %d %s", st->r[i].code, st->r[i].dsn);
		printf("\n");
	}
}

static void
show_json(const struct qitem *it, const struct state *st)
{
	struct json j;
	size_t i;

	json_start(&j, stdout);
	json_object(&j, NULL);
	json_str(&j, "id", it->id);
	json_str(&j, "location", area_name(it->area));
	json_int(&j, "bucket", it->bucket);
	json_str(&j, "state", item_state(it));
	json_int(&j, "size", (long long)it->size);
	json_str(&j, "error", it->why);
	if (it->ok) {
		json_str(&j, "list", it->h.list);
		json_str(&j, "command", it->h.command);
		json_num(&j, "arrival", (double)it->h.arrival_sec +
		    (double)it->h.arrival_usec / 1e6);
		json_int(&j, "uid", (long long)it->h.uid);
		json_int(&j, "gid", (long long)it->h.gid);
	}
	if (it->has_state) {
		json_int(&j, "attempts", it->attempts);
		json_int(&j, "crashes", it->crashes);
		json_int(&j, "first_attempt", (long long)it->first);
		json_int(&j, "next_attempt", (long long)it->next);
		json_str(&j, "sender", st->sender);
		json_array(&j, "recipients");
		for (i = 0; i < st->n; i++) {
			json_object(&j, NULL);
			json_str(&j, "address", st->r[i].addr);
			json_str(&j, "status", rcpt_state_name(st->r[i].st));
			json_int(&j, "code", st->r[i].code);
			json_str(&j, "dsn", st->r[i].dsn);
			json_str(&j, "reply", st->r[i].reply);
			json_end(&j);
		}
		json_end(&j);
	} else
		json_null(&j, "recipients");
	json_end(&j);
}

int
cmd_show(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "message", no_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 } };
	bool json = false, message = false;
	struct qitem it;
	struct state st;
	int ch, rc = 0;

	while ((ch = admin_opt(argc, argv, "", opts)) != -1)
		*(ch == 'j' ? &json : &message) = true;
	if (optind != argc - 1 || (json && message))
		usage_error();
	if (!qid_valid(argv[optind]))
		errx(EX_USAGE, "%s: not a queue id", argv[optind]);
	spool_view_open(&a->sv);
	memset(&st, 0, sizeof(st));
	if (spool_find(&a->sv, argv[optind], &it, &st) == -1)
		errx(EX_NOINPUT, "%s: no such entry", argv[optind]);
	if (message)
		rc = print_message(a, &it);
	else if (json)
		show_json(&it, &st);
	else
		show_text(&it, &st);
	state_free(&st);
	return rc;
}
