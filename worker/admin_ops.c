/*
 * SPDX-License-Identifier: ISC
 *
 * Admin operations on queue entries: hold, release, delete, requeue and
 * flush.  Only the owner of an entry runs them (invariant 3): in listqd
 * the worker owning its bucket, which got the request from the master;
 * with the daemon stopped, listq holding the spool's pidfile lock.
 * Entries in hold/ and corrupt/ belong to the owner of their bucket.
 *
 * Invariants: an entry moves message first, state second, into hold/,
 * and state first, message second, out of it, so that an interrupted
 * move leaves a state file whose message is in hold/ (a worker's sweep
 * moves it there: see worker.c); a delete unlinks the message, then the
 * state; every change is logged with the admin's uid.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin_ops.h"
#include "log.h"
#include "moderation.h"
#include "state.h"

#define MSG_LEN	160

typedef int (*adm_op)(struct adm *, const char *, char *);

static int
owned(const struct adm *a, const char *id)
{
	return qid_valid(id) && a->bucketfd[qid_bucket(id)] != -1;
}

static int
exists(int dirfd, const char *id)
{
	struct stat st;

	return fstatat(dirfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Where id is: ADM_QUEUE, ADM_HOLD, ADM_CORRUPT or 0; *dirfd set. */
static int
locate(const struct adm *a, const char *id, int *dirfd)
{
	int fd = a->bucketfd[qid_bucket(id)];

	if (exists(fd, id))
		return *dirfd = fd, ADM_QUEUE;
	if (exists(a->holdfd, id))
		return *dirfd = a->holdfd, ADM_HOLD;
	if (exists(a->corruptfd, id))
		return *dirfd = a->corruptfd, ADM_CORRUPT;
	return 0;
}

static void
state_name(const char *id, char name[QID_SIZE + sizeof(STATE_SUFFIX)])
{
	snprintf(name, QID_SIZE + sizeof(STATE_SUFFIX), "%s%s", id,
	    STATE_SUFFIX);
}

/* Moves message and state from one directory to another, durably. */
static int
move_pair(int from, int to, const char *id, int state_first)
{
	char st[QID_SIZE + sizeof(STATE_SUFFIX)];

	state_name(id, st);
	if (state_first && renameat(from, st, to, st) == -1 &&
	    errno != ENOENT)
		return -1;
	if (renameat(from, id, to, id) == -1)
		return -1;
	if (!state_first && renameat(from, st, to, st) == -1 &&
	    errno != ENOENT)
		log_msg(LOG_ERR, id, "moving its state: %s", strerror(errno));
	if (fsync(to) == -1 || fsync(from) == -1)
		log_msg(LOG_ERR, id, "fsync after a move: %s", strerror(errno));
	return 0;
}

static void
tell(struct adm *a, const char *id, enum adm_change what)
{
	if (a->changed != NULL)
		a->changed(a->arg, qid_bucket(id), id, what);
}

/* Logs "<what> by uid N" for id and leaves it in msg; returns 0. */
static int
done(struct adm *a, const char *id, char *msg, const char *what)
{
	snprintf(msg, MSG_LEN, "%s by uid %lu", what, (unsigned long)a->who);
	log_msg(LOG_NOTICE, id, "%s", msg);
	return 0;
}

static int
failed(char *msg, int code, const char *what)
{
	snprintf(msg, MSG_LEN, "%s%s%s", what, errno != 0 ? ": " : "",
	    errno != 0 ? strerror(errno) : "");
	return code;
}

static int
not_found(char *msg, const char *where)
{
	errno = 0;
	return failed(msg, EX_NOINPUT, where);
}

static int
op_hold(struct adm *a, const char *id, char *msg)
{
	int fd;

	switch (locate(a, id, &fd)) {
	case ADM_HOLD:
		snprintf(msg, MSG_LEN, "already on hold");
		return 0;
	case ADM_QUEUE:
		break;
	default:
		return not_found(msg, "no such entry in the queue");
	}
	if (move_pair(fd, a->holdfd, id, 0) == -1)
		return failed(msg, EX_TEMPFAIL, "cannot move to hold/");
	tell(a, id, ADM_GONE);
	return done(a, id, msg, "held");
}

static int
op_release(struct adm *a, const char *id, char *msg)
{
	if (!exists(a->holdfd, id))
		return not_found(msg, "no such entry on hold");
	if (move_pair(a->holdfd, a->bucketfd[qid_bucket(id)], id, 1) == -1)
		return failed(msg, EX_TEMPFAIL, "cannot move back to the "
		    "queue");
	tell(a, id, ADM_DUE);
	return done(a, id, msg, "released");
}

