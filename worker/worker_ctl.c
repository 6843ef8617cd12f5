/*
 * SPDX-License-Identifier: ISC
 *
 * A worker's side of the control path: the master passes it each listq
 * request about entries it owns ("UID VERB [ARG]", with the listq
 * connection attached); the worker acts as the entries' owner
 * (admin_ops.c), keeps its schedule in step and answers listq itself,
 * ending with "end W".
 *
 * Invariants: requests are handled between delivery batches, never
 * during one, so an entry is never changed under a transaction; the
 * schedule forgets what left the queue and has what came back due now.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin_ops.h"
#include "control.h"
#include "log.h"
#include "number.h"
#include "worker.h"

static void
report(void *arg, int code, const char *id, const char *msg)
{
	struct ctl_out *out = arg;

	if (code == 0)
		ctl_line(out, "ok %s %s", id, msg);
	else
		ctl_line(out, "err %d %s %s", code, id, msg);
}

static void
changed(void *arg, unsigned int b, const char *id, enum adm_change what)
{
	struct worker *w = arg;
	struct sched_entry *e = sched_find(&w->sched, b, id);

	if (what == ADM_GONE) {
		if (e != NULL)
			sched_remove(&w->sched, e);
		return;
	}
	if (e == NULL && (sched_add(&w->sched, b, id, 0) == -1 ||
	    (e = sched_find(&w->sched, b, id)) == NULL)) {
		log_msg(LOG_ERR, id, "out of memory");
		return;
	}
	e->next = 0;
	e->known = 1;
	w->relay_retry_at = 0;
}

void
worker_adm(struct worker *w, struct adm *a)
{
	*a = (struct adm){ .spoolfd = w->spoolfd, .holdfd = w->holdfd,
	    .corruptfd = w->corruptfd, .modfd = w->modfd,
	    .bucketfd = w->bucketfd, .changed = changed, .arg = w,
	    .who = (uid_t)-1 };
}

/* "UID VERB [ARG]": acts and answers on fd. */
static void
handle(struct worker *w, char *req, int fd)
{
	struct adm a;
	char *uid = strsep(&req, " "), *verb = strsep(&req, " ");
	struct ctl_out out;
	uint64_t who;

	worker_adm(w, &a);
	ctl_out_init(&out, fd);
	worker_doing(w, "answering listq", NULL);
	/* The master writes the uid; (uid_t)-1 is no one's. */
	if (number_parse(uid, (uid_t)-1 - 1, &who) == 0)
		a.who = (uid_t)who;
	if (verb == NULL || a.who == (uid_t)-1 ||
	    adm_request(&a, verb, req, report, &out) == -1)
		ctl_line(&out, "err %d - bad request", EX_USAGE);
	ctl_line(&out, "end %u", w->ctx->index);
	ctl_flush(&out);
	close(fd);
}

void
worker_control(struct worker *w)
{
	char buf[CTL_REQUEST_MAX + 32];
	ssize_t n;
	int fd;

	while ((n = ctl_recv_fd(w->ctx->chan, buf, sizeof(buf), &fd)) > 0)
		if (fd != -1)
			handle(w, buf, fd);
	if (n == 0)
		w->stopping = true;	/* the master is gone */
	else if (errno != EAGAIN && errno != EINTR)
		log_msg(LOG_ERR, NULL, "worker %u: control channel: %s",
		    w->ctx->index, strerror(errno));
}
