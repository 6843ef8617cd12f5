/*
 * SPDX-License-Identifier: ISC
 *
 * Subscribing and unsubscribing by mail, with double opt-in: a mail to
 * name-request whose Subject starts with "subscribe" or "unsubscribe"
 * sends one confirmation to its From: address, with a token (token.c)
 * for the list, the action, the pending request and its expiry; a reply
 * carrying the token completes the request.
 *
 * Invariants: a confirmation goes only to the address to be changed,
 * never to a null or robot sender or a list's own address; at most one
 * request per address and list is pending; an address gets at most
 * subscribe_confirm_daily confirmations a day over all lists and all get
 * at most subscribe_confirm_hourly an hour (.sent, a flock'd ledger);
 * the members file changes only through list_file_edit() under the
 * list's flock, once per request: the pending record is unlinked before
 * the change, so a replayed token finds nothing.  Failure modes: every
 * refusal is one log line with the request's queue id and changes
 * nothing; a crash between the unlink and the edit loses that request
 * (the member asks again), never doubles it.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "log.h"
#include "notice.h"
#include "number.h"
#include "qid.h"
#include "settings.h"
#include "spool.h"
#include "subscribe.h"

#define SENT		SPOOL_SUBSCRIBE "/.sent"

struct pending {
	char	 list[LIST_NAME_MAX + 1];
	char	 action[TOKEN_ACTION_MAX];
	char	 address[ADDR_MAX + 1];
	int64_t	 expires;
};

const char *
sub_command(const char *subject)
{
	static const char *const words[] = { "subscribe", "unsubscribe",
	    "help" };
	size_t i, n;

	subject += strspn(subject, " \t");
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		n = strlen(words[i]);
		if (strncasecmp(subject, words[i], n) == 0 &&
		    (subject[n] == '\0' || subject[n] == ' ' ||
		    subject[n] == '\t'))
			return words[i];
	}
	return NULL;
}

bool
sub_action(const char *action)
{
	return strcmp(action, "subscribe") == 0 ||
	    strcmp(action, "unsubscribe") == 0;
}

static int
sub_dir(struct worker *w)
{
	/* Made on first use: a spool older than subscriptions has none. */
	if (mkdirat(w->spoolfd, SPOOL_SUBSCRIBE, 0700) == -1 &&
	    errno != EEXIST)
		return -1;
	return spool_open_dir(w->spoolfd, SPOOL_SUBSCRIBE, LISTQ_UID,
	    LISTQ_GID);
}

