/*
 * SPDX-License-Identifier: ISC
 *
 * The moderation queue: posts the gate held, kept in moderation/ with a
 * record each until a moderator decides or moderation_lifetime ends.
 *
 * Invariants (3, 5 of the contract): only the owner of an entry's bucket
 * moves or removes it, here as for hold/; a held post leaves the spool
 * only by a decision or by expiry, each logged with its queue id.  Moves
 * keep an order that a crash cannot turn into a loss or a second copy:
 * into moderation/ the record goes first, then the message (a crash in
 * between leaves the post in its bucket, to be gated again); back to the
 * queue the record, marked approved, goes first, then the message (a
 * crash in between leaves a record in the bucket, which the sweep joins
 * with its message).  A removal unlinks the message first.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "durable.h"
#include "list.h"
#include "log.h"
#include "moderation.h"
#include "notice.h"
#include "number.h"
#include "spool.h"
#include "state.h"

#define RECORD_MAX	2048
#define NAME_MAX_ID	(QID_SIZE + 16)

static void
suffixed(char *buf, const char *id, const char *suffix)
{
	snprintf(buf, NAME_MAX_ID, "%s%s", id, suffix);
}

/* A text field of a record: kept if it fits. */
static int
text_field(char *dst, const char *v, size_t len)
{
	return strlcpy(dst, v, len) < len ? 0 : -1;
}

/* One "key: value" line of a record into r; -1 if unknown or bad. */
static int
record_line(struct held *r, const char *key, const char *v, int *version)
{
	uint64_t n;

	if (strcmp(key, "listq-held") == 0) {
		if (number_parse(v, 1000, &n) == -1)
			return -1;
		*version = (int)n;
		return *version == MOD_VERSION ? 0 : -1;
	}
	if (strcmp(key, "list") == 0)
		return list_name_valid(v) ? text_field(r->list, v,
		    sizeof(r->list)) : -1;
	if (strcmp(key, "held") == 0 || strcmp(key, "expires") == 0) {
		if (number_parse(v, INT64_MAX, &n) == -1)
			return -1;
		*(key[0] == 'h' ? &r->held : &r->expires) = (int64_t)n;
		return 0;
	}
	if (strcmp(key, "decision") == 0) {
		r->decision = strcmp(v, "approve") == 0 ? MOD_APPROVE : MOD_NONE;
		return strcmp(v, "approve") == 0 || strcmp(v, "none") == 0 ?
		    0 : -1;
	}
	if (strcmp(key, "poster") == 0 || strcmp(key, "sender") == 0) {
		if (v[0] != '\0' && !address_valid(v))
			return -1;
		return text_field(key[0] == 'p' ? r->poster : r->sender, v,
		    ADDR_MAX + 1);
	}
	if (strcmp(key, "reason") == 0)
		return text_field(r->reason, v, sizeof(r->reason));
	if (strcmp(key, "subject") == 0)
		return text_field(r->subject, v, sizeof(r->subject));
	return -1;
}

int
mod_record_read(int dirfd, const char *id, struct held *r)
{
	char name[NAME_MAX_ID], buf[RECORD_MAX], *p, *line, *v;
	int fd, version = 0;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	suffixed(name, id, MOD_SUFFIX);
	if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	for (p = buf; (line = strsep(&p, "\n")) != NULL;) {
		if (line[0] == '\0')
			continue;
		if ((v = strstr(line, ": ")) == NULL) {
			if ((v = strchr(line, ':')) == NULL || v[1] != '\0')
				goto bad;
			*v++ = '\0';
		} else {
			*v = '\0';
			v += 2;
		}
		if (record_line(r, line, v, &version) == -1)
			goto bad;
	}
	if (version == MOD_VERSION && r->list[0] != '\0' && r->expires != 0)
		return 0;
bad:
	errno = EINVAL;
	return -1;
}

