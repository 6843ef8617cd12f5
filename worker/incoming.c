/*
 * Bounce processing of a list: a message piped to `bounces LIST` is
 * parsed (bounce.c); each failed recipient that is a member of the list
 * is recorded against that member, a VERP address naming the member
 * overrides whatever the report says, and a member reaching the score
 * threshold is disabled and the owners told once.  A report that names
 * no member is logged and dropped; anything else goes to the owners.
 *
 * Invariants: every outcome has a log line saying how the bounce was
 * attributed (dsn, qmail, exim, text, verp) or why it was not; a
 * malformed report yields no hit and is forwarded, never a crash; at
 * most BOUNCE_MAX bytes of a message are read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "incoming.h"
#include "log.h"
#include "msghead.h"
#include "notify.h"
#include "settings.h"

static bool
is_member(const struct addr_list *members, const char *addr)
{
	size_t i;

	for (i = 0; i < members->n; i++)
		if (address_equal(members->v[i], addr))
			return true;
	return false;
}

static void
tell_owners(struct worker *w, const struct list_conf *lc, const char *member,
    const struct bounce_hit *hit)
{
	char from[ADDR_MAX + 16], subject[400], text[1024];

	snprintf(from, sizeof(from), "%s-bounces@%s", lc->name,
	    address_domain(lc->address));
	snprintf(subject, sizeof(subject), "%s: %s disabled after bounces",
	    lc->name, member);
	snprintf(text, sizeof(text), "The member %s of the list %s has "
	    "reached the bounce score\nthreshold and no longer receives list "
	    "mail. The member stays\nsubscribed; `listq members %s enable %s`"
	    " turns delivery back on.\n\nLast bounce: %s %s\n", member,
	    lc->address, lc->name, member, hit->status, hit->diag);
	if (notify_owners(w, lc->name, from, subject, text) == -1)
		log_msg(LOG_ERR, NULL, "list %s: notice to the owners: %s",
		    lc->name, strerror(errno));
}

/* Records one bounce; true when it was recorded. */
static bool
record(struct worker *w, const struct entry_header *h,
    const struct list_conf *lc, const char *member,
    const struct bounce_hit *hit)
{
	char err[512];
	int rc = bounce_record(LISTDIR, lc->name, member, hit, &w->ctx->cfg,
	    time(NULL), err, sizeof(err));

	if (rc == -1) {
		log_msg(LOG_ERR, h->id, "bounce for %s not recorded: %s",
		    member, err);
		return false;
	}
	log_msg(LOG_INFO, h->id, "bounce: list=%s, member=<%s>, status=%s, "
	    "%s, attributed by %s%s", lc->name, member, hit->status,
	    hit->kind == BOUNCE_HARD ? "hard" : "soft", hit->how,
	    rc == 1 ? ", member disabled" : "");
	if (rc == 1) {
		log_msg(LOG_WARNING, NULL, "list %s: member %s disabled after "
		    "bounces", lc->name, member);
		tell_owners(w, lc, member, hit);
	}
	return true;
}

/* Hits and VERP together: the members to record, recorded. */
static size_t
attribute(struct worker *w, const struct entry_header *h,
    const struct list_conf *lc, struct bounce_hit *hits, size_t n,
    const char *verp)
{
	struct addr_list members;
	char err[256];
	size_t bad, i, done = 0;

	if (verp[0] != '\0') {
		struct bounce_hit v = n > 0 ? hits[0] : (struct bounce_hit){
		    .status = "5.0.0", .kind = BOUNCE_HARD };

		v.how = "verp";
		return record(w, h, lc, verp, &v) ? 1 : 0;
	}
	if (list_addresses(LISTDIR, lc->name, "members", &members, &bad, err,
	    sizeof(err)) == -1) {
		log_msg(LOG_ERR, h->id, "bounce not attributed: %s", err);
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (is_member(&members, hits[i].addr))
			done += record(w, h, lc, hits[i].addr, &hits[i]);
		else
			log_msg(LOG_INFO, h->id, "bounce for <%s>, not a member "
			    "of %s: ignored", hits[i].addr, lc->name);
	}
	addr_list_free(&members);
	return done + (n > 0 && done == 0);
}

int
incoming_bounce(struct worker *w, const struct entry_header *h, int fd,
    size_t body, const struct list_conf *lc)
{
	struct bounce_hit hits[BOUNCE_HITS];
	char local[LIST_NAME_MAX + 16], verp[ADDR_MAX + 1] = "";
	char *msg, *head;
	size_t n, len;

	if ((msg = msghead_pread(fd, body, BOUNCE_MAX, &len)) == NULL)
		return 0;
	n = bounce_parse(msg, hits, BOUNCE_HITS);
	free(msg);
	snprintf(local, sizeof(local), "%s-bounces", lc->name);
	if ((head = msghead_read(fd, body)) != NULL) {
		if (!bounce_verp(head, local, address_domain(lc->address),
		    w->ctx->cfg.recipient_delimiter[0], verp, sizeof(verp)))
			verp[0] = '\0';
		free(head);
	}
	if (n == 0 && verp[0] == '\0') {
		log_msg(LOG_INFO, h->id, "not a recognizable bounce: forwarded "
		    "to the owners of %s", lc->name);
		return 0;
	}
	return attribute(w, h, lc, hits, n, verp) > 0;
}
