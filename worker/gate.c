/*
 * SPDX-License-Identifier: ISC
 *
 * The posting gate: post_policy and nonmember_action of a list decide
 * whether a post goes to the members, waits for a moderator in
 * moderation/, is rejected with a notice or is discarded; and the
 * decisions moderators mail to name-request with a token; the
 * subscription requests and confirmations mailed there go to
 * subscribe.c.
 *
 * Who posted is taken from the envelope sender (the MTA's "From " line
 * or Return-Path) and from the From: address: either being a member, an
 * owner, a moderator or in "accept" is enough, as in Mailman.  Both can
 * be forged; the gate keeps strangers' mail from every member's inbox,
 * it does not authenticate anyone (see SECURITY.md).
 *
 * Invariants: 10 of the contract (a list config without post_policy is
 * members + hold); 9 (a decision by mail needs a token only listqd can
 * make, for that list, that post and that action, unexpired, from a
 * moderator's From; it is single use because the post is gone once
 * decided); 3 (only the owner of a held post's bucket applies a decision:
 * a worker that is not drops it beside the post for the owner).
 * Failure modes: a list file that cannot be read, a full disk: the post
 * stays queued and is gated again later, never delivered unchecked.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "admin_ops.h"
#include "durable.h"
#include "gate.h"
#include "log.h"
#include "moderation.h"
#include "msghead.h"
#include "notice.h"
#include "settings.h"
#include "spool.h"
#include "subscribe.h"
#include "token.h"

enum { WHO_STRANGER, WHO_MEMBER, WHO_MODERATOR };

struct poster {
	char	from[ADDR_MAX + 1];	/* From: */
	char	sender[ADDR_MAX + 1];	/* envelope */
	int	automatic;		/* Auto-Submitted, Precedence bulk */
};

/* The envelope sender: the MTA's "From " line, else Return-Path. */
static void
envelope_sender(int fd, const char *head, char *out, size_t len)
{
	char buf[ENTRY_HEADER_MAX + 1024], *nl, *sp;
	struct entry_header h;
	const char *why, *from = head, *v;
	size_t body;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	out[0] = '\0';
	if (n > 0 && entry_header_parse(buf, (size_t)n < ENTRY_HEADER_MAX ?
	    (size_t)n : ENTRY_HEADER_MAX, &h, &body, &why) == 0 &&
	    body + 5 < (size_t)n && memcmp(buf + body, "From ", 5) == 0) {
		buf[n] = '\0';
		if ((nl = strchr(buf + body, '\n')) != NULL)
			*nl = '\0';
		if ((sp = strchr(buf + body + 5, ' ')) != NULL)
			*sp = '\0';
		if (address_valid(buf + body + 5)) {
			strlcpy(out, buf + body + 5, len);
			return;
		}
	}
	if (head != NULL && (v = msghead_next(&from, "Return-Path")) != NULL) {
		char line[ADDR_MAX + 8];

		strlcpy(line, v, sizeof(line));
		line[strcspn(line, "\r\n")] = '\0';
		if (notice_first_address(line, out, len) == -1)
			out[0] = '\0';
	}
}

/*
 * A header's value, unfolded (continuation lines joined by a space) and
 * trimmed, into out ("" when there is none): a client replying to a
 * notice folds its long Subject as it likes.
 */
static void
header_value(const char *head, const char *name, char *out, size_t len)
{
	const char *from = head, *v;
	size_t n = 0, k;

	out[0] = '\0';
	if (head == NULL || (v = msghead_next(&from, name)) == NULL)
		return;
	for (;;) {
		while (*v == ' ' || *v == '\t')
			v++;
		k = strcspn(v, "\r\n");
		if (n > 0 && n + 1 < len)
			out[n++] = ' ';
		if (n + k >= len)
			k = len - n - 1;
		memcpy(out + n, v, k);
		out[n += k] = '\0';
		v += strcspn(v, "\n");
		if (*v == '\0' || (v[1] != ' ' && v[1] != '\t'))
			return;
		v++;
	}
}