/* A header value as one printable line (no CR, LF or controls). */
static void
one_line(char *dst, const char *src, size_t len)
{
	size_t i;

	strlcpy(dst, src, len);
	for (i = 0; dst[i] != '\0'; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = ' ';
}

int
mod_record_write(int dirfd, const char *id, const struct held *r)
{
	char name[NAME_MAX_ID], buf[RECORD_MAX], reason[64], subject[160];
	int n;

	one_line(reason, r->reason, sizeof(reason));
	one_line(subject, r->subject, sizeof(subject));
	n = snprintf(buf, sizeof(buf), "listq-held: %d\nlist: %s\n"
	    "held: %" PRId64 "\nexpires: %" PRId64 "\ndecision: %s\n"
	    "poster: %s\nsender: %s\nreason: %s\nsubject: %s\n", MOD_VERSION,
	    r->list, r->held, r->expires, r->decision == MOD_APPROVE ?
	    "approve" : "none", r->poster, r->sender, reason, subject);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	suffixed(name, id, MOD_SUFFIX);
	return durable_replace(dirfd, name, buf, (size_t)n);
}

/* Renames name, if there, from one directory to another. */
static int
move_name(int from, int to, const char *name)
{
	if (renameat(from, name, to, name) == -1 && errno != ENOENT)
		return -1;
	return 0;
}

int
mod_take(int spoolfd, int bucketfd, const char *id, const struct held *r)
{
	char st[NAME_MAX_ID];
	int modfd, rc = -1, saved;

	if ((modfd = spool_open_dir(spoolfd, SPOOL_MODERATION, LISTQ_UID,
	    LISTQ_GID)) == -1)
		return -1;
	suffixed(st, id, STATE_SUFFIX);
	if (mod_record_write(modfd, id, r) == 0 &&
	    renameat(bucketfd, id, modfd, id) == 0) {
		if (move_name(bucketfd, modfd, st) == -1)
			log_msg(LOG_ERR, id, "moving its state: %s",
			    strerror(errno));
		rc = 0;
		if (durable_fsync_dir(modfd) == -1 ||
		    durable_fsync_dir(bucketfd) == -1)
			log_msg(LOG_ERR, id, "fsync after holding: %s",
			    strerror(errno));
	}
	saved = errno;
	close(modfd);
	errno = saved;
	return rc;
}

int
mod_remove(int dirfd, const char *id, const char *why)
{
	static const char *const rest[] = { MOD_SUFFIX, STATE_SUFFIX };
	char name[NAME_MAX_ID];
	size_t i;

	if (unlinkat(dirfd, id, 0) == -1) {
		log_msg(LOG_ERR, id, "cannot remove: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < 2; i++) {
		suffixed(name, id, rest[i]);
		if (unlinkat(dirfd, name, 0) == -1 && errno != ENOENT)
			log_msg(LOG_ERR, id, "removing %s: %s", name,
			    strerror(errno));
	}
	if (durable_fsync_dir(dirfd) == -1)
		log_msg(LOG_ERR, id, "fsync after removal: %s", strerror(errno));
	log_msg(LOG_NOTICE, id, "removed from the moderation queue: %s", why);
	return 0;
}

bool
mod_approved(int bucketfd, const char *id)
{
	struct held r;

	return mod_record_read(bucketfd, id, &r) == 0 &&
	    r.decision == MOD_APPROVE;
}

static bool
owned(const struct adm *a, const char *id)
{
	return qid_valid(id) && a->bucketfd[qid_bucket(id)] != -1;
}

static void
tell(struct adm *a, const char *id)
{
	if (a->changed != NULL)
		a->changed(a->arg, qid_bucket(id), id, ADM_DUE);
}

/* The record of held post id, or a sysexits code with msg set. */
static int
find_held(struct adm *a, const char *id, struct held *r, char *msg)
{
	if (mod_record_read(a->modfd, id, r) == 0 &&
	    faccessat(a->modfd, id, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	snprintf(msg, MOD_MSG_LEN, "%s", errno == EINVAL ? "its record "
	    "cannot be read" : "no such held post");
	return errno == EINVAL ? EX_DATAERR : EX_NOINPUT;
}

/*
 * Back to its bucket, marked approved: the record first, then the
 * message; the gate then lets it through once.
 */
static int
approve(struct adm *a, const char *id, struct held *r, char *msg)
{
	int bfd = a->bucketfd[qid_bucket(id)];
	char name[NAME_MAX_ID], st[NAME_MAX_ID];

	suffixed(name, id, MOD_SUFFIX);
	suffixed(st, id, STATE_SUFFIX);
	r->decision = MOD_APPROVE;
	if (mod_record_write(a->modfd, id, r) == -1 ||
	    move_name(a->modfd, bfd, st) == -1 ||
	    renameat(a->modfd, name, bfd, name) == -1 ||
	    renameat(a->modfd, id, bfd, id) == -1) {
		snprintf(msg, MOD_MSG_LEN, "cannot move back to the queue: %s",
		    strerror(errno));
		return EX_TEMPFAIL;
	}
	if (durable_fsync_dir(bfd) == -1 || durable_fsync_dir(a->modfd) == -1)
		log_msg(LOG_ERR, id, "fsync after approval: %s", strerror(errno));
	tell(a, id);
	return 0;
}

static int
decided(struct adm *a, const char *id, char *msg, const char *what)
{
	if (a->who == (uid_t)-1)
		snprintf(msg, MOD_MSG_LEN, "%s by a moderator's reply", what);
	else
		snprintf(msg, MOD_MSG_LEN, "%s by uid %lu", what,
		    (unsigned long)a->who);
	log_msg(LOG_NOTICE, id, "%s", msg);
	return 0;
}

int
mod_op_approve(struct adm *a, const char *id, char *msg)
{
	struct held r;
	int rc;

	if ((rc = find_held(a, id, &r, msg)) != 0 ||
	    (rc = approve(a, id, &r, msg)) != 0)
		return rc;
	return decided(a, id, msg, "approved");
}

int
mod_op_reject(struct adm *a, const char *id, char *msg)
{
	const char *reason = a->text != NULL && a->text[0] != '\0' ? a->text :
	    "the moderators did not accept it";
	struct held r;
	int rc;

	if ((rc = find_held(a, id, &r, msg)) != 0)
		return rc;
	/* The notice first: a crash after it repeats it at most. */
	if (notice_rejected(a->spoolfd, id, &r, reason) == -1)
		log_msg(LOG_ERR, id, "rejection notice not queued: %s",
		    strerror(errno));
	if (mod_remove(a->modfd, id, "rejected") == -1) {
		snprintf(msg, MOD_MSG_LEN, "cannot remove: %s", strerror(errno));
		return EX_TEMPFAIL;
	}
	return decided(a, id, msg, "rejected");
}

int
mod_op_discard(struct adm *a, const char *id, char *msg)
{
	struct held r;
	int rc;

	if ((rc = find_held(a, id, &r, msg)) != 0)
		return rc;
	if (mod_remove(a->modfd, id, "discarded") == -1) {
		snprintf(msg, MOD_MSG_LEN, "cannot remove: %s", strerror(errno));
		return EX_TEMPFAIL;
	}
	return decided(a, id, msg, "discarded");
}

/* A decision another worker verified and dropped: apply it, once. */
static void
apply_drop(struct adm *a, const char *id, const char *name,
    const char *action)
{
	static const struct {
		const char *action;
		int (*op)(struct adm *, const char *, char *);
	} ops[] = { { "approve", mod_op_approve }, { "reject", mod_op_reject },
	    { "discard", mod_op_discard } };
	char msg[MOD_MSG_LEN];
	uid_t who = a->who;
	size_t i;

	/* Gone before it is applied: a crash repeats nothing. */
	if (unlinkat(a->modfd, name, 0) == -1)
		return;
	a->who = (uid_t)-1;
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(action, ops[i].action) == 0 &&
		    ops[i].op(a, id, msg) != 0)
			log_msg(LOG_WARNING, id, "%s by mail not applied: %s",
			    action, msg);
	a->who = who;
}

/*
 * An approval cut short between its two renames: the record, approved,
 * is in the bucket, the post still here.  The post follows it.
 */
static void
finish_approval(struct adm *a, int bucketfd, const char *id)
{
	if (!mod_approved(bucketfd, id) ||
	    renameat(a->modfd, id, bucketfd, id) == -1)
		return;
	durable_fsync_dir(bucketfd);
	log_msg(LOG_INFO, id, "approval finished: back in the queue");
	tell(a, id);
}

/* One name in moderation/ of this owner. */
static void
sweep_name(struct adm *a, const char *name, time_t now)
{
	const char *dot = strchr(name, '.');
	char id[QID_SIZE], why[96];
	struct held r;

	if (dot == NULL && owned(a, name)) {
		if (mod_record_read(a->modfd, name, &r) == 0) {
			if (r.expires > now)
				return;
			snprintf(why, sizeof(why), "expired after %" PRId64
			    " s without a decision; discarded", r.expires -
			    r.held);
			mod_remove(a->modfd, name, why);
		} else if (errno == ENOENT)
			finish_approval(a, a->bucketfd[qid_bucket(name)], name);
		return;
	}
	if (dot == NULL || (size_t)(dot - name) != QID_LEN)
		return;
	memcpy(id, name, QID_LEN);
	id[QID_LEN] = '\0';
	if (!owned(a, id))
		return;
	if (strcmp(dot, MOD_SUFFIX) != 0 && strcmp(dot, ".mod.tmp") != 0 &&
	    strcmp(dot, STATE_SUFFIX) != 0)
		apply_drop(a, id, name, dot + 1);
}

void
mod_sweep(struct adm *a, time_t now)
{
	struct dirent *de;
	char (*names)[NAME_MAX_ID] = NULL, (*v)[NAME_MAX_ID];
	size_t n = 0, i;
	DIR *d;
	int fd;

	if ((fd = dup(a->modfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_msg(LOG_ERR, NULL, "scanning %s/: %s", SPOOL_MODERATION,
		    strerror(errno));
		return;
	}
	rewinddir(d);
	/* Names first: the sweep changes the directory. */
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= NAME_MAX_ID)
			continue;
		if ((v = reallocarray(names, n + 1, sizeof(*v))) == NULL)
			break;
		names = v;
		strlcpy(names[n++], de->d_name, NAME_MAX_ID);
	}
	closedir(d);
	/* Drops sort after their ids: the post is decided before it expires. */
	for (i = n; i-- > 0;)
		if (strchr(names[i], '.') != NULL)
			sweep_name(a, names[i], now);
	for (i = 0; i < n; i++)
		if (strchr(names[i], '.') == NULL)
			sweep_name(a, names[i], now);
	free(names);
}

void
mod_sweep_bucket(struct adm *a, int bucketfd, const char *id,
    const char *name)
{
	if (faccessat(bucketfd, id, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return;
	if (faccessat(a->modfd, id, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		finish_approval(a, bucketfd, id);
		return;
	}
	if (unlinkat(bucketfd, name, 0) == 0)
		log_msg(LOG_INFO, id, "removed leftover %s", name);
}
