/*
 * SPDX-License-Identifier: ISC
 *
 * Messages listqd sends of its own accord: RFC 3464 DSNs to the sender
 * of an entry, notices to a list's owners (a member disabled after
 * bounces) and to a member (a VERP probe).  All are queued through the
 * spool like anything else -- a DSN as a send entry from the null
 * sender, an owners' notice as an owner entry of the list, a member's as
 * a send entry with its own envelope -- so that they are as durable and
 * retried as list mail.
 *
 * Invariants: a DSN is queued before the state that records the failure
 * is saved, so a crash between the two may send a DSN twice but never
 * loses it; no DSN ever goes to the null sender or about a report.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "enqueue.h"
#include "log.h"
#include "msghead.h"
#include "notify.h"
#include "settings.h"
#include "spool.h"

/* The recipients a DSN of kind reports; caller frees. */
static const struct rcpt_status **
pick(const struct state *st, enum dsn_kind kind, size_t *n)
{
	const struct rcpt_status **v = calloc(st->n + 1,
	    sizeof(const struct rcpt_status *));
	size_t i;

	*n = 0;
	for (i = 0; v != NULL && i < st->n; i++)
		if (kind == DSN_FAILED ? st->r[i].st == RCPT_FAILED &&
		    st->r[i].fresh : st->r[i].st == RCPT_DEFERRED)
			v[(*n)++] = &st->r[i];
	return v;
}

bool
notify_dsn_allowed(const struct entry_header *h, const struct state *st,
    const char *headers)
{
	return dsn_allowed(st->sender, headers) && !(strcmp(h->command,
	    "send") == 0 && h->sender[0] == '\0');
}

static int
tmp_dir(struct worker *w)
{
	return spool_open_dir(w->spoolfd, SPOOL_TMP, LISTQ_UID, LISTQ_GID);
}

int
notify_dsn(struct worker *w, enum dsn_kind kind, const struct entry_header *h,
    int fd, size_t body, const struct state *st, const char *relay,
    char id[QID_SIZE])
{
	char *head = msghead_read(fd, body);
	const struct rcpt_status **r;
	struct dsn_report d;
	size_t n;
	int tmpfd, rc = 1, saved;

	if (!notify_dsn_allowed(h, st, head)) {
		free(head);
		return 1;
	}
	if ((r = pick(st, kind, &n)) == NULL || n == 0) {
		free(head);
		free(r);
		return r == NULL ? -1 : 1;
	}
	memset(&d, 0, sizeof(d));
	d.kind = kind;
	d.h = h;
	d.to = st->sender;
	d.reporting_mta = w->ctx->cfg.helo_name;
	d.remote_mta = relay;
	d.r = r;
	d.n = n;
	d.headers = head;
	d.now = time(NULL);
	d.retry_until = (time_t)h->arrival_sec +
	    (time_t)w->ctx->cfg.max_queue_lifetime;
	if ((tmpfd = tmp_dir(w)) == -1)
		rc = -1;
	else {
		rc = dsn_queue(&d, w->spoolfd, tmpfd, LISTQ_UID, LISTQ_GID, id);
		saved = errno;
		close(tmpfd);
		errno = saved;
	}
	free(r);
	free(head);
	return rc;
}

/*
 * Queues a short plain-text notice whose envelope and command are in h
 * (its arrival and ids are stamped by enqueue_message).
 */
static int
queue_notice(struct worker *w, struct entry_header *h, const char *from,
    const char *to, const char *subject, const char *text)
{
	char *msg = NULL, date[64], id[QID_SIZE];
	size_t len = 0;
	FILE *f;
	int tmpfd, rc;

	msghead_date(time(NULL), date, sizeof(date));
	if ((f = open_memstream(&msg, &len)) == NULL)
		return -1;
	fprintf(f, "From: %s\nTo: %s\nSubject: %s\nDate: %s\n"
	    "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=us-ascii\n\n%s\n", from, to,
	    subject, date, text);
	if (fclose(f) != 0 || (tmpfd = tmp_dir(w)) == -1) {
		free(msg);
		return -1;
	}
	rc = enqueue_message(w->spoolfd, tmpfd, h, msg, len, LISTQ_UID,
	    LISTQ_GID, id);
	close(tmpfd);
	free(msg);
	return rc;
}

int
notify_owners(struct worker *w, const char *list, const char *from,
    const char *subject, const char *text)
{
	struct entry_header h;
	char to[LIST_NAME_MAX + 8];

	memset(&h, 0, sizeof(h));
	strlcpy(h.command, "owner", sizeof(h.command));
	strlcpy(h.list, list, sizeof(h.list));
	snprintf(to, sizeof(to), "%s-owner", list);
	return queue_notice(w, &h, from, to, subject, text);
}

int
notify_member(struct worker *w, const char *list, const char *sender,
    const char *member, const char *from, const char *subject,
    const char *text)
{
	struct entry_header h;

	memset(&h, 0, sizeof(h));
	strlcpy(h.command, "send", sizeof(h.command));
	strlcpy(h.list, list, sizeof(h.list));
	strlcpy(h.sender, sender, sizeof(h.sender));
	strlcpy(h.rcpt, member, sizeof(h.rcpt));
	return queue_notice(w, &h, from, member, subject, text);
}
