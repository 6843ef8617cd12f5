/*
 * SPDX-License-Identifier: ISC
 *
 * Composing and queueing RFC 3464 delivery status notifications.
 *
 * A DSN is a multipart/report of three parts: a short text for people,
 * the machine-readable message/delivery-status (one group per
 * recipient: Final-Recipient, Action, Status, Remote-MTA,
 * Diagnostic-Code) and the headers of the message it reports on.  It goes
 * out from the null sender, as a send entry through the spool, so it is
 * as durable and retried as any message.
 *
 * Invariants: never a DSN for the null sender or for a message that is
 * itself a delivery report (no bounce loops); every value written comes
 * from validated addresses or sanitized one-line replies, so a relay's
 * text cannot add header lines; one DSN per entry and attempt.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsn.h"
#include "enqueue.h"
#include "msghead.h"

static bool
is_report(const char *headers)
{
	const char *from = headers, *ct;

	if (headers == NULL || (ct = msghead_next(&from, "Content-Type")) ==
	    NULL)
		return false;
	return strncasecmp(ct, "multipart/report", 16) == 0 &&
	    strcasestr(ct, "delivery-status") != NULL;
}

bool
dsn_allowed(const char *sender, const char *headers)
{
	return sender[0] != '\0' && !is_report(headers);
}

/* "5.1.1" as given, or the class of the reply code, or of the kind. */
static const char *
status_of(const struct rcpt_status *r, enum dsn_kind kind, char buf[16])
{
	if (r->dsn[0] >= '2' && r->dsn[0] <= '5' && r->dsn[1] == '.')
		return r->dsn;
	snprintf(buf, 16, "%c.0.0", kind == DSN_DELAYED ? '4' :
	    r->code >= 500 ? '5' : '4');
	return buf;
}

static void
write_headers(const struct dsn_report *d, FILE *out, const char *boundary)
{
	char date[64];

	msghead_date(d->now, date, sizeof(date));
	fprintf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\n"
	    "To: <%s>\nSubject: %s\nDate: %s\n"
	    "Message-ID: <%s.%s.%lld@%s>\nAuto-Submitted: auto-replied\n"
	    "MIME-Version: 1.0\nContent-Type: multipart/report; "
	    "report-type=delivery-status;\n\tboundary=\"%s\"\n\n"
	    "This is a MIME-encapsulated message.\n\n",
	    d->reporting_mta, d->to, d->kind == DSN_FAILED ?
	    "Undelivered Mail Returned to Sender" :
	    "Delayed Mail (still being retried)", date, d->h->id,
	    d->kind == DSN_FAILED ? "failed" : "delayed", (long long)d->now,
	    d->reporting_mta, boundary);
}

static void
write_text(const struct dsn_report *d, FILE *out, const char *boundary)
{
	size_t i;

	fprintf(out, "--%s\nContent-Description: Notification\n"
	    "Content-Type: text/plain; charset=us-ascii\n\n"
	    "This is the list server at %s.\n\n", boundary, d->reporting_mta);
	if (d->kind == DSN_FAILED)
		fprintf(out, "Your message to the list %s could not be "
		    "delivered\nto the recipients below; it will not be "
		    "tried again for them.\n\n", d->h->list);
	else
		fprintf(out, "Your message to the list %s has not yet been "
		    "delivered\nto the recipients below. It is still being "
		    "retried; you need\nnot send it again.\n\n", d->h->list);
	for (i = 0; i < d->n; i++)
		fprintf(out, "<%s>: %s\n", d->r[i]->addr, d->r[i]->reply[0] ?
		    d->r[i]->reply : "no reply");
	fputc('\n', out);
}

static void
write_status(const struct dsn_report *d, FILE *out, const char *boundary)
{
	char date[64], buf[16];
	const struct rcpt_status *r;
	size_t i;

	msghead_date((time_t)d->h->arrival_sec, date, sizeof(date));
	fprintf(out, "--%s\nContent-Description: Delivery report\n"
	    "Content-Type: message/delivery-status\n\n"
	    "Reporting-MTA: dns; %s\nX-Listq-Queue-ID: %s\n"
	    "Arrival-Date: %s\n", boundary, d->reporting_mta, d->h->id, date);
	for (i = 0; i < d->n; i++) {
		r = d->r[i];
		fprintf(out, "\nFinal-Recipient: rfc822; %s\nAction: %s\n"
		    "Status: %s\n", r->addr, d->kind == DSN_FAILED ? "failed" :
		    "delayed", status_of(r, d->kind, buf));
		if (r->code != 0 && d->remote_mta != NULL)
			fprintf(out, "Remote-MTA: dns; %s\n", d->remote_mta);
		if (r->code != 0)
			fprintf(out, "Diagnostic-Code: smtp; %s\n", r->reply);
		else if (r->reply[0] != '\0')
			fprintf(out, "Diagnostic-Code: X-Listq; %s\n", r->reply);
		if (d->kind == DSN_DELAYED) {
			msghead_date(d->retry_until, date, sizeof(date));
			fprintf(out, "Will-Retry-Until: %s\n", date);
		}
	}
	fputc('\n', out);
}

int
dsn_compose(const struct dsn_report *d, FILE *out)
{
	char boundary[128];

	snprintf(boundary, sizeof(boundary), "%s.%lld/%s", d->h->id,
	    (long long)d->now, d->reporting_mta);
	write_headers(d, out, boundary);
	write_text(d, out, boundary);
	write_status(d, out, boundary);
	fprintf(out, "--%s\nContent-Description: Undelivered Message Headers\n"
	    "Content-Type: text/rfc822-headers\n\n%s\n--%s--\n", boundary,
	    d->headers != NULL ? d->headers : "", boundary);
	return ferror(out) ? -1 : 0;
}

int
dsn_queue(const struct dsn_report *d, int spoolfd, int tmpfd, uid_t uid,
    gid_t gid, char id[QID_SIZE])
{
	struct entry_header h;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc, saved;

	memset(&h, 0, sizeof(h));
	strlcpy(h.command, "send", sizeof(h.command));
	strlcpy(h.list, d->h->list, sizeof(h.list));
	strlcpy(h.rcpt, d->to, sizeof(h.rcpt));
	if ((f = open_memstream(&text, &len)) == NULL)
		return -1;
	rc = dsn_compose(d, f);
	if (fclose(f) != 0 || rc == -1) {
		free(text);
		return -1;
	}
	rc = enqueue_message(spoolfd, tmpfd, &h, text, len, uid, gid, id);
	saved = errno;
	free(text);
	errno = saved;
	return rc;
}