/* Reads pending request id of dirfd; -1 (errno) missing or malformed. */
static int
pending_read(int dirfd, const char *id, struct pending *p)
{
	char line[ADDR_MAX + 32], *v;
	const char *end;
	uint64_t e = 0;
	int fd, got = 0;
	FILE *f;

	memset(p, 0, sizeof(*p));
	if ((fd = openat(dirfd, id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return -1;
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if ((v = strstr(line, ": ")) == NULL)
			continue;
		*v = '\0';
		v += 2;
		if (strcmp(line, "list") == 0)
			got |= 1 * (strlcpy(p->list, v, sizeof(p->list)) <
			    sizeof(p->list));
		else if (strcmp(line, "action") == 0)
			got |= 2 * (strlcpy(p->action, v, sizeof(p->action)) <
			    sizeof(p->action));
		else if (strcmp(line, "address") == 0)
			got |= 4 * (strlcpy(p->address, v,
			    sizeof(p->address)) < sizeof(p->address));
		else if (strcmp(line, "expires") == 0 &&
		    number_scan(v, INT64_MAX, &e, &end) == 0 && *end == '\0')
			got |= 8;
	}
	fclose(f);
	p->expires = (int64_t)e;
	if (got != 15) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/*
 * Is a request of addr to list pending?  Removes the expired ones it
 * passes (logged), so that they do not block a new request.
 */
static bool
pending_for(int dirfd, const char *list, const char *addr, time_t now)
{
	struct dirent *de;
	struct pending p;
	bool found = false;
	DIR *d;
	int fd = dup(dirfd);

	if (fd == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return true;	/* cannot tell: send nothing */
	}
	while (!found && (de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name) ||
		    pending_read(dirfd, de->d_name, &p) == -1)
			continue;
		if (p.expires <= (int64_t)now) {
			if (unlinkat(dirfd, de->d_name, 0) == 0)
				log_msg(LOG_INFO, de->d_name, "list=%s, %s of "
				    "<%s> expired unconfirmed", p.list,
				    p.action, p.address);
			continue;
		}
		found = strcmp(p.list, list) == 0 &&
		    address_equal(p.address, addr);
	}
	closedir(d);
	return found;
}

/* May anything be sent to addr: no robot's, no list's own address? */
static const char *
unanswerable(const struct list_conf *lc, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (addr[0] == '\0')
		return "no From: address";
	if (!notice_addr_answerable(addr) || address_equal(addr, lc->address) ||
	    (at != NULL && at - addr >= 8 &&
	    strncasecmp(at - 8, "-request", 8) == 0))
		return "From: is a robot's or a list's own address";
	return NULL;
}

/* The refusals that need no spool: robots, list roles, no change. */
static const char *
ask_refused(const struct list_conf *lc, const char *action, const char *addr)
{
	struct addr_list members;
	const char *why;
	char err[256];
	bool member;
	size_t bad;

	if ((why = unanswerable(lc, addr)) != NULL)
		return why;
	if (strcmp(action, "subscribe") == 0 &&
	    lc->subscribe_policy == SUBSCRIBE_CLOSED)
		return "the list is closed (subscribe_policy = closed)";
	if (list_addresses(LISTDIR, lc->name, "members", &members, &bad, err,
	    sizeof(err)) == -1)
		return "the members file cannot be read";
	addr_list_sort(&members);
	member = addr_list_has(&members, addr);
	addr_list_free(&members);
	if (strcmp(action, "subscribe") == 0 && member)
		return "already a member";
	if (strcmp(action, "unsubscribe") == 0 && !member)
		return "not a member";
	return NULL;
}

/* The confirmation's text and Subject carry the token. */
static int
send_confirmation(struct worker *w, const struct list_conf *lc,
    const char *action, const char *addr, const char *token, char *nid)
{
	char subject[TOKEN_MAX + 16], *text = NULL;
	const char *domain = address_domain(lc->address);
	size_t len = 0;
	FILE *f;
	int rc;

	if ((f = open_memstream(&text, &len)) == NULL)
		return -1;
	fprintf(f, "Someone, perhaps you, asked to %s the address\n  %s\n"
	    "%s the list %s.\n\nTo confirm, reply to this message keeping "
	    "its Subject, or send a\nmessage to %s-request@%s with this "
	    "Subject:\n  confirm %s\n\nIf you did not ask, ignore this "
	    "message: nothing changes, and the\nrequest expires by itself.  "
	    "The list's owners are %s-owner@%s.\n", action, addr,
	    strcmp(action, "subscribe") == 0 ? "to" : "from", lc->address,
	    lc->name, domain, token, lc->name, domain);
	if (fclose(f) != 0) {
		free(text);
		return -1;
	}
	snprintf(subject, sizeof(subject), "confirm %s", token);
	rc = notice_plain(w->spoolfd, lc, addr, subject, text, nid);
	free(text);
	return rc;
}

/* Within the caps?  Logs the refusal; true when one may go. */
static bool
within_caps(struct worker *w, const char *rid, const char *addr)
{
	const struct config *c = &w->ctx->cfg;
	const struct ledger_limit lim = { c->subscribe_confirm_daily, 86400,
	    c->subscribe_confirm_hourly, 3600 };
	int rc, fd;

	if ((fd = sub_dir(w)) != -1)
		close(fd);	/* the ledger's directory */
	rc = notice_ledger(w->spoolfd, SENT, addr, time(NULL), &lim);

	if (rc == 1)
		log_msg(LOG_WARNING, rid, "no confirmation to <%s>: "
		    "subscribe_confirm_daily (%u) reached", addr,
		    c->subscribe_confirm_daily);
	else if (rc == 2)
		log_msg(LOG_WARNING, rid, "no confirmation to <%s>: "
		    "subscribe_confirm_hourly (%u) reached", addr,
		    c->subscribe_confirm_hourly);
	else if (rc == -1)
		log_msg(LOG_ERR, rid, "no confirmation to <%s>: %s: %s", addr,
		    SENT, strerror(errno));
	return rc == 0;
}

static int
pending_write(int dirfd, const char *id, const struct pending *p)
{
	char buf[LIST_NAME_MAX + ADDR_MAX + 128];
	int n;

	n = snprintf(buf, sizeof(buf), "list: %s\naction: %s\naddress: %s\n"
	    "expires: %" PRId64 "\n", p->list, p->action, p->address,
	    p->expires);
	return durable_replace(dirfd, id, buf, (size_t)n);
}

/* The answer to "help": how to join and leave; within the caps. */
static void
send_help(struct worker *w, const char *rid, const struct list_conf *lc,
    const char *addr)
{
	char subject[ADDR_MAX + 32], text[1024], nid[QID_SIZE];
	const char *why, *domain = address_domain(lc->address);

	if ((why = unanswerable(lc, addr)) != NULL) {
		log_msg(LOG_WARNING, rid, "list=%s, help request ignored: %s "
		    "(<%s>)", lc->name, why, addr);
		return;
	}
	if (!within_caps(w, rid, addr))
		return;
	snprintf(subject, sizeof(subject), "Help for %s", lc->address);
	snprintf(text, sizeof(text), "This is the list %s.\n\nWrite to "
	    "%s-request@%s with one of these as the Subject:\n"
	    "  subscribe     to join (a confirmation comes back)\n"
	    "  unsubscribe   to leave (a confirmation comes back)\n"
	    "  help          for this text\n\nThe list's owners are "
	    "%s-owner@%s.\n", lc->address, lc->name, domain, lc->name,
	    domain);
	if (notice_plain(w->spoolfd, lc, addr, subject, text, nid) == -1)
		log_msg(LOG_ERR, rid, "list=%s, no help to <%s>: %s",
		    lc->name, addr, strerror(errno));
	else
		log_msg(LOG_INFO, rid, "list=%s, help %s to <%s>", lc->name,
		    nid, addr);
}

void
sub_ask(struct worker *w, const char *rid, const struct list_conf *lc,
    const char *action, const char *addr,
    const unsigned char key[TOKEN_KEY_LEN])
{
	char tok[TOKEN_MAX], nid[QID_SIZE];
	time_t now = time(NULL);
	const char *why;
	struct pending p;
	struct token t;
	int dirfd;

	if (strcmp(action, "help") == 0) {
		send_help(w, rid, lc, addr);
		return;
	}
	if ((why = ask_refused(lc, action, addr)) != NULL) {
		log_msg(LOG_WARNING, rid, "list=%s, %s request ignored: %s "
		    "(<%s>)", lc->name, action, why, addr);
		return;
	}
	if ((dirfd = sub_dir(w)) == -1) {
		log_msg(LOG_ERR, rid, "%s/%s: %s", SPOOLDIR, SPOOL_SUBSCRIBE,
		    strerror(errno));
		return;
	}
	if (pending_for(dirfd, lc->name, addr, now))
		log_msg(LOG_WARNING, rid, "list=%s, no confirmation to <%s>: "
		    "one is pending", lc->name, addr);
	else if (within_caps(w, rid, addr)) {
		memset(&p, 0, sizeof(p));
		strlcpy(p.list, lc->name, sizeof(p.list));
		strlcpy(p.action, action, sizeof(p.action));
		strlcpy(p.address, addr, sizeof(p.address));
		p.expires = (int64_t)now + w->ctx->cfg.subscribe_lifetime;
		memset(&t, 0, sizeof(t));
		strlcpy(t.action, action, sizeof(t.action));
		strlcpy(t.id, rid, sizeof(t.id));
		t.expires = p.expires;
		token_make(key, lc->name, &t, tok);
		if (pending_write(dirfd, rid, &p) == -1 ||
		    send_confirmation(w, lc, action, addr, tok, nid) == -1) {
			log_msg(LOG_ERR, rid, "list=%s, no confirmation to "
			    "<%s>: %s", lc->name, addr, strerror(errno));
			unlinkat(dirfd, rid, 0);
		} else
			log_msg(LOG_NOTICE, rid, "list=%s, %s confirmation %s "
			    "to <%s>", lc->name, action, nid, addr);
	}
	close(dirfd);
}

/* The change itself, under the list's flock, by the one writer. */
static int
apply_change(const struct pending *p)
{
	struct addr_list one = { NULL, 0 }, none = { NULL, 0 };
	size_t gone = 0, added = 0;
	char path[1024];
	int fd, rc = -1, saved;

	snprintf(path, sizeof(path), "%s/%s", LISTDIR, p->list);
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1)
		return -1;
	if (flock(fd, LOCK_EX) == 0 && addr_list_add(&one, p->address) == 0) {
		if (strcmp(p->action, "subscribe") == 0)
			rc = list_file_edit(fd, "members", &none, &one, &gone,
			    &added);
		else if ((rc = list_file_edit(fd, "members", &one, &none,
		    &gone, &added)) == 0)
			rc = list_file_edit(fd, "disabled", &one, &none, &gone,
			    &added);
	}
	saved = errno;
	addr_list_free(&one);
	close(fd);
	errno = saved;
	return rc;
}

static void
send_result(struct worker *w, const char *rid, const struct list_conf *lc,
    const struct pending *p)
{
	char subject[ADDR_MAX + 64], text[1024], nid[QID_SIZE];
	bool in = strcmp(p->action, "subscribe") == 0;

	snprintf(subject, sizeof(subject), in ? "Welcome to %s" :
	    "Goodbye from %s", lc->address);
	snprintf(text, sizeof(text), in ? "%s is now a member of %s.\n\n"
	    "Post by writing to %s.  To leave, write to %s-request@%s with\n"
	    "the Subject \"unsubscribe\".\n" : "%s is no longer a member of "
	    "%s.\n\nTo join again, write to %s-request@%s with the Subject\n"
	    "\"subscribe\".\n", p->address, lc->address, in ? lc->address :
	    lc->name, in ? lc->name : address_domain(lc->address),
	    address_domain(lc->address));
	if (notice_plain(w->spoolfd, lc, p->address, subject, text, nid) == -1)
		log_msg(LOG_ERR, rid, "list=%s, no %s notice to <%s>: %s",
		    lc->name, in ? "welcome" : "goodbye", p->address,
		    strerror(errno));
}

void
sub_confirm(struct worker *w, const char *rid, const struct list_conf *lc,
    const struct token *t)
{
	const char *why = NULL;
	struct pending p;
	int dirfd;

	if (t->expires <= (int64_t)time(NULL))
		why = "token expired";
	else if ((dirfd = sub_dir(w)) == -1)
		why = strerror(errno);
	else {
		if (pending_read(dirfd, t->id, &p) == -1 ||
		    strcmp(p.list, lc->name) != 0 ||
		    strcmp(p.action, t->action) != 0 ||
		    p.expires != t->expires || unlinkat(dirfd, t->id, 0) == -1)
			why = "no such pending request (confirmed already, "
			    "or expired)";
		close(dirfd);
	}
	if (why != NULL) {
		log_msg(LOG_WARNING, rid, "list=%s, confirmation ignored: %s "
		    "(%s of %s)", lc->name, why, t->action, t->id);
		return;
	}
	if (apply_change(&p) == -1) {
		log_msg(LOG_ERR, rid, "list=%s, %s of <%s> failed: %s",
		    lc->name, p.action, p.address, strerror(errno));
		return;
	}
	log_msg(LOG_NOTICE, rid, "list=%s, <%s> %s by confirmation (request "
	    "%s)", lc->name, p.address, strcmp(p.action, "subscribe") == 0 ?
	    "subscribed" : "unsubscribed", t->id);
	send_result(w, rid, lc, &p);
}
