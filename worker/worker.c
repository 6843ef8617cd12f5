/*
 * SPDX-License-Identifier: ISC
 *
 * A listqd worker: the one owner of the buckets b with b mod N == w.
 *
 * It learns of new entries at once through inotify on its own buckets,
 * rescans them periodically as a backstop, keeps its entries in an
 * in-memory schedule and hands due ones to deliver.c in batches of one
 * SMTP session.  It never opens another worker's bucket (invariant 3).
 * SIGTERM: finish the transaction in flight, then exit 0.  SIGHUP:
 * reload the configuration.  SIGUSR1: every deferred entry is due now,
 * and every relay's pause ends (relay.c).  While every relay pauses it
 * starts no session, and sleeps until the first one is back.
 * Between batches it answers the listq requests the master passes it
 * (worker_ctl.c), as the owner of the entries they name.
 */
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "deliver.h"
#include "log.h"
#include "moderation.h"
#include "relay.h"
#include "settings.h"
#include "spool.h"
#include "state.h"
#include "worker.h"

#define INO_BUF		(64 * (sizeof(struct inotify_event) + 256))

bool
worker_owns(const struct worker *w, unsigned int b)
{
	return qid_bucket_owner(b, w->ctx->count) == w->ctx->index;
}

void
worker_doing(struct worker *w, const char *what, const char *id)
{
	struct slot *s = w->ctx->slot;

	strlcpy(s->doing, what, sizeof(s->doing));
	strlcpy(s->current, id != NULL ? id : "", sizeof(s->current));
	setproctitle("worker %u/%u: %s", w->ctx->index, w->ctx->count, what);
}

static void
reload_config(struct worker *w)
{
	struct config c;
	char err[512];

	config_defaults(&c);
	if (config_load(w->ctx->config_path, 1, &c, err, sizeof(err)) == -1) {
		log_msg(LOG_ERR, NULL, "worker %u: reload refused: %s",
		    w->ctx->index, err);
		return;
	}
	c.workers = w->ctx->count;	/* a change of N is the master's */
	w->ctx->cfg = c;
}

bool
worker_check_signals(struct worker *w)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			w->stopping = true;
		else if (si.ssi_signo == SIGHUP)
			reload_config(w);
		else if (si.ssi_signo == SIGUSR1)
			w->flushing = true;
	}
	return w->stopping;
}

/*
 * An orphan state file whose message is in hold/ or corrupt/ is the end
 * of an interrupted move there (or back): it joins its message.
 */