static void
poster_of(int fd, const char *head, struct poster *p)
{
	char v[ADDR_MAX + 256];

	memset(p, 0, sizeof(*p));
	envelope_sender(fd, head, p->sender, sizeof(p->sender));
	header_value(head, "From", v, sizeof(v));
	if (v[0] == '\0' || notice_first_address(v, p->from,
	    sizeof(p->from)) == -1)
		p->from[0] = '\0';
	header_value(head, "Auto-Submitted", v, sizeof(v));
	p->automatic = v[0] != '\0' && strncasecmp(v, "no", 2) != 0;
	header_value(head, "Precedence", v, sizeof(v));
	p->automatic |= strcasecmp(v, "bulk") == 0 ||
	    strcasecmp(v, "junk") == 0 || strcasecmp(v, "list") == 0;
}

/* Is either address of p in LISTDIR/<list>/<file>?  -1: unreadable. */
static int
listed(const char *list, const char *file, const struct poster *p)
{
	struct addr_list l = { NULL, 0 };
	char err[512];
	size_t bad, i;
	int found = 0;

	if (list_addresses(LISTDIR, list, file, &l, &bad, err,
	    sizeof(err)) == -1)
		return errno == ENOENT ? 0 : -1;
	for (i = 0; i < l.n && !found; i++)
		found = (p->from[0] != '\0' && address_equal(l.v[i], p->from)) ||
		    (p->sender[0] != '\0' && address_equal(l.v[i], p->sender));
	addr_list_free(&l);
	return found;
}

/* The moderators: "moderators", or the owners when it has none. */
static int
moderators(const char *list, struct addr_list *out)
{
	char err[512];
	size_t bad;

	memset(out, 0, sizeof(*out));
	if (list_addresses(LISTDIR, list, "moderators", out, &bad, err,
	    sizeof(err)) == -1 && errno != ENOENT)
		return -1;
	if (out->n > 0)
		return 0;
	addr_list_free(out);
	return list_addresses(LISTDIR, list, "owners", out, &bad, err,
	    sizeof(err));
}

/* WHO_*, or -1 when a list file cannot be read. */
static int
who_posted(const struct list_conf *lc, const struct poster *p)
{
	struct addr_list mods;
	size_t i;
	int r, found = 0;

	if (moderators(lc->name, &mods) == -1)
		return -1;
	for (i = 0; i < mods.n && !found; i++)
		found = (p->from[0] != '\0' && address_equal(mods.v[i],
		    p->from)) || (p->sender[0] != '\0' &&
		    address_equal(mods.v[i], p->sender));
	addr_list_free(&mods);
	if (found || (r = listed(lc->name, "owners", p)) == 1)
		return WHO_MODERATOR;
	if (r == -1 || (r = listed(lc->name, "members", p)) == -1)
		return -1;
	if (r == 1)
		return WHO_MEMBER;
	if ((r = listed(lc->name, "accept", p)) == -1)
		return -1;
	return r == 1 ? WHO_MEMBER : WHO_STRANGER;
}

/* What the policy says for who: -1 pass, else a nonmember_action. */
static int
policy_action(const struct list_conf *lc, int who, const char **reason)
{
	switch (lc->post_policy) {
	case POLICY_OPEN:
		return -1;
	case POLICY_MODERATED:
		*reason = "the list is moderated";
		return who == WHO_STRANGER ? lc->nonmember_action :
		    NONMEMBER_HOLD;
	case POLICY_ANNOUNCE:
		*reason = "only moderators post to this list";
		return who == WHO_MODERATOR ? -1 : lc->nonmember_action;
	default:
		*reason = "the poster is not a member";
		return who == WHO_STRANGER ? lc->nonmember_action : -1;
	}
}