static int
op_delete(struct adm *a, const char *id, char *msg)
{
	static const char *const from[] = { "", "", " from hold/", "",
	    " from corrupt/" };
	char st[QID_SIZE + sizeof(STATE_SUFFIX)], what[32];
	int fd, where = locate(a, id, &fd);

	if (where == 0)
		return not_found(msg, "no such entry");
	state_name(id, st);
	if (unlinkat(fd, id, 0) == -1)
		return failed(msg, EX_TEMPFAIL, "cannot remove");
	if (unlinkat(fd, st, 0) == -1 && errno != ENOENT)
		log_msg(LOG_ERR, id, "removing its state: %s", strerror(errno));
	if (fsync(fd) == -1)
		log_msg(LOG_ERR, id, "fsync after delete: %s", strerror(errno));
	tell(a, id, ADM_GONE);
	snprintf(what, sizeof(what), "deleted%s", from[where]);
	return done(a, id, msg, what);
}

/*
 * Rewrites the state of a queued entry: next attempt now and, with
 * reset, the attempt count (hence the backoff) back to zero.  An entry
 * without a state file is due already.
 */
static int
make_due(int fd, const char *id, int reset, char *msg)
{
	const char *why;
	struct state s;
	int rc = 0;

	if (state_load(fd, id, &s, &why) == -1) {
		if (errno == ENOENT)
			return 0;
		if (why != NULL)
			snprintf(msg, MSG_LEN, "its state cannot be read: %s",
			    why);
		return why != NULL ? EX_DATAERR : failed(msg, EX_TEMPFAIL,
		    "reading its state");
	}
	if (s.next_attempt != 0 || (reset && s.attempts != 0)) {
		s.next_attempt = 0;
		if (reset)
			s.attempts = 0;
		if (state_save(fd, id, &s) == -1)
			rc = failed(msg, EX_TEMPFAIL, "saving its state");
	}
	state_free(&s);
	return rc;
}

static int
op_requeue(struct adm *a, const char *id, char *msg)
{
	int fd = a->bucketfd[qid_bucket(id)], rc;

	if (exists(a->holdfd, id) && move_pair(a->holdfd, fd, id, 1) == -1)
		return failed(msg, EX_TEMPFAIL, "cannot move back from hold/");
	if (!exists(fd, id))
		return not_found(msg, "no such entry in the queue or on hold");
	if ((rc = make_due(fd, id, 1, msg)) != 0)
		return rc;
	tell(a, id, ADM_DUE);
	return done(a, id, msg, "requeued (attempt now, backoff reset)");
}

static int
op_flush(struct adm *a, const char *id, char *msg)
{
	int fd = a->bucketfd[qid_bucket(id)], rc;

	if (!exists(fd, id))
		return not_found(msg, "no such entry in the queue");
	/* A running owner just makes it due; listq leaves a due state. */
	if (a->changed == NULL && (rc = make_due(fd, id, 0, msg)) != 0)
		return rc;
	tell(a, id, ADM_DUE);
	return done(a, id, msg, "flushed");
}

