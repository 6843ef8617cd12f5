/*
 * SPDX-License-Identifier: ISC
 *
 * listq: reading the spool and the pool's state, never changing either.
 *
 * Entries are read straight from the spool, whether listqd runs or not:
 * a message file is immutable and a state file is replaced whole by
 * rename, so a reader sees one version or the other; an entry that goes
 * away between the directory listing and the read is skipped.  What the
 * pool does (workers, deliveries, relay) comes from the master's answer
 * to "status".
 *
 * Invariants: nothing here writes, renames or unlinks (invariant 3
 * needs no lock for it); ids are listed first and sorted, so output
 * comes in arrival order, and memory grows by an id per entry only.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "number.h"
#include "settings.h"
#include "spool.h"

struct ref {
	char	id[QID_SIZE];
	char	area;
};

struct refs {
	struct ref	*v;
	size_t		 n;
};

void
spool_view_open(struct spool_view *v)
{
	char why[512];
	unsigned int b;

	/*
	 * Creates only what is missing (moderation/ in an older spool): a
	 * complete spool is only read, so listq also runs where the spool
	 * is mounted read-only (listq-metrics.service).
	 */
	if (spool_check(SPOOLDIR, LISTQ_UID, LISTQ_GID, why, sizeof(why)) ==
	    -1 && (errno != ENOENT || spool_create(SPOOLDIR, LISTQ_UID,
	    LISTQ_GID, why, sizeof(why)) == -1))
		errx(EX_TEMPFAIL, "spool: %s", why);
	if ((v->spoolfd = spool_open(SPOOLDIR, LISTQ_UID, LISTQ_GID)) == -1 ||
	    (v->holdfd = spool_open_dir(v->spoolfd, SPOOL_HOLD, LISTQ_UID,
	    LISTQ_GID)) == -1 || (v->corruptfd = spool_open_dir(v->spoolfd,
	    SPOOL_CORRUPT, LISTQ_UID, LISTQ_GID)) == -1 ||
	    (v->modfd = spool_open_dir(v->spoolfd, SPOOL_MODERATION,
	    LISTQ_UID, LISTQ_GID)) == -1)
		err(EX_TEMPFAIL, "spool %s", SPOOLDIR);
	for (b = 0; b < QID_BUCKETS; b++)
		if ((v->bucketfd[b] = spool_open_bucket(v->spoolfd, b,
		    LISTQ_UID, LISTQ_GID)) == -1)
			err(EX_TEMPFAIL, "spool %s: bucket %02x", SPOOLDIR, b);
}

const char *
area_name(int area)
{
	return area == ADM_HOLD ? SPOOL_HOLD : area == ADM_CORRUPT ?
	    SPOOL_CORRUPT : SPOOL_QUEUE;
}

const char *
item_state(const struct qitem *it)
{
	if (it->area == ADM_HOLD)
		return "held";
	if (it->area == ADM_CORRUPT)
		return "corrupt";
	return it->attempts > 0 ? "deferred" : "queued";
}

int
spool_dirfd(const struct spool_view *v, const struct qitem *it)
{
	if (it->area == ADM_HOLD)
		return v->holdfd;
	if (it->area == ADM_CORRUPT)
		return v->corruptfd;
	return v->bucketfd[it->bucket];
}

static void
list_dir(int dirfd, int area, struct refs *r)
{
	struct dirent *de;
	struct ref *v;
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1 || (d = fdopendir(fd)) == NULL)
		err(EX_OSERR, "reading the spool");
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name))
			continue;
		if ((v = reallocarray(r->v, r->n + 1, sizeof(*v))) == NULL)
			err(EX_OSERR, "listing the spool");
		r->v = v;
		strlcpy(v[r->n].id, de->d_name, QID_SIZE);
		v[r->n++].area = (char)area;
	}
	closedir(d);
}

static int
ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ref *)a)->id, ((const struct ref *)b)->id);
}

/* The first lines of the state file: its attempt count, cheaply. */
static void
peek_attempts(int dirfd, struct qitem *it)
{
	static const char head[] = "listq-state: 1\nattempts: ";
	char name[QID_SIZE + sizeof(STATE_SUFFIX)], buf[96];
	const char *end;
	uint64_t v;
	ssize_t n;
	int fd;

	snprintf(name, sizeof(name), "%s%s", it->id, STATE_SUFFIX);
	if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) ==
	    -1)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	if (strncmp(buf, head, sizeof(head) - 1) != 0 ||
	    number_scan(buf + sizeof(head) - 1, UINT_MAX, &v, &end) == -1 ||
	    *end != '\n')
		return;
	it->has_state = true;
	it->attempts = (unsigned int)v;
}