/* The token key; made here if listqd could not at its start (disk full). */
static int
load_key(struct worker *w, unsigned char key[TOKEN_KEY_LEN], const char *id)
{
	if (token_secret_load(w->spoolfd, key) == 0 || (errno == ENOENT &&
	    token_secret_create(w->spoolfd) == 0 &&
	    token_secret_load(w->spoolfd, key) == 0))
		return 0;
	log_msg(LOG_ERR, id, "the token secret %s/%s cannot be read: %s",
	    SPOOLDIR, TOKEN_SECRET, strerror(errno));
	return -1;
}

static enum gate_verdict
hold(struct worker *w, const struct entry_header *h, int bucketfd, int fd,
    size_t body, const struct list_conf *lc, struct held *r)
{
	unsigned char key[TOKEN_KEY_LEN];
	struct addr_list mods;
	int n;

	if (load_key(w, key, h->id) == -1)
		return GATE_LATER;
	if (moderators(lc->name, &mods) == -1) {
		log_msg(LOG_ERR, h->id, "list %s: its moderators cannot be "
		    "read: %s", lc->name, strerror(errno));
		explicit_bzero(key, sizeof(key));
		return GATE_LATER;
	}
	/* The notice first: a crash before the move repeats it at most. */
	n = notice_held(w->spoolfd, lc, h->id, fd, body, r, key, &mods);
	explicit_bzero(key, sizeof(key));
	addr_list_free(&mods);
	if (n == -1 || mod_take(w->spoolfd, bucketfd, h->id, r) == -1) {
		log_msg(LOG_ERR, h->id, "cannot hold for moderation: %s",
		    strerror(errno));
		return GATE_LATER;
	}
	log_msg(LOG_NOTICE, h->id, "held for moderation: list=%s, from=<%s>, "
	    "sender=<%s>, reason=%s, %d notice%s, expires %" PRId64, lc->name,
	    r->poster, r->sender, r->reason, n, n == 1 ? "" : "s", r->expires);
	return GATE_TAKEN;
}

enum gate_verdict
gate_post(struct worker *w, const struct entry_header *h, int bucketfd,
    int fd, size_t body, const char *head, const struct list_conf *lc)
{
	const char *reason = "";
	struct poster p;
	struct held r;
	int who, action;

	if (mod_approved(bucketfd, h->id)) {
		log_msg(LOG_INFO, h->id, "approved post: through the gate");
		return GATE_PASS;
	}
	if (lc->post_policy == POLICY_OPEN)
		return GATE_PASS;
	poster_of(fd, head, &p);
	if ((who = who_posted(lc, &p)) == -1) {
		log_msg(LOG_ERR, h->id, "list %s: its files cannot be read: %s; "
		    "gated again later", lc->name, strerror(errno));
		return GATE_LATER;
	}
	if ((action = policy_action(lc, who, &reason)) == -1)
		return GATE_PASS;
	memset(&r, 0, sizeof(r));
	strlcpy(r.list, lc->name, sizeof(r.list));
	strlcpy(r.poster, p.from[0] != '\0' ? p.from : p.sender,
	    sizeof(r.poster));
	/* No sender on record: nobody is ever answered about it. */
	if (!p.automatic)
		strlcpy(r.sender, p.sender, sizeof(r.sender));
	strlcpy(r.reason, reason, sizeof(r.reason));
	header_value(head, "Subject", r.subject, sizeof(r.subject));
	r.held = time(NULL);
	r.expires = r.held + (int64_t)w->ctx->cfg.moderation_lifetime;
	if (action == NONMEMBER_HOLD)
		return hold(w, h, bucketfd, fd, body, lc, &r);
	if (action == NONMEMBER_REJECT &&
	    notice_rejected(w->spoolfd, h->id, &r, reason) == -1)
		log_msg(LOG_ERR, h->id, "rejection notice not queued: %s",
		    strerror(errno));
	return mod_remove(bucketfd, h->id, action == NONMEMBER_REJECT ?
	    "rejected at the gate" : "discarded at the gate") == -1 ?
	    GATE_LATER : GATE_TAKEN;
}