int
adm_read_header(int dirfd, const char *id, struct entry_header *h,
    off_t *size, const char **why)
{
	char buf[ENTRY_HEADER_MAX];
	struct stat st;
	size_t body;
	ssize_t n;
	int fd;

	*why = NULL;
	if ((fd = openat(dirfd, id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return -1;
	n = pread(fd, buf, sizeof(buf), 0);
	if (n == -1 || fstat(fd, &st) == -1) {
		close(fd);
		return -1;
	}
	close(fd);
	if (entry_header_parse(buf, (size_t)n, h, &body, why) == -1)
		return -1;
	*size = st.st_size - (off_t)body;
	return 0;
}

/* Is entry id of dirfd one of list's? */
static int
of_list(int dirfd, const char *id, const char *list)
{
	struct entry_header h;
	const char *why;
	off_t size;

	return adm_read_header(dirfd, id, &h, &size, &why) == 0 &&
	    strcmp(h.list, list) == 0;
}

struct ids {
	char	(*v)[QID_SIZE];
	size_t	 n;
};

/* Collects the ids of this owner in dirfd first: the loop then changes it. */
static int
collect(const struct adm *a, int dirfd, struct ids *ids)
{
	struct dirent *de;
	char (*v)[QID_SIZE];
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!owned(a, de->d_name))
			continue;
		if ((v = reallocarray(ids->v, ids->n + 1, sizeof(*v))) == NULL)
			break;
		ids->v = v;
		strlcpy(ids->v[ids->n++], de->d_name, QID_SIZE);
	}
	closedir(d);
	return 0;
}

static long
each(struct adm *a, int areas, const char *list, adm_op op,
    adm_report report, void *rarg)
{
	struct ids ids = { NULL, 0 };
	char msg[MSG_LEN];
	unsigned int b;
	long n = 0;
	size_t i;
	int fd;

	for (b = 0; b < QID_BUCKETS; b++)
		if ((areas & ADM_QUEUE) && a->bucketfd[b] != -1)
			collect(a, a->bucketfd[b], &ids);
	if (areas & ADM_HOLD)
		collect(a, a->holdfd, &ids);
	for (i = 0; i < ids.n; i++) {
		if (list != NULL && (locate(a, ids.v[i], &fd) == 0 ||
		    !of_list(fd, ids.v[i], list)))
			continue;
		report(rarg, op(a, ids.v[i], msg), ids.v[i], msg);
		n++;
	}
	free(ids.v);
	return n;
}

/* ARG_ID_TEXT: an id, then optional free text (reject's reason). */
enum arg_kind { ARG_NONE, ARG_ID, ARG_LIST, ARG_ID_OR_NONE, ARG_ID_TEXT };

static const struct verb {
	const char	*name;
	adm_op		 op;
	int		 areas;		/* for a whole list, or all */
	enum arg_kind	 arg;
} verbs[] = {
	{ "hold", op_hold, 0, ARG_ID },
	{ "hold-list", op_hold, ADM_QUEUE, ARG_LIST },
	{ "release", op_release, 0, ARG_ID },
	{ "release-all", op_release, ADM_HOLD, ARG_NONE },
	{ "delete", op_delete, 0, ARG_ID },
	{ "delete-list", op_delete, ADM_QUEUE | ADM_HOLD, ARG_LIST },
	{ "requeue", op_requeue, 0, ARG_ID },
	{ "flush", op_flush, ADM_QUEUE, ARG_ID_OR_NONE },
	{ "approve", mod_op_approve, 0, ARG_ID },
	{ "reject", mod_op_reject, 0, ARG_ID_TEXT },
	{ "discard", mod_op_discard, 0, ARG_ID },
};

static const struct verb *
find_verb(const char *name, const char *arg)
{
	const struct verb *v;
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		v = &verbs[i];
		if (strcmp(name, v->name) != 0)
			continue;
		if ((v->arg == ARG_NONE && arg != NULL) ||
		    ((v->arg == ARG_ID || v->arg == ARG_LIST ||
		    v->arg == ARG_ID_TEXT) && arg == NULL))
			return NULL;
		return v;
	}
	return NULL;
}

/* The id at the start of "ID[ TEXT]", copied into id. */
static const char *
id_part(const char *arg, char id[QID_SIZE])
{
	strlcpy(id, arg, QID_SIZE);
	return id;
}

int
adm_route(const char *verb, const char *arg)
{
	const struct verb *v = find_verb(verb, arg);
	char id[QID_SIZE];

	if (v == NULL)
		return -1;
	if (v->arg == ARG_LIST || arg == NULL)
		return ADM_ALL;
	return qid_valid(arg) || (v->arg == ARG_ID_TEXT &&
	    strlen(arg) > QID_LEN && arg[QID_LEN] == ' ' &&
	    qid_valid(id_part(arg, id))) ? ADM_ONE : -1;
}

long
adm_request(struct adm *a, const char *verb, const char *arg,
    adm_report report, void *rarg)
{
	const struct verb *v = find_verb(verb, arg);
	char msg[MSG_LEN], id[QID_SIZE];

	if (v == NULL)
		return -1;
	if (v->arg == ARG_LIST)
		return each(a, v->areas, arg, v->op, report, rarg);
	if (arg == NULL)
		return each(a, v->areas, NULL, v->op, report, rarg);
	if (v->arg == ARG_ID_TEXT) {
		a->text = strlen(arg) > QID_LEN ? arg + QID_LEN + 1 : NULL;
		arg = id_part(arg, id);
	}
	if (!owned(a, arg)) {
		report(rarg, EX_USAGE, arg, "not a queue id of this owner");
		return 1;
	}
	report(rarg, v->op(a, arg, msg), arg, msg);
	return 1;
}