static void
summarize_state(struct qitem *it, const struct state *st)
{
	const struct rcpt_status *r;
	size_t i;

	it->has_state = true;
	it->attempts = st->attempts;
	it->crashes = st->crashes;
	it->first = st->first_attempt;
	it->next = st->next_attempt;
	it->nrcpt = st->n;
	for (i = 0; i < st->n; i++) {
		r = &st->r[i];
		it->sent += r->st == RCPT_SENT;
		it->pending += r->st == RCPT_PENDING;
		it->deferred += r->st == RCPT_DEFERRED;
		it->failed += r->st == RCPT_FAILED;
		if ((r->st != RCPT_DEFERRED && r->st != RCPT_FAILED) ||
		    it->last_error[0] != '\0')
			continue;
		/* A relay's reply names its code; listqd's own may not. */
		if (r->reply[0] != '\0')
			strlcpy(it->last_error, r->reply,
			    sizeof(it->last_error));
		else
			snprintf(it->last_error, sizeof(it->last_error),
			    "%d %s", r->code, r->dsn[0] ? r->dsn : "-");
	}
}

/* Fills it from the files; -1 when the entry is gone. */
static int
load_item(struct spool_view *v, struct qitem *it, int load, struct state *st)
{
	int dirfd = spool_dirfd(v, it);
	const char *why;
	struct state own;

	if (adm_read_header(dirfd, it->id, &it->h, &it->size, &why) == -1) {
		if (why == NULL)
			return -1;
		it->why = why;
	} else
		it->ok = true;
	if (load == LOAD_ATTEMPTS)
		peek_attempts(dirfd, it);
	if (load != LOAD_STATE)
		return 0;
	if (st == NULL)
		st = &own;
	if (state_load(dirfd, it->id, st, &why) == 0) {
		summarize_state(it, st);
		if (st == &own)
			state_free(st);
	} else if (errno == EINVAL)
		snprintf(it->last_error, sizeof(it->last_error), "bad state "
		    "file: %s", why);
	return 0;
}

static void
item_init(struct qitem *it, const char *id, int area)
{
	memset(it, 0, sizeof(*it));
	strlcpy(it->id, id, sizeof(it->id));
	it->area = area;
	it->bucket = qid_bucket(id);
}

void
spool_walk(struct spool_view *v, int areas, int load,
    void (*fn)(void *, const struct qitem *), void *arg)
{
	struct refs r = { NULL, 0 };
	struct qitem it;
	unsigned int b;
	size_t i;

	for (b = 0; b < QID_BUCKETS && (areas & ADM_QUEUE); b++)
		list_dir(v->bucketfd[b], ADM_QUEUE, &r);
	if (areas & ADM_HOLD)
		list_dir(v->holdfd, ADM_HOLD, &r);
	if (areas & ADM_CORRUPT)
		list_dir(v->corruptfd, ADM_CORRUPT, &r);
	if (r.n > 1)
		qsort(r.v, r.n, sizeof(*r.v), ref_cmp);
	for (i = 0; i < r.n; i++) {
		item_init(&it, r.v[i].id, r.v[i].area);
		if (load_item(v, &it, load, NULL) == 0)
			fn(arg, &it);
	}
	free(r.v);
}

int
spool_find(struct spool_view *v, const char *id, struct qitem *it,
    struct state *st)
{
	static const int areas[] = { ADM_QUEUE, ADM_HOLD, ADM_CORRUPT };
	struct stat sb;
	size_t i;

	if (!qid_valid(id))
		return -1;
	for (i = 0; i < 3; i++) {
		item_init(it, id, areas[i]);
		if (fstatat(spool_dirfd(v, it), id, &sb, AT_SYMLINK_NOFOLLOW) ==
		    0)
			return load_item(v, it, LOAD_STATE, st);
	}
	return -1;
}

static void
count_item(void *arg, const struct qitem *it)
{
	struct spool_summary *s = arg;

	if (it->area == ADM_HOLD)
		s->held++;
	else if (it->area == ADM_CORRUPT)
		s->corrupt++;
	else {
		s->queued++;
		s->deferred += it->attempts > 0;
		if (it->ok && (s->oldest == 0 || it->h.arrival_sec < s->oldest))
			s->oldest = (time_t)it->h.arrival_sec;
	}
	s->bytes += (unsigned long long)it->size;
}

void
spool_summary_get(struct admin *a, struct spool_summary *s)
{
	memset(s, 0, sizeof(*s));
	if (a->sv.spoolfd == -1)
		spool_view_open(&a->sv);
	spool_walk(&a->sv, ADM_QUEUE | ADM_HOLD | ADM_CORRUPT, LOAD_ATTEMPTS,
	    count_item, s);
}

/*
 * The number that *p starts with, at most max, ended by a blank or the
 * end of the line; *p moves past it and the blanks that follow.
 */
static int
next_number(const char **p, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v;

	if (number_scan(*p, max, &v, &end) == -1 ||
	    (*end != ' ' && *end != '\0'))
		return -1;
	*p = end + strspn(end, " ");
	*out = v;
	return 0;
}