/* Hands a checked decision to the owner of the post's bucket. */
static void
apply(struct worker *w, const char *rid, const struct token *t)
{
	char name[QID_SIZE + TOKEN_ACTION_MAX + 2];
	struct adm a;
	int fd;

	snprintf(name, sizeof(name), "%s.%s", t->id, t->action);
	if ((fd = openat(w->modfd, name, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600)) == -1) {
		log_msg(LOG_WARNING, rid, "%s of %s by mail ignored: %s", t->action,
		    t->id, errno == EEXIST ? "already decided" : strerror(errno));
		return;
	}
	fsync(fd);
	close(fd);
	durable_fsync_dir(w->modfd);
	log_msg(LOG_NOTICE, rid, "%s of %s by mail accepted", t->action, t->id);
	if (w->bucketfd[qid_bucket(t->id)] == -1)
		return;		/* its owner's sweep applies it */
	worker_adm(w, &a);
	mod_sweep(&a, time(NULL));
}

/*
 * A (un)subscription request: the address concerned is the From:, the
 * one a member's mail program writes and the only one told; a bounce
 * (null envelope sender) or an automatic mail asks nothing.
 */
static void
subscription_asked(struct worker *w, const char *rid, const char *head,
    const struct list_conf *lc, const char *action,
    const unsigned char key[TOKEN_KEY_LEN])
{
	char rp[ADDR_MAX + 8];
	struct poster p;

	poster_of(-1, head, &p);
	header_value(head, "Return-Path", rp, sizeof(rp));
	if (strcmp(rp, "<>") == 0 || p.automatic ||
	    (p.sender[0] != '\0' && !notice_addr_answerable(p.sender)))
		log_msg(LOG_WARNING, rid, "list=%s, %s request ignored: from "
		    "a null, robot or automatic sender", lc->name, action);
	else
		sub_ask(w, rid, lc, action, p.from, key);
}

void
gate_request(struct worker *w, const struct entry_header *h,
    const char *head, const struct list_conf *lc)
{
	unsigned char key[TOKEN_KEY_LEN];
	char subject[1024];
	const char *why;
	struct poster p;
	struct token t;
	struct held r;
	int rc;

	header_value(head, "Subject", subject, sizeof(subject));
	if (load_key(w, key, h->id) == -1)
		return;
	rc = token_find(key, lc->name, subject, &t, &why);
	if (rc == -1 && strcmp(why, "no token") == 0 &&
	    sub_command(subject) != NULL) {
		subscription_asked(w, h->id, head, lc, sub_command(subject),
		    key);
		rc = 1;
	} else if (rc == 0 && sub_action(t.action)) {
		sub_confirm(w, h->id, lc, &t);
		rc = 1;
	}
	explicit_bzero(key, sizeof(key));
	if (rc == 1)
		return;
	if (rc == -1) {
		log_msg(LOG_WARNING, h->id, "request to %s ignored: %s",
		    lc->name, why);
		return;
	}
	poster_of(-1, head, &p);
	p.sender[0] = '\0';	/* the From: of a moderator, not a robot's */
	if (strcmp(t.action, "approve") != 0 && strcmp(t.action, "reject") !=
	    0 && strcmp(t.action, "discard") != 0)
		why = "unknown action";
	else if (t.expires <= (int64_t)time(NULL))
		why = "token expired";
	else if (who_posted(lc, &p) != WHO_MODERATOR)
		why = "From: is not a moderator of the list";
	else if (mod_record_read(w->modfd, t.id, &r) == -1 ||
	    strcmp(r.list, lc->name) != 0 || r.expires != t.expires)
		why = "no such held post (decided already, or expired)";
	else {
		apply(w, h->id, &t);
		return;
	}
	log_msg(LOG_WARNING, h->id, "request to %s ignored: %s (%s of %s)",
	    lc->name, why, t.action, t.id);
}
