/*
 * SPDX-License-Identifier: ISC
 *
 * Bounce processing of a list: a message piped to `bounces LIST` is
 * parsed (bounce.c); each failed recipient that is a member of the list
 * is recorded against that member.  On a list with verp = yes, the
 * VERP address the MTA delivered the bounce to (the topmost
 * Delivered-To, never a header below it) names the member and
 * overrides whatever the report says.  A member reaching the score
 * threshold gets a VERP probe; a bounce delivered to a probe's address
 * disables its member and tells the owners, once.  A report that names
 * no member is logged and dropped; anything else goes to the owners.
 *
 * Invariants: only members are scored or disabled, whatever the report
 * or its headers say; every outcome has a log line saying how the
 * bounce was attributed (dsn, qmail, exim, text, verp, probe) or why it
 * was not; a malformed report yields no hit and is forwarded, never a
 * crash; at most BOUNCE_MAX bytes of a message are read.
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
#include "probe.h"
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
tell_owners(struct worker *w, const struct list_conf *lc, const char *member)
{
	char from[ADDR_MAX + 16], subject[400], text[2048];

	snprintf(from, sizeof(from), "%s-bounces@%s", lc->name,
	    address_domain(lc->address));
	snprintf(subject, sizeof(subject), "%s: %s disabled after bounces",
	    lc->name, member);
	snprintf(text, sizeof(text), "The member %s of the list %s has "
	    "reached the bounce score\nthreshold, and the probe then sent to "
	    "it bounced too: it no longer\nreceives list mail. The member "
	    "stays subscribed; `listq members %s\nenable %s` turns delivery "
	    "back on.\n", member, lc->address, lc->name, member);
	if (notify_owners(w, lc->name, from, subject, text) == -1)
		log_msg(LOG_ERR, NULL, "list %s: notice to the owners: %s",
		    lc->name, strerror(errno));
}

/*
 * The probe: a short notice to the member from the envelope sender
 * name-bounces<delim>probe-TOKEN@domain, which only its own bounce
 * comes back to.
 */
static void
send_probe(struct worker *w, const struct entry_header *h,
    const struct list_conf *lc, const char *member, const char *token)
{
	char sender[ADDR_MAX + 1], from[ADDR_MAX + 16], subject[200],
	    text[2048];

	if ((size_t)snprintf(sender, sizeof(sender), "%s-bounces%c" PROBE_TAG
	    "%s@%s", lc->name, w->ctx->cfg.recipient_delimiter[0], token,
	    address_domain(lc->address)) >= sizeof(sender) ||
	    !address_valid(sender)) {
		log_msg(LOG_ERR, h->id, "list %s: no probe to %s: the list's "
		    "domain is too long for a probe address", lc->name, member);
		return;
	}
	snprintf(from, sizeof(from), "%s-owner@%s", lc->name,
	    address_domain(lc->address));
	snprintf(subject, sizeof(subject), "%s: a probe from the list server",
	    lc->name);
	snprintf(text, sizeof(text), "Mail from the list %s to you, %.254s, "
	    "has bounced lately.\nThis message checks that your address "
	    "still works. If you read\nit, nothing else is needed: you stay "
	    "subscribed. If it bounces too,\nthe list stops sending to you "
	    "until an owner turns delivery back on.\n", lc->address, member);
	if (notify_member(w, lc->name, sender, member, from, subject,
	    text) == -1) {
		log_msg(LOG_ERR, h->id, "list %s: probe to %s not queued: %s",
		    lc->name, member, strerror(errno));
		return;
	}
	log_msg(LOG_INFO, h->id, "list %s: bounce score of %s reached, probe "
	    "sent from <%s>", lc->name, member, sender);
}

/* Records one bounce of a member; true when it was recorded. */
static bool
record(struct worker *w, const struct entry_header *h,
    const struct list_conf *lc, const char *member,
    const struct bounce_hit *hit)
{
	char err[512], token[PROBE_TOKEN_LEN + 1];
	int rc = bounce_record(LISTDIR, lc->name, member, hit, &w->ctx->cfg,
	    time(NULL), token, err, sizeof(err));

	if (rc == -1) {
		log_msg(LOG_ERR, h->id, "bounce for %s not recorded: %s",
		    member, err);
		return false;
	}
	log_msg(LOG_INFO, h->id, "bounce: list=%s, member=<%s>, status=%s, "
	    "%s, attributed by %s", lc->name, member, hit->status,
	    hit->kind == BOUNCE_HARD ? "hard" : "soft", hit->how);
	if (rc == 1)
		send_probe(w, h, lc, member, token);
	return true;
}