static bool
join_message(struct worker *w, unsigned int b, const char *id,
    const char *name)
{
	static const char *const where[] = { SPOOL_HOLD, SPOOL_CORRUPT };
	int to[] = { w->holdfd, w->corruptfd };
	struct stat st;
	size_t i;

	for (i = 0; i < 2; i++) {
		if (fstatat(to[i], id, &st, AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (renameat(w->bucketfd[b], name, to[i], name) == 0)
			log_msg(LOG_INFO, id, "moved leftover %s to %s/", name,
			    where[i]);
		return true;
	}
	return false;
}

/* Removes what an interrupted owner left: orphan state files, temps. */
static void
sweep_name(struct worker *w, unsigned int b, const char *name)
{
	const char *dot = strchr(name, '.');
	char id[QID_SIZE];
	struct stat st;

	if (dot == NULL || (size_t)(dot - name) != QID_LEN)
		return;
	memcpy(id, name, QID_LEN);
	id[QID_LEN] = '\0';
	if (strcmp(dot, STATE_SUFFIX) == 0) {
		/* Not an orphan, or now beside its message: keep it. */
		if (fstatat(w->bucketfd[b], id, &st, AT_SYMLINK_NOFOLLOW) ==
		    0 || errno != ENOENT || join_message(w, b, id, name))
			return;
	} else if (strcmp(dot, MOD_SUFFIX) == 0) {
		struct adm a;

		worker_adm(w, &a);
		mod_sweep_bucket(&a, w->bucketfd[b], id, name);
		return;
	} else if (strcmp(dot, ".state.tmp") != 0)
		return;
	if (unlinkat(w->bucketfd[b], name, 0) == 0)
		log_msg(LOG_INFO, id, "removed leftover %s", name);
}

static void
scan_bucket(struct worker *w, unsigned int b)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if ((fd = dup(w->bucketfd[b])) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_msg(LOG_ERR, NULL, "scanning bucket %02x: %s", b,
		    strerror(errno));
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (qid_valid(de->d_name)) {
			if (qid_bucket(de->d_name) != b)
				log_msg(LOG_WARNING, de->d_name, "entry in "
				    "bucket %02x belongs in %02x; left alone",
				    b, qid_bucket(de->d_name));
			else if (sched_add(&w->sched, b, de->d_name, 0) == -1)
				log_msg(LOG_ERR, de->d_name, "out of memory");
		} else if (de->d_name[0] != '.')
			sweep_name(w, b, de->d_name);
	}
	closedir(d);
}

static void
scan_all(struct worker *w)
{
	struct timespec c0, c1, t0, t1;
	unsigned int b;

	worker_doing(w, "scanning", NULL);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (b = 0; b < QID_BUCKETS; b++)
		if (w->bucketfd[b] != -1)
			scan_bucket(w, b);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* What a full scan costs, for the scale test and the curious. */
	log_msg(LOG_DEBUG, NULL, "scan: worker %u, %zu entries, %.6f s cpu, "
	    "%.6f s wall", w->ctx->index, w->sched.total,
	    (double)(c1.tv_sec - c0.tv_sec) +
	    (double)(c1.tv_nsec - c0.tv_nsec) / 1e9,
	    (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	w->next_rescan = time(NULL) + w->ctx->cfg.rescan_interval;
	w->mod_due = true;
}

/* Held posts: decisions dropped by other workers, expiry. */
static void
sweep_moderation(struct worker *w)
{
	struct adm a;

	w->mod_due = false;
	worker_doing(w, "moderation", NULL);
	worker_adm(w, &a);
	mod_sweep(&a, time(NULL));
}

static void
read_inotify(struct worker *w)
{
	char buf[INO_BUF] __attribute__((aligned(8)));
	const struct inotify_event *ev;
	ssize_t n;
	char *p;
	int b;

	while ((n = read(w->inofd, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + n; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)(void *)p;
			if (ev->mask & IN_Q_OVERFLOW) {
				w->next_rescan = 0;
				continue;
			}
			if (ev->wd == w->mod_wd) {
				w->mod_due = true;
				continue;
			}
			if (ev->wd < 0 || ev->wd >= QID_BUCKETS * 2 ||
			    (b = w->wd_bucket[ev->wd]) < 0 || ev->len == 0 ||
			    !qid_valid(ev->name))
				continue;
			sched_add(&w->sched, (unsigned int)b, ev->name, 0);
		}
	}
}

/* Opens the buckets this worker owns, and only those. */
static void
open_spool(struct worker *w)
{
	unsigned int b;

	w->spoolfd = spool_open(SPOOLDIR, LISTQ_UID, LISTQ_GID);
	w->holdfd = spool_open_dir(w->spoolfd, SPOOL_HOLD, LISTQ_UID, LISTQ_GID);
	w->corruptfd = spool_open_dir(w->spoolfd, SPOOL_CORRUPT, LISTQ_UID,
	    LISTQ_GID);
	w->modfd = spool_open_dir(w->spoolfd, SPOOL_MODERATION, LISTQ_UID,
	    LISTQ_GID);
	w->inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->spoolfd == -1 || w->holdfd == -1 || w->corruptfd == -1 ||
	    w->modfd == -1 || w->inofd == -1)
		log_exit(EX_TEMPFAIL, NULL, "worker %u: spool %s: %s",
		    w->ctx->index, SPOOLDIR, strerror(errno));
	memset(w->wd_bucket, -1, sizeof(w->wd_bucket));
	for (b = 0; b < QID_BUCKETS; b++) {
		w->bucketfd[b] = -1;
		if (!worker_owns(w, b))
			continue;
		w->bucketfd[b] = spool_open_bucket(w->spoolfd, b, LISTQ_UID,
		    LISTQ_GID);
		if (w->bucketfd[b] == -1)
			log_exit(EX_TEMPFAIL, NULL, "worker %u: bucket %02x: %s",
			    w->ctx->index, b, strerror(errno));
	}
}

static void
watch_buckets(struct worker *w)
{
	char path[64];
	unsigned int b;
	int wd;

	for (b = 0; b < QID_BUCKETS; b++) {
		if (w->bucketfd[b] == -1)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", w->bucketfd[b]);
		wd = inotify_add_watch(w->inofd, path, IN_MOVED_TO | IN_ONLYDIR);
		if (wd < 0 || wd >= QID_BUCKETS * 2)
			log_exit(EX_TEMPFAIL, NULL, "worker %u: watching bucket "
			    "%02x: %s", w->ctx->index, b, strerror(errno));
		w->wd_bucket[wd] = (int)b;
	}
	/* A decision dropped for this worker is created there. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", w->modfd);
	if ((w->mod_wd = inotify_add_watch(w->inofd, path, IN_CREATE |
	    IN_ONLYDIR)) < 0)
		log_exit(EX_TEMPFAIL, NULL, "worker %u: watching %s/: %s",
		    w->ctx->index, SPOOL_MODERATION, strerror(errno));
}

/* How long poll may sleep: until the next entry, rescan or relay retry. */
static int
sleep_ms(struct worker *w, time_t now)
{
	time_t until = w->next_rescan, next = sched_next(&w->sched);

	/* With every relay down, nothing is due before the retry. */
	if (next != 0 && next < w->relay_retry_at)
		next = w->relay_retry_at;
	if (next != 0 && next < until)
		until = next;
	if (until <= now)
		return 0;
	return until - now > 3600 ? 3600000 : (int)(until - now) * 1000;
}

static void
run(struct worker *w)
{
	size_t max = w->ctx->cfg.max_messages_per_session;
	struct sched_entry *due = calloc(max, sizeof(*due));
	struct pollfd pf[3];
	time_t now;
	size_t n;

	if (due == NULL)
		log_exit(EX_TEMPFAIL, NULL, "worker: out of memory");
	while (!worker_check_signals(w)) {
		worker_control(w);
		read_inotify(w);
		now = time(NULL);
		if (now >= w->next_rescan)
			scan_all(w);
		if (w->mod_due)
			sweep_moderation(w);
		if (w->flushing) {
			sched_flush(&w->sched);
			w->relay_retry_at = 0;
			relay_flush(&w->ctx->cfg);
			w->flushing = false;
		}
		n = now < w->relay_retry_at ? 0 : sched_due(&w->sched, now, due,
		    max);
		if (n > 0) {
			deliver_batch(w, due, n);
			continue;
		}
		worker_doing(w, "idle", NULL);
		pf[0] = (struct pollfd){ .fd = w->sigfd, .events = POLLIN };
		pf[1] = (struct pollfd){ .fd = w->inofd, .events = POLLIN };
		pf[2] = (struct pollfd){ .fd = w->ctx->chan, .events = POLLIN };
		poll(pf, 3, sleep_ms(w, now));
	}
	free(due);
}

void
worker_main(struct worker_ctx *ctx)
{
	static struct worker w;
	static char ident[32];

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(EX_OK);
	memset(&w, 0, sizeof(w));
	w.ctx = ctx;
	snprintf(ident, sizeof(ident), "listqd/worker%u", ctx->index);
	log_init(ident, ctx->foreground ? LOG_ALSO_STDERR : 0);
	stats_observe_start(&ctx->slot->counts, &ctx->slot->relay);
	relay_board_attach(&ctx->slot->relays);
	if ((w.sigfd = pool_signalfd(0)) == -1)
		log_exit(EX_OSERR, NULL, "worker: signalfd: %s", strerror(errno));
	open_spool(&w);
	watch_buckets(&w);
	worker_doing(&w, "starting", NULL);
	if (ctx->crashed[0] != '\0')
		deliver_note_crash(&w, ctx->crashed);
	scan_all(&w);
	run(&w);
	worker_doing(&w, "exiting", NULL);
	exit(EX_OK);
}