/* "sent deferred failed relay_errors": as many as are well formed. */
static void
read_counts(const char *p, struct counts *c)
{
	unsigned long *const field[] = { &c->sent, &c->deferred,
	    &c->failed, &c->relay_errors };
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(field) / sizeof(field[0]) &&
	    next_number(&p, ULONG_MAX, &v) == 0; i++)
		*field[i] = (unsigned long)v;
}

/* "index pid started restart_at current doing...": one worker's slot. */
static void
read_worker(const char *p, struct pool_status *ps)
{
	struct pool_worker w;
	uint64_t i, pid, started, restart;
	size_t len;

	memset(&w, 0, sizeof(w));
	if (next_number(&p, sizeof(ps->w) / sizeof(ps->w[0]) - 1, &i) == -1 ||
	    next_number(&p, LONG_MAX, &pid) == -1 ||
	    next_number(&p, INT64_MAX, &started) == -1 ||
	    next_number(&p, INT64_MAX, &restart) == -1 ||
	    (len = strcspn(p, " ")) == 0 || len >= sizeof(w.current))
		return;
	w.pid = (long)pid;
	w.started = (time_t)started;
	w.restart_at = (time_t)restart;
	memcpy(w.current, p, len);
	w.current[len] = '\0';
	if (strcmp(w.current, "-") == 0)
		w.current[0] = '\0';
	p += len;
	strlcpy(w.doing, p + strspn(p, " "), sizeof(w.doing));
	ps->w[i] = w;
}

/* "sum_ms bucket...": the total delay, then the histogram. */
static void
read_latency(const char *p, struct counts *c)
{
	uint64_t v;
	size_t i;

	if (next_number(&p, ULONG_MAX, &v) == -1)
		return;
	c->lat_sum_ms = (unsigned long)v;
	for (i = 0; i <= LAT_BUCKETS && next_number(&p, ULONG_MAX, &v) == 0;
	    i++)
		c->lat[i] = (unsigned long)v;
}

/* "pid started workers": listqd runs. */
static void
read_listqd(const char *p, struct pool_status *ps)
{
	uint64_t pid, started, n;

	if (next_number(&p, LONG_MAX, &pid) == -1 ||
	    next_number(&p, INT64_MAX, &started) == -1 ||
	    next_number(&p, UINT_MAX, &n) == -1)
		return;
	ps->running = true;
	ps->pid = (long)pid;
	ps->started = (time_t)started;
	ps->n = (unsigned int)n;
}

/* "at name": the newest relay failure. */
static void
read_relay(const char *p, struct pool_status *ps)
{
	uint64_t at;

	if (next_number(&p, INT64_MAX, &at) == -1)
		return;
	ps->relay_at = (time_t)at;
	strlcpy(ps->relay, p, sizeof(ps->relay));
}

/* "name until pausing workers why...": one relay's state. */
static void
read_relaystate(const char *p, struct pool_status *ps)
{
	struct pool_relay *r = &ps->relays[ps->nrelays];
	uint64_t until, pausing, workers;
	size_t len = strcspn(p, " ");

	if (ps->nrelays == RELAYS_SHOWN || len == 0 || len >= sizeof(r->name))
		return;
	memcpy(r->name, p, len);
	r->name[len] = '\0';
	p += len + strspn(p + len, " ");
	if (next_number(&p, INT64_MAX, &until) == -1 ||
	    next_number(&p, UINT_MAX, &pausing) == -1 ||
	    next_number(&p, UINT_MAX, &workers) == -1)
		return;
	r->until = (time_t)until;
	r->pausing = (unsigned int)pausing;
	r->workers = (unsigned int)workers;
	strlcpy(r->why, strcmp(p, "-") == 0 ? "" : p, sizeof(r->why));
	ps->nrelays++;
}

static int
status_line(void *arg, char *line)
{
	struct pool_status *ps = arg;
	char *word = strsep(&line, " ");

	if (line == NULL)
		return 0;
	if (strcmp(word, "listqd") == 0)
		read_listqd(line, ps);
	else if (strcmp(word, "config") == 0)
		strlcpy(ps->config, line, sizeof(ps->config));
	else if (strcmp(word, "worker") == 0)
		read_worker(line, ps);
	else if (strcmp(word, "total") == 0)
		read_counts(line, &ps->total);
	else if (strcmp(word, "minute") == 0)
		read_counts(line, &ps->minute);
	else if (strcmp(word, "hour") == 0)
		read_counts(line, &ps->hour);
	else if (strcmp(word, "latency") == 0)
		read_latency(line, &ps->total);
	else if (strcmp(word, "relay") == 0)
		read_relay(line, ps);
	else if (strcmp(word, "relaystate") == 0)
		read_relaystate(line, ps);
	return 0;
}

void
pool_status_get(struct admin *a, struct pool_status *ps)
{
	memset(ps, 0, sizeof(*ps));
	if (ctl_ask(a, "status", status_line, ps) == -1)
		ps->running = false;
}