/* The bounce of a probe: its member is disabled, the owners told once. */
static void
probe_bounced(struct worker *w, const struct entry_header *h,
    const struct list_conf *lc, const char *token)
{
	char err[512], member[ADDR_MAX + 1];
	int rc = bounce_probe_failed(LISTDIR, lc->name, token, &w->ctx->cfg,
	    time(NULL), member, sizeof(member), err, sizeof(err));

	if (rc == -1)
		log_msg(LOG_ERR, h->id, "probe bounce not recorded: %s", err);
	else if (rc == 0)
		log_msg(LOG_WARNING, h->id, "list %s: bounce to an unknown, "
		    "used or expired probe address: dropped", lc->name);
	else if (rc == 2)
		log_msg(LOG_INFO, h->id, "list %s: probe to %s bounced; not a "
		    "member, or disabled already", lc->name, member);
	else {
		log_msg(LOG_WARNING, h->id, "list %s: probe to %s bounced: "
		    "member disabled", lc->name, member);
		tell_owners(w, lc, member);
	}
}

/* Hits and VERP together: the members to record, recorded. */
static size_t
attribute(struct worker *w, const struct entry_header *h,
    const struct list_conf *lc, struct bounce_hit *hits, size_t n,
    const char *verp)
{
	struct bounce_hit v;
	struct addr_list members;
	char err[256];
	size_t bad, i, done = 0;

	if (list_addresses(LISTDIR, lc->name, "members", &members, &bad, err,
	    sizeof(err)) == -1) {
		log_msg(LOG_ERR, h->id, "bounce not attributed: %s", err);
		return 0;
	}
	if (verp[0] != '\0') {
		v = n > 0 ? hits[0] : (struct bounce_hit){ .status = "5.0.0",
		    .kind = BOUNCE_HARD };
		strlcpy(v.addr, verp, sizeof(v.addr));
		v.how = "verp";
		hits = &v;
		n = 1;
	}
	for (i = 0; i < n; i++) {
		if (is_member(&members, hits[i].addr))
			done += record(w, h, lc, hits[i].addr, &hits[i]);
		else
			log_msg(LOG_INFO, h->id, "bounce for <%s> (%s), not a "
			    "member of %s: ignored", hits[i].addr, hits[i].how,
			    lc->name);
	}
	addr_list_free(&members);
	return done + (n > 0 && done == 0);
}

int
incoming_bounce(struct worker *w, const struct entry_header *h, int fd,
    size_t body, const struct list_conf *lc)
{
	struct bounce_hit hits[BOUNCE_HITS];
	char local[LIST_NAME_MAX + 16], verp[ADDR_MAX + 1] = "",
	    ext[ADDR_MAX + 1], token[PROBE_TOKEN_LEN + 1];
	char *msg, *head;
	bool have_ext = false;
	size_t n, len;

	if (lc == NULL)
		return 0;	/* no list: nothing to attribute it to */
	snprintf(local, sizeof(local), "%s-bounces", lc->name);
	if ((head = msghead_read(fd, body)) != NULL) {
		have_ext = bounce_envelope_ext(head, local,
		    address_domain(lc->address),
		    w->ctx->cfg.recipient_delimiter[0], ext, sizeof(ext));
		free(head);
	}
	if (have_ext && probe_token_of(ext, token)) {
		probe_bounced(w, h, lc, token);
		return 1;
	}
	if (have_ext && lc->verp && !bounce_verp_member(ext, verp,
	    sizeof(verp)))
		verp[0] = '\0';
	if ((msg = msghead_pread(fd, body, BOUNCE_MAX, &len)) == NULL)
		return 0;
	n = bounce_parse(msg, hits, BOUNCE_HITS);
	free(msg);
	if (n == 0 && verp[0] == '\0') {
		log_msg(LOG_INFO, h->id, "not a recognizable bounce: forwarded "
		    "to the owners of %s", lc->name);
		return 0;
	}
	return attribute(w, h, lc, hits, n, verp) > 0;
}
