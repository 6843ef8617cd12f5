/*
 * SPDX-License-Identifier: ISC
 *
 * Delivery of due entries: expand, send, record, finish.
 *
 * For each entry of a batch: parse its header (an entry that cannot be
 * parsed goes to corrupt/), load its state or take the recipient snapshot
 * (post -> members, owner and bounces -> owners), send every recipient
 * still to be done in transactions of at most max_rcpts_per_transaction,
 * all entries of the batch in one SMTP session, then record each
 * recipient's outcome and log it.  An entry whose recipients are all
 * done leaves the spool (message first, then state); one with failed
 * recipients moves to hold/ with its state until DSNs exist; otherwise
 * its state is rewritten with the next attempt time.  An entry that a
 * session ending early never offered to the relay keeps its state as it
 * was, counts no attempt and is due again at once.
 *
 * Invariants: a recipient is sent again only if its last transaction did
 * not end with 2xx (invariant 4: each transaction's outcomes are made
 * durable as it ends -- appended to the state file, or the entry settled
 * -- before the next one starts); nothing leaves the spool without
 * a log line (invariants 5 and 7); message bodies are streamed from the
 * spool file by smtp.c, never held in memory (invariant 8): what is read
 * of a message before its session (the entry header and HEAD_MAX bytes
 * of message header) goes through one fixed buffer.  A post that its
 * list mitigates for DMARC is streamed instead from the copy that
 * mitigate.c writes, laid out like the entry (the one hook: dmarc_copy).
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "deliver.h"
#include "entry.h"
#include "gate.h"
#include "list.h"
#include "log.h"
#include "mitigate.h"
#include "msghead.h"
#include "incoming.h"
#include "notify.h"
#include "relay.h"
#include "settings.h"
#include "smtp.h"
#include "spool.h"
#include "state.h"

#define PREPEND_MAX	2048
#define ENVELOPE_MAX	1024	/* a longer "From " line is message text */

/*
 * One list as a batch read it: its configuration and, read when first
 * needed, its enabled members and its owners.  Every entry of a batch
 * is prepared in one pass before its session starts, so the files read
 * once for the batch are what the list held at each entry's snapshot;
 * the next batch reads them again, and a processed bounce report (which
 * may disable a member) makes the batch read the members again.  Freed
 * once the batch is prepared: it holds no more than one copy of each
 * list the batch posts to, for that pass only (invariant 8).
 */
enum { LIST_MEMBERS, LIST_OWNERS };

struct list_cache {
	struct list_cache *next;
	struct list_conf lc;
	struct addr_list  addrs[2];	/* LIST_MEMBERS (enabled), LIST_OWNERS */
	size_t		  bad[2];	/* invalid lines skipped */
	int		  read[2];
};

struct job {
	struct sched_entry e;
	int		 bucketfd;
	struct entry_header h;
	size_t		 body;		/* offset of the message in the file */
	struct state	 st;
	char		 prepend[PREPEND_MAX];
	char		 insert[160];	/* subject prefix, at insert_at */
	off_t		 insert_at;
	size_t		 first, count;	/* its transactions in the session */
	int		 skip;		/* nothing to send this time */
	int		 verp;		/* one transaction per recipient */
	int		 settled;	/* attempt over, state written */
	int		 snapshot;	/* recipients expanded just now */
	int		 unsaved;	/* st is newer than its state file */
	int		 had_state;	/* a state file was read for it */
	int		 fd;		/* the message, opened by prepare() for
					   the first transaction; -1 after */
	off_t		 fsize;		/* its size, by one fstat in prepare() */
	struct mitigated copy;		/* a DMARC-safe copy goes instead */
	char		*head;		/* its header section, during prepare() */
	off_t		 scanned;	/* bytes checked for 8-bit with it */
	int		 eight;		/* ... and found one */
	struct list_cache **lists;	/* the lists this batch has read */
};

struct session {
	struct smtp_msg	*msgs;
	char		**senders;	/* VERP senders, owned, one per msg */
	size_t		 n, cap;
	char		 relay[128];
};

static double
now_f(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Moves an entry and its state into hold/ or corrupt/, logged. */
static void
move_aside(struct worker *w, struct job *j, int todir, const char *where,
    const char *why)
{
	char st[QID_SIZE + sizeof(STATE_SUFFIX)];

	snprintf(st, sizeof(st), "%s%s", j->e.id, STATE_SUFFIX);
	if (renameat(j->bucketfd, j->e.id, todir, j->e.id) == -1) {
		log_msg(LOG_ERR, j->e.id, "cannot move to %s/: %s; left in "
		    "place", where, strerror(errno));
		j->e.next = time(NULL) + w->ctx->cfg.max_backoff;
		return;
	}
	if (renameat(j->bucketfd, st, todir, st) == -1 && errno != ENOENT)
		log_msg(LOG_ERR, j->e.id, "moving state to %s/: %s", where,
		    strerror(errno));
	fsync(todir);
	fsync(j->bucketfd);
	log_msg(LOG_WARNING, j->e.id, "moved to %s/: %s", where, why);
	j->skip = 2;
}

/*
 * The length of a leading mbox envelope line ("From sender date"), which
 * Postfix's local(8) and other MTAs put before the message they pipe: it
 * is not part of the message (no header line can start "From "), and
 * sent on it would end the relay's header section.  0 when there is none.
 */
static size_t
envelope_line(const char *buf, size_t n)
{
	const char *nl;

	if (n > ENVELOPE_MAX)
		n = ENVELOPE_MAX;
	if (n < 5 || memcmp(buf, "From ", 5) != 0 ||
	    (nl = memchr(buf, '\n', n)) == NULL)
		return 0;
	return (size_t)(nl - buf) + 1;
}

static int
has_8bit(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] >= 0x80)
			return 1;
	return 0;
}

/*
 * Reads and parses the entry header, finds where the message starts and
 * takes the message's header section; -1 with a reason if unusable.  One
 * pread brings it all: the entry header (at most ENTRY_HEADER_MAX bytes,
 * and only those go to the parser), an envelope line and HEAD_MAX bytes
 * of message, which the 8-bit scan of a snapshot then need not read
 * again.  The buffer is a fixed one, reused for every entry.
 */
static int
read_header(struct job *j, int fd, const char **why)
{
	static char buf[ENTRY_HEADER_MAX + ENVELOPE_MAX + HEAD_MAX];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	size_t hlen, m = 0;

	if (n < 0) {
		*why = strerror(errno);
		return -1;
	}
	hlen = (size_t)n < ENTRY_HEADER_MAX ? (size_t)n : ENTRY_HEADER_MAX;
	if (entry_header_parse(buf, hlen, &j->h, &j->body, why) == -1)
		return -1;
	if (strcmp(j->h.id, j->e.id) != 0) {
		*why = "header id differs from the file name";
		return -1;
	}
	if (j->body < (size_t)n) {
		j->body += envelope_line(buf + j->body, (size_t)n - j->body);
		m = (size_t)n - j->body < HEAD_MAX ? (size_t)n - j->body :
		    HEAD_MAX;
	}
	j->eight = has_8bit((unsigned char *)buf + j->body, m);
	j->scanned = (off_t)m;
	j->head = msghead_copy(buf + j->body, m);
	return 0;
}

/* Does the message's header carry "X-Loop: <address>"? */
static int
has_loop(const char *head, const char *address)
{
	size_t alen = strlen(address);
	const char *from = head, *v;

	while ((v = msghead_next(&from, "X-Loop")) != NULL)
		if (strncasecmp(v, address, alen) == 0 && (v[alen] == '\n' ||
		    v[alen] == '\r' || v[alen] == ' '))
			return 1;
	return 0;
}

/*
 * subject_prefix: inserted at the start of the Subject's value unless
 * already there; a message without Subject gets one in the prepend.
 */
static void
prefix_subject(struct job *j, const char *head, const char *prefix)
{
	const char *from = head, *v, *eol, *seen;
	size_t plen = strlen(prefix);

	if (plen == 0 || head == NULL)
		return;
	if ((v = msghead_next(&from, "Subject")) == NULL) {
		snprintf(j->prepend + strlen(j->prepend), sizeof(j->prepend) -
		    strlen(j->prepend), "Subject: %s\n", prefix);
		return;
	}
	eol = strchr(v, '\n');
	if ((seen = strstr(v, prefix)) != NULL && (eol == NULL || seen < eol))
		return;
	snprintf(j->insert, sizeof(j->insert), "%s ", prefix);
	j->insert_at = (off_t)(j->body + (size_t)(v - head));
}

/*
 * The list's own header lines (RFC 2369, RFC 2919): the ways in and out
 * name LIST-request@domain with the command as the mailto Subject, which
 * is what the request handler reads (subscription.c).
 */
static void
make_prepend(struct job *j, const struct list_conf *lc)
{
	const char *domain = address_domain(lc->address);
	int n;

	n = snprintf(j->prepend, sizeof(j->prepend),
	    "List-Id: <%s.%s>\n"
	    "List-Help: <mailto:%s-request@%s?subject=help>\n"
	    "List-Subscribe: <mailto:%s-request@%s?subject=subscribe>\n"
	    "List-Unsubscribe: <mailto:%s-request@%s?subject=unsubscribe>\n"
	    "List-Post: <mailto:%s>\n"
	    "List-Owner: <mailto:%s-owner@%s>\n",
	    lc->name, domain, lc->name, domain, lc->name, domain, lc->name,
	    domain, lc->address, lc->name, domain);
	if (lc->archive_url[0] != '\0' && n > 0 &&
	    (size_t)n < sizeof(j->prepend))
		n += snprintf(j->prepend + n, sizeof(j->prepend) - (size_t)n,
		    "List-Archive: <%s>\n", lc->archive_url);
	if (n > 0 && (size_t)n < sizeof(j->prepend))
		snprintf(j->prepend + n, sizeof(j->prepend) - (size_t)n,
		    "X-Loop: %s\n", lc->address);
}

/* A send entry (DSN, notice) carries its envelope in its header. */
static int
expand_send(struct job *j, const char **why)
{
	strlcpy(j->st.sender, j->h.sender, sizeof(j->st.sender));
	if (state_add_rcpt(&j->st, j->h.rcpt) == -1) {
		*why = "out of memory";
		return -1;
	}
	log_msg(LOG_INFO, j->e.id, "list=%s, command=send, from=<%s>, "
	    "nrcpt=1", j->h.list, j->st.sender);
	return 0;
}

static int open_entry(struct job *);

/*
 * Does the message have a byte >= 0x80 (BODY=8BITMIME)?  Once per entry,
 * when the snapshot is taken: what read_header() saw, then the rest in
 * 64 KiB preads up to the size prepare() saw; an unread file counts as
 * 7-bit (the relay then gets no BODY= at all).
 */
static unsigned int
scan_8bit(struct job *j, int fd)
{
	unsigned char *buf;
	off_t off = (off_t)j->body + j->scanned;
	ssize_t n;

	if (j->eight)
		return 1;
	if (j->fsize > 0 && off >= j->fsize)
		return 0;
	if ((buf = malloc(65536)) == NULL)
		return 0;
	while ((j->fsize == 0 || off < j->fsize) &&
	    (n = pread(fd, buf, 65536, off)) > 0) {
		if (has_8bit(buf, (size_t)n)) {
			free(buf);
			return 1;
		}
		off += n;
	}
	free(buf);
	return 0;
}

/* The configuration of a list, read at most once per batch. */
static struct list_cache *
list_get(struct job *j, char *err, size_t errlen)
{
	struct list_cache *l;

	for (l = *j->lists; l != NULL; l = l->next)
		if (strcmp(l->lc.name, j->h.list) == 0)
			return l;
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (list_conf_load(LISTDIR, j->h.list, &l->lc, err, errlen) == -1) {
		free(l);
		return NULL;
	}
	l->next = *j->lists;
	*j->lists = l;
	return l;
}

/* Its enabled members or its owners, read at most once per batch. */
static const struct addr_list *
list_rcpts(struct list_cache *l, int which, size_t *bad, char *err,
    size_t errlen)
{
	if (!l->read[which]) {
		if ((which == LIST_MEMBERS ? list_enabled_members(LISTDIR,
		    l->lc.name, &l->addrs[which], &l->bad[which], err,
		    errlen) : list_addresses(LISTDIR, l->lc.name, "owners",
		    &l->addrs[which], &l->bad[which], err, errlen)) == -1)
			return NULL;
		l->read[which] = 1;
	}
	*bad = l->bad[which];
	return &l->addrs[which];
}

/*
 * A bounce report may have just disabled a member: the next post of the
 * batch reads the members again, as it would have without the cache.
 */
static void
list_forget_members(struct list_cache *l)
{
	addr_list_free(&l->addrs[LIST_MEMBERS]);
	l->read[LIST_MEMBERS] = 0;
}

static void
lists_free(struct list_cache *l)
{
	struct list_cache *next;

	for (; l != NULL; l = next) {
		next = l->next;
		addr_list_free(&l->addrs[LIST_MEMBERS]);
		addr_list_free(&l->addrs[LIST_OWNERS]);
		free(l);
	}
}

/* The recipient snapshot, taken once per entry (l NULL: a send entry). */
static int
expand(struct job *j, int fd, const char *head, struct list_cache *l,
    const char **why)
{
	static char err[512];
	int which = strcmp(j->h.command, "post") == 0 ? LIST_MEMBERS :
	    LIST_OWNERS;
	const struct list_conf *lc;
	const struct addr_list *al;
	size_t i, bad;

	j->st.eightbit = scan_8bit(j, fd);
	if (l == NULL)
		return expand_send(j, why);

	lc = &l->lc;
	if (which == LIST_MEMBERS && head != NULL &&
	    has_loop(head, lc->address)) {
		log_msg(LOG_WARNING, j->e.id, "post already carries X-Loop: %s;"
		    " sent to the owners instead of the members", lc->address);
		which = LIST_OWNERS;
	}
	if ((al = list_rcpts(l, which, &bad, err, sizeof(err))) == NULL) {
		*why = err;
		return -1;
	}
	if (bad > 0)
		log_msg(LOG_WARNING, j->e.id, "list %s: %zu invalid address "
		    "lines in %s skipped", lc->name, bad, which == LIST_MEMBERS ?
		    "members" : "owners");
	snprintf(j->st.sender, sizeof(j->st.sender), "%s-bounces@%s",
	    lc->name, address_domain(lc->address));
	for (i = 0; i < al->n; i++)
		if (state_add_rcpt(&j->st, al->v[i]) == -1) {
			*why = "out of memory";
			return -1;
		}
	log_msg(LOG_INFO, j->e.id, "list=%s, command=%s, from=<%s>, nrcpt=%zu",
	    lc->name, j->h.command, j->st.sender, j->st.n);
	return 0;
}

/* An entry that needs no delivery (a processed bounce) leaves the spool. */
static void
consume(struct worker *w, struct job *j, const char *what)
{
	char st[QID_SIZE + sizeof(STATE_SUFFIX)];

	(void)w;
	snprintf(st, sizeof(st), "%s%s", j->e.id, STATE_SUFFIX);
	if (unlinkat(j->bucketfd, j->e.id, 0) == -1) {
		log_msg(LOG_ERR, j->e.id, "cannot remove: %s", strerror(errno));
		return;
	}
	unlinkat(j->bucketfd, st, 0);
	fsync(j->bucketfd);
	log_msg(LOG_INFO, j->e.id, "removed (%s)", what);
	j->skip = 2;
}

/*
 * The posting gate, before any expansion: a post may be held, rejected
 * or discarded (gate.c); a request (a moderator's decision) is taken and
 * consumed.  -1: nothing to deliver now.
 */
static int
gated(struct worker *w, struct job *j, int fd, const char *head,
    const struct list_conf *lc)
{
	if (strcmp(j->h.command, "request") == 0) {
		gate_request(w, &j->h, head, lc);
		consume(w, j, "request processed");
		return -1;
	}
	if (strcmp(j->h.command, "post") != 0)
		return 0;
	switch (gate_post(w, &j->h, j->bucketfd, fd, j->body, head, lc)) {
	case GATE_PASS:
		return 0;
	case GATE_TAKEN:
		j->skip = 2;
		return -1;
	default:
		j->e.next = time(NULL) + w->ctx->cfg.min_backoff;
		return -1;
	}
}

/*
 * A state with no recipient and no attempt only counts crashes: its
 * snapshot is still to be taken.
 */
static int
expanded(const struct state *st)
{
	return st->n > 0 || st->attempts > 0;
}

static int load_or_expand(struct worker *, struct job *, int, const char *,
    struct list_cache *);

/*
 * The copy of a post that the members get when its author's domain
 * publishes a DMARC policy the list must not break (mitigate.c); -1:
 * the post waits until j->e.next.
 */
static int
dmarc_copy(struct worker *w, struct job *j, int fd, const struct list_conf *lc)
{
	struct post p = { j->e.id, fd, j->body, j->fsize, j->head,
	    j->h.arrival_sec, w->spoolfd };
	int rc = mitigate_post(&w->ctx->cfg, lc, &p, &j->copy, &j->e.next);

	if (rc == -1)
		j->e.next = time(NULL) + w->ctx->cfg.min_backoff;
	return rc == 0 ? 0 : -1;
}

/* Loads the state or takes the snapshot; -1: nothing to send now. */
static int
load_state(struct worker *w, struct job *j, int fd)
{
	static char err[512];
	struct list_cache *l;

	if (strcmp(j->h.command, "send") == 0)
		return load_or_expand(w, j, fd, NULL, NULL);
	if ((l = list_get(j, err, sizeof(err))) == NULL) {
		move_aside(w, j, w->holdfd, SPOOL_HOLD, err);
		return -1;
	}
	make_prepend(j, &l->lc);
	if (strcmp(j->h.command, "post") == 0 && dmarc_copy(w, j, fd,
	    &l->lc) == -1)
		return -1;
	prefix_subject(j, j->copy.fd != -1 ? j->copy.head : j->head,
	    l->lc.subject_prefix);
	free(j->copy.head);	/* HEAD_MAX bytes: not kept for the session */
	j->copy.head = NULL;
	j->verp = l->lc.verp;
	return load_or_expand(w, j, fd, j->head, l);
}

/* The state of j, or its snapshot when it has none yet. */
static int
load_or_expand(struct worker *w, struct job *j, int fd, const char *head,
    struct list_cache *l)
{
	const char *why = NULL;
	unsigned int crashes = 0;
	int rc;

	if (j->e.held != NULL) {	/* newer than the file: see hold() */
		j->st = *j->e.held;
		free(j->e.held);
		j->e.held = NULL;
		j->unsaved = 1;
		return 0;
	}
	if (state_load(j->bucketfd, j->e.id, &j->st, &why) == 0) {
		j->had_state = 1;
		if (expanded(&j->st))
			return 0;
		crashes = j->st.crashes;
		state_free(&j->st);
	} else if (errno == EINVAL) {
		move_aside(w, j, w->corruptfd, SPOOL_CORRUPT, why);
		return -1;
	} else if (errno != ENOENT) {
		log_msg(LOG_ERR, j->e.id, "reading state: %s; retry later",
		    strerror(errno));
		j->e.next = time(NULL) + w->ctx->cfg.min_backoff;
		return -1;
	}
	if (strcmp(j->h.command, "bounces") == 0) {
		rc = incoming_bounce(w, &j->h, fd, j->body, l != NULL ?
		    &l->lc : NULL);
		if (l != NULL)
			list_forget_members(l);	/* it may disable one */
		if (rc == 1) {
			consume(w, j, "bounce processed");
			return -1;
		}
	}
	if (l != NULL && gated(w, j, fd, head, &l->lc) == -1)
		return -1;
	if (expand(j, fd, head, l, &why) == -1) {
		move_aside(w, j, w->holdfd, SPOOL_HOLD, why);
		return -1;
	}
	j->st.crashes = crashes;
	j->snapshot = 1;
	return 0;
}

static int
open_entry(struct job *j)
{
	return openat(j->bucketfd, j->e.id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

/*
 * Opens, parses and loads an entry.  Returns 0 when it has recipients to
 * send now; otherwise it was rescheduled, moved aside or is done.
 */
static int
prepare(struct worker *w, struct job *j, time_t now)
{
	const char *why;
	struct stat sb;
	int fd, rc;

	j->bucketfd = w->bucketfd[j->e.bucket];
	worker_doing(w, "preparing", j->e.id);
	if ((fd = open_entry(j)) == -1) {
		if (errno != ENOENT)
			log_msg(LOG_ERR, j->e.id, "open: %s", strerror(errno));
		j->skip = 2;	/* gone, or cannot be read: drop from memory */
		return -1;
	}
	if (fstat(fd, &sb) == 0)
		j->fsize = sb.st_size;	/* immutable: the size for good */
	if (read_header(j, fd, &why) == -1) {
		close(fd);
		move_aside(w, j, w->corruptfd, SPOOL_CORRUPT, why);
		return -1;
	}
	rc = load_state(w, j, fd);
	free(j->head);
	j->head = NULL;
	if (rc == -1) {
		close(fd);
		if (j->skip == 0)
			j->skip = 1;
		return -1;
	}
	if (!j->e.known && j->st.next_attempt > now) {
		close(fd);
		j->e.next = j->st.next_attempt;
		j->skip = 1;
		return -1;
	}
	j->fd = fd;	/* one open per entry, not one more to send it */
	if (j->copy.fd != -1) {
		j->fd = dup(j->copy.fd);
		j->fsize = j->copy.size;
		close(fd);
	}
	return 0;
}

/* Seconds until the next attempt: doubling from min to max, +-10%. */
static time_t
backoff(const struct config *c, unsigned int attempts)
{
	unsigned long d = c->min_backoff;
	unsigned int i;

	for (i = 1; i < attempts && d < c->max_backoff; i++)
		d *= 2;
	if (d > c->max_backoff)
		d = c->max_backoff;
	d = d * 9 / 10 + arc4random_uniform((uint32_t)(d / 5 + 1));
	return (time_t)(d == 0 ? 1 : d);
}

static void
log_rcpt(const struct job *j, const struct rcpt_status *r, const char *relay,
    double now)
{
	double delay = now - (double)j->h.arrival_sec -
	    (double)j->h.arrival_usec / 1e6;

	log_msg(r->st == RCPT_SENT ? LOG_INFO : LOG_WARNING, j->e.id,
	    "to=<%s>, relay=%s, delay=%.2f, dsn=%s, status=%s (%s)", r->addr,
	    relay, delay < 0 ? 0 : delay, r->dsn[0] ? r->dsn : "4.0.0",
	    rcpt_state_name(r->st), r->reply);
}

/* Recipients past max_queue_lifetime fail without another attempt. */
static int
expire(struct job *j, const struct config *c, time_t now)
{
	size_t i;
	int n = 0;

	if (now - j->h.arrival_sec < (time_t)c->max_queue_lifetime)
		return 0;
	for (i = 0; i < j->st.n; i++) {
		if (j->st.r[i].st == RCPT_SENT || j->st.r[i].st == RCPT_FAILED)
			continue;
		state_set_rcpt(&j->st.r[i], RCPT_FAILED, j->st.r[i].code,
		    "4.4.7", "delivery time expired");
		j->st.r[i].fresh = 1;
		log_rcpt(j, &j->st.r[i], "none", now_f());
		n++;
	}
	return n;
}

static struct smtp_msg *
session_add(struct session *s)
{
	struct smtp_msg *m;
	size_t cap;

	char **v;

	if (s->n == s->cap) {
		cap = s->cap == 0 ? 16 : s->cap * 2;
		if ((m = reallocarray(s->msgs, cap, sizeof(*m))) == NULL)
			return NULL;
		s->msgs = m;
		if ((v = reallocarray(s->senders, cap, sizeof(*v))) == NULL)
			return NULL;
		s->senders = v;
		s->cap = cap;
	}
	s->senders[s->n] = NULL;
	m = &s->msgs[s->n++];
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	return m;
}

/*
 * VERP: the envelope sender name-bounces+user=host@domain for the member
 * user@host, so that a bounce names its member by its address alone.
 */
static int
verp_sender(struct session *s, struct smtp_msg *m, const char *sender,
    const char *rcpt, char delim)
{
	const char *at = strrchr(sender, '@'), *rat = strrchr(rcpt, '@');
	char *v;

	if (asprintf(&v, "%.*s%c%.*s=%s%s", (int)(at - sender), sender, delim,
	    (int)(rat - rcpt), rcpt, rat + 1, at) == -1)
		return -1;
	s->senders[s->n - 1] = v;
	m->sender = v;
	return 0;
}

/* For SIZE=: the message as sent, prepend and insert included; 0 unknown. */
static off_t
message_size(const struct job *j)
{
	if (j->fsize < (off_t)j->body)
		return 0;
	return j->fsize - (off_t)j->body + (off_t)strlen(j->prepend) +
	    (off_t)strlen(j->insert);
}

/* The message file for a transaction: prepare()'s for the first. */
static int
message_fd(struct job *j)
{
	int fd = j->fd;

	if (fd == -1)
		return j->copy.fd != -1 ? dup(j->copy.fd) : open_entry(j);
	j->fd = -1;
	return fd;
}

/*
 * One transaction per chunk of recipients still to be done; per
 * recipient, with its own envelope sender, when the list uses VERP.
 */
static int
add_transactions(struct session *s, struct job *j, size_t max_rcpts,
    char delim)
{
	struct smtp_msg *m = NULL;
	size_t i, left = 0, cap = 0;

	if (j->verp)
		max_rcpts = 1;
	/*
	 * Each chunk's array holds what it will carry, not max_rcpts slots
	 * (a reply buffer each: 140 KB zeroed per one-recipient message).
	 */
	for (i = 0; i < j->st.n; i++)
		left += j->st.r[i].st != RCPT_SENT &&
		    j->st.r[i].st != RCPT_FAILED;
	j->first = s->n;
	for (i = 0; i < j->st.n; i++) {
		if (j->st.r[i].st == RCPT_SENT || j->st.r[i].st == RCPT_FAILED)
			continue;
		if (m == NULL || m->nrcpts == cap) {
			cap = left < max_rcpts ? left : max_rcpts;
			if ((m = session_add(s)) == NULL ||
			    (m->rcpts = calloc(cap, sizeof(*m->rcpts))) ==
			    NULL || (m->fd = message_fd(j)) == -1)
				return -1;
			m->start = (off_t)j->body;
			m->end = j->fsize;
			m->app = j;
			m->sender = j->st.sender;
			m->prepend = j->prepend;
			m->insert = j->insert[0] != '\0' ? j->insert : NULL;
			m->insert_at = j->insert_at;
			m->size = message_size(j);
			m->eightbit = (int)j->st.eightbit;
			if (j->verp && verp_sender(s, m, j->st.sender,
			    j->st.r[i].addr, delim) == -1)
				return -1;
		}
		m->rcpts[m->nrcpts++].addr = j->st.r[i].addr;
		left--;
	}
	j->count = s->n - j->first;
	return 0;
}

static void
session_free(struct session *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		if (s->msgs[i].fd != -1)
			close(s->msgs[i].fd);
		free(s->msgs[i].rcpts);
		free(s->senders[i]);
	}
	free(s->msgs);
	free(s->senders);
	memset(s, 0, sizeof(*s));
}

/*
 * Copies the outcome of each recipient of one transaction into j's state;
 * returns one past the last of them (they are all from *lo on).
 */
static size_t
record_msg(struct job *j, const struct smtp_msg *m, const char *relay,
    double now, size_t *lo)
{
	struct rcpt_status *r;
	enum rcpt_state st;
	size_t k, i = 0;

	for (k = 0; k < m->nrcpts; k++) {
		while (i < j->st.n && j->st.r[i].addr != m->rcpts[k].addr)
			i++;
		if (i == j->st.n)
			return i;
		if (k == 0)
			*lo = i;
		r = &j->st.r[i];
		st = m->rcpts[k].status == 2 ? RCPT_SENT :
		    m->rcpts[k].status == 5 ? RCPT_FAILED : RCPT_DEFERRED;
		state_set_rcpt(r, st, m->rcpts[k].code, m->rcpts[k].enh,
		    m->rcpts[k].reply);
		r->fresh = st == RCPT_FAILED;
		log_rcpt(j, r, relay, now);
	}
	return m->nrcpts > 0 ? i + 1 : 0;
}

static void
remove_entry(struct worker *w, struct job *j, unsigned char *dirty)
{
	char st[QID_SIZE + sizeof(STATE_SUFFIX)];

	snprintf(st, sizeof(st), "%s%s", j->e.id, STATE_SUFFIX);
	if (unlinkat(j->bucketfd, j->e.id, 0) == -1) {
		log_msg(LOG_ERR, j->e.id, "cannot remove delivered entry: %s",
		    strerror(errno));
		j->e.next = time(NULL) + w->ctx->cfg.max_backoff;
		return;
	}
	/*
	 * Only the owner creates a state file, so one neither read nor
	 * written in this attempt does not exist: no unlink to try.
	 */
	if ((j->had_state || j->unsaved || j->st.disk_base > 0) &&
	    unlinkat(j->bucketfd, st, 0) == -1 && errno != ENOENT)
		log_msg(LOG_ERR, j->e.id, "removing state: %s", strerror(errno));
	dirty[j->e.bucket] = 1;
	log_msg(LOG_INFO, j->e.id, "removed");
	j->skip = 2;
}

static void undo_failures(struct job *, int);

/*
 * DSNs after an attempt: one for the recipients that failed in it (on
 * failure to queue it they are deferred again, so that nothing is lost),
 * and one delay warning per entry past delay_warning_time.
 */
static void
report(struct worker *w, struct job *j, const char *relay, time_t now)
{
	const struct config *c = &w->ctx->cfg;
	char id[QID_SIZE];
	size_t i, fresh = 0, todo = 0;
	int fd, rc, warn;

	for (i = 0; i < j->st.n; i++) {
		fresh += j->st.r[i].st == RCPT_FAILED && j->st.r[i].fresh;
		todo += j->st.r[i].st == RCPT_DEFERRED;
	}
	warn = todo > 0 && !j->st.warned && c->delay_warning_time > 0 &&
	    now - j->h.arrival_sec >= (time_t)c->delay_warning_time;
	if ((fresh == 0 && !warn) || (fd = open_entry(j)) == -1)
		return;
	if (fresh > 0) {
		rc = notify_dsn(w, DSN_FAILED, &j->h, fd, j->body, &j->st, relay,
		    id);
		if (rc == 0)
			log_msg(LOG_INFO, j->e.id, "sender non-delivery "
			    "notification: %s", id);
		else if (rc == -1)
			undo_failures(j, errno);
	}
	if (warn) {
		rc = notify_dsn(w, DSN_DELAYED, &j->h, fd, j->body, &j->st,
		    relay, id);
		if (rc == 0)
			log_msg(LOG_INFO, j->e.id, "sender delay notification: "
			    "%s", id);
		if (rc != -1)
			j->st.warned = 1;
	}
	close(fd);
}

/* A DSN could not be queued: its recipients will be tried again. */
static void
undo_failures(struct job *j, int err)
{
	size_t i;

	log_msg(LOG_ERR, j->e.id, "cannot queue a DSN (%s): failed "
	    "recipients deferred instead", strerror(err));
	for (i = 0; i < j->st.n; i++)
		if (j->st.r[i].st == RCPT_FAILED && j->st.r[i].fresh) {
			j->st.r[i].st = RCPT_DEFERRED;
			j->st.r[i].fresh = 0;
		}
}

/* Could a DSN go out for this entry at all? */
static int
dsn_possible(struct job *j)
{
	char *head;
	int fd, ok;

	if ((fd = open_entry(j)) == -1)
		return 0;
	head = msghead_read(fd, j->body);
	close(fd);
	ok = notify_dsn_allowed(&j->h, &j->st, head);
	free(head);
	return ok;
}

/*
 * After an attempt: leave the spool (every recipient delivered, or
 * failed with a DSN queued), move to hold/ (failed recipients that no
 * DSN can report), or save the state and reschedule.
 */
static void
finish(struct worker *w, struct job *j, const char *relay, time_t now,
    unsigned char *dirty)
{
	size_t i, todo = 0, failed = 0;
	char why[64];

	report(w, j, relay, now);
	for (i = 0; i < j->st.n; i++) {
		todo += j->st.r[i].st == RCPT_PENDING ||
		    j->st.r[i].st == RCPT_DEFERRED;
		failed += j->st.r[i].st == RCPT_FAILED;
	}
	if (todo == 0 && (failed == 0 || dsn_possible(j))) {
		remove_entry(w, j, dirty);
		return;
	}
	if (todo == 0)
		j->st.next_attempt = 0;
	else
		j->st.next_attempt = now + backoff(&w->ctx->cfg,
		    j->st.attempts);
	if (state_save(j->bucketfd, j->e.id, &j->st) == -1) {
		log_msg(LOG_ERR, j->e.id, "saving state: %s; deferred, the "
		    "state kept in memory", strerror(errno));
		j->e.next = now + w->ctx->cfg.min_backoff;
		j->unsaved = 1;
		return;
	}
	j->unsaved = 0;
	if (todo == 0) {
		snprintf(why, sizeof(why), "%zu recipient%s failed, no DSN "
		    "possible", failed, failed == 1 ? "" : "s");
		move_aside(w, j, w->holdfd, SPOOL_HOLD, why);
		return;
	}
	j->e.next = j->st.next_attempt;
	j->e.known = 1;
}

/*
 * One line per batch: its sessions, whether TCP_NODELAY is on (read back
 * from a socket), how often TCP_QUICKACK was re-armed, and how many
 * transactions went as one pipelined group (MAIL ahead of its reply).
 */
static void
log_session(const struct session *s)
{
	struct smtp_stats ss;

	smtp_last_stats(&ss);
	log_msg(LOG_INFO, NULL, "session: relay=%s, transactions=%zu, "
	    "sessions=%u, tcp_nodelay=%s, tcp_quickack_rearms=%lu, "
	    "mail_ahead=%lu", s->relay, s->n, ss.sessions,
	    ss.nodelay == 1 ? "on" : "off", ss.quickacks, ss.pipelined);
}

/*
 * While every relay pauses nothing is sent: the worker waits until the
 * first one is back (each pause was logged by relay.c with its cause).
 */
static void
relays_wait(struct worker *w)
{
	time_t now = time(NULL), back = relay_back_at(&w->ctx->cfg, now);

	if (back <= now) {
		w->relay_retry_at = 0;
		return;
	}
	w->relay_retry_at = back;
	log_msg(LOG_INFO, NULL, "no relay reachable: every relay pauses; "
	    "worker %u waits %lld s", w->ctx->index, (long long)(back - now));
}

/*
 * No relay gave a session: keep every entry as it was (only a snapshot
 * taken just now is saved, once); the relays pause, not the entries.
 */
static void
relays_down(struct job *jobs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (jobs[i].skip != 0 || (!jobs[i].snapshot &&
		    !jobs[i].unsaved))
			continue;
		if (state_save(jobs[i].bucketfd, jobs[i].e.id, &jobs[i].st) ==
		    -1)
			log_msg(LOG_ERR, jobs[i].e.id, "saving state: %s",
			    strerror(errno));
		else
			jobs[i].unsaved = 0;
	}
}

/*
 * The state of j could not be written (a full or failing disk): the
 * schedule holds it, as the file would have it (no DSN is due again for
 * a recipient that has had one), and the next attempt starts from it and
 * writes it.  Without it, that attempt would send again to every
 * recipient this one delivered to.  A snapshot that a session ended
 * before offering is held the same way until its next batch, which is
 * due at once (keep_unsent), rather than written.
 */
static void
hold(struct sched_entry *e, struct job *j)
{
	size_t i;

	if ((e->held = malloc(sizeof(*e->held))) == NULL) {
		log_msg(LOG_ERR, j->e.id, "out of memory: state not kept");
		return;
	}
	for (i = 0; i < j->st.n; i++)
		j->st.r[i].fresh = 0;
	*e->held = j->st;
	memset(&j->st, 0, sizeof(j->st));
}

/* Writes back what changed about each job to the schedule. */
static void
update_schedule(struct worker *w, struct job *jobs, size_t n)
{
	struct sched_entry *e;
	size_t i;

	for (i = 0; i < n; i++) {
		e = sched_find(&w->sched, jobs[i].e.bucket, jobs[i].e.id);
		if (e == NULL)
			continue;
		if (jobs[i].skip == 2)
			sched_remove(&w->sched, e);
		else {
			e->next = jobs[i].e.next;
			e->known = jobs[i].e.known;
			if (jobs[i].unsaved)
				hold(e, &jobs[i]);
		}
	}
}

/* Each job takes over the state its entry holds, if any (see hold()). */
static void
take_held(struct worker *w, struct job *jobs, size_t n)
{
	struct sched_entry *e;
	size_t i;

	for (i = 0; i < n; i++)
		if (jobs[i].e.held != NULL && (e = sched_find(&w->sched,
		    jobs[i].e.bucket, jobs[i].e.id)) != NULL)
			e->held = NULL;
}

static void
sync_dirty(struct worker *w, const unsigned char *dirty)
{
	unsigned int b;

	for (b = 0; b < QID_BUCKETS; b++)
		if (dirty[b] && fsync(w->bucketfd[b]) == -1)
			log_msg(LOG_ERR, NULL, "fsync bucket %02x: %s", b,
			    strerror(errno));
}

/* Prepares every due entry and queues its transactions. */
static size_t
prepare_all(struct worker *w, struct job *jobs, size_t n,
    struct session *s, unsigned char *dirty)
{
	time_t now = time(NULL);
	size_t i, ready = 0;

	for (i = 0; i < n; i++) {
		if (prepare(w, &jobs[i], now) == -1)
			continue;
		if (expire(&jobs[i], &w->ctx->cfg, now) > 0) {
			jobs[i].st.attempts++;
			finish(w, &jobs[i], "none", now, dirty);
			continue;
		}
		if (add_transactions(s, &jobs[i],
		    w->ctx->cfg.max_rcpts_per_transaction,
		    w->ctx->cfg.recipient_delimiter[0]) == -1) {
			log_msg(LOG_ERR, jobs[i].e.id, "preparing the "
			    "transactions: %s", strerror(errno));
			jobs[i].e.next = now + w->ctx->cfg.min_backoff;
			jobs[i].skip = 1;
			continue;
		}
		if (jobs[i].count == 0)
			finish(w, &jobs[i], "none", now, dirty);
		else
			ready++;
	}
	return ready;
}

/* The attempt of j is over: count it and leave, hold or reschedule. */
static void
settle(struct worker *w, struct job *j, const char *relay,
    unsigned char *dirty)
{
	time_t now = time(NULL);

	j->st.attempts++;
	if (j->st.first_attempt == 0)
		j->st.first_attempt = now;
	finish(w, j, relay, now, dirty);
	j->settled = 1;
}

struct batch {			/* what txn_done needs */
	struct worker	*w;
	struct session	*s;
	unsigned char	*dirty;
};

/*
 * smtp.c calls this as each transaction ends: its recipients are recorded
 * at once -- the entry settled after its last transaction, their outcomes
 * appended to its state after an earlier one (one write and one
 * fdatasync, not a rewrite of every recipient's line) -- so a crash
 * repeats at most the transaction in flight (invariant 4).  SIGTERM ends
 * the session here.
 */
static int
txn_done(struct smtp_msg *m, const char *relay, void *arg)
{
	struct batch *b = arg;
	struct job *j = m->app;
	size_t t = (size_t)(m - b->s->msgs), lo = 0, hi;

	hi = record_msg(j, m, relay, now_f(), &lo);
	if (t + 1 == j->first + j->count)
		settle(b->w, j, relay, b->dirty);
	else if ((j->unsaved ? state_save(j->bucketfd, j->e.id, &j->st) :
	    state_record(j->bucketfd, j->e.id, &j->st, lo, hi)) == -1)
		log_msg(LOG_ERR, j->e.id, "saving state: %s", strerror(errno));
	if (t + 1 < b->s->n)
		worker_doing(b->w, "delivering",
		    ((struct job *)b->s->msgs[t + 1].app)->e.id);
	return worker_check_signals(b->w);
}

/*
 * Did the session end before the relay saw any transaction of j?  Then
 * j was not tried in it at all.  One reported transaction is enough to
 * make it an attempt: its failures are on disk already, without their
 * DSN, which only settling the attempt sends.
 */
static int
never_offered(const struct job *j, const struct session *s)
{
	size_t t;

	for (t = j->first; t < j->first + j->count; t++)
		if (!s->msgs[t].untried)
			return 0;
	return 1;
}

/*
 * j was not offered to the relay: no attempt is counted, its state file
 * and backoff stay as they were, and it is due again at once.  A
 * snapshot that is not on disk yet stays in the schedule (hold()).
 */
static void
keep_unsent(struct job *j)
{
	if (j->st.disk_base == 0)
		j->unsaved = 1;
	j->e.next = 0;
	log_msg(LOG_INFO, j->e.id, "not offered: the session ended first; "
	    "retried in a new session");
}

/*
 * What the session did not report transaction by transaction.  The
 * transactions it never offered leave their recipients as they were,
 * and an entry it never offered at all is due again at once.
 */
static void
settle_rest(struct worker *w, struct job *jobs, size_t n,
    const struct session *s, unsigned char *dirty)
{
	size_t i, t, lo;

	for (i = 0; i < n; i++) {
		if (jobs[i].skip != 0 || jobs[i].count == 0 || jobs[i].settled)
			continue;
		if (never_offered(&jobs[i], s)) {
			keep_unsent(&jobs[i]);
			continue;
		}
		for (t = jobs[i].first; t < jobs[i].first + jobs[i].count; t++)
			if (!s->msgs[t].reported && !s->msgs[t].untried)
				record_msg(&jobs[i], &s->msgs[t], s->relay,
				    now_f(), &lo);
		settle(w, &jobs[i], s->relay, dirty);
	}
}

void
deliver_batch(struct worker *w, const struct sched_entry *due, size_t n)
{
	struct job *jobs = calloc(n, sizeof(*jobs));
	unsigned char dirty[QID_BUCKETS] = { 0 };
	struct list_cache *lists = NULL;
	struct session s;
	size_t i, ready;

	if (jobs == NULL) {
		log_msg(LOG_ERR, NULL, "worker: out of memory");
		return;
	}
	memset(&s, 0, sizeof(s));
	for (i = 0; i < n; i++) {
		jobs[i].e = due[i];
		jobs[i].fd = -1;
		jobs[i].copy.fd = -1;
		jobs[i].lists = &lists;
	}
	take_held(w, jobs, n);
	ready = prepare_all(w, jobs, n, &s, dirty);
	lists_free(lists);	/* read for this batch's snapshots only */
	lists = NULL;
	if (ready > 0) {
		struct batch b = { w, &s, dirty };

		worker_doing(w, "delivering", ((struct job *)s.msgs[0].app)->e.id);
		if (relay_session(&w->ctx->cfg, s.msgs, s.n, s.relay,
		    sizeof(s.relay), txn_done, &b) == -1)
			relays_down(jobs, n);
		else {
			log_session(&s);
			settle_rest(w, jobs, n, &s, dirty);
		}
		relays_wait(w);
	}
	sync_dirty(w, dirty);
	update_schedule(w, jobs, n);
	for (i = 0; i < n; i++) {
		if (jobs[i].fd != -1)
			close(jobs[i].fd);
		if (jobs[i].copy.fd != -1)
			close(jobs[i].copy.fd);
		state_free(&jobs[i].st);
		if (jobs[i].e.held != NULL) {	/* never prepared */
			state_free(jobs[i].e.held);
			free(jobs[i].e.held);
		}
	}
	session_free(&s);
	free(jobs);
}

/*
 * The previous owner of this slice died delivering id.  Count it in the
 * entry's state; at POISON_CRASHES the entry goes to corrupt/, so that one
 * message cannot crash-loop a slice.
 */
void
deliver_note_crash(struct worker *w, const char *id)
{
	struct job j;
	const char *why = NULL;
	struct stat sb;

	memset(&j, 0, sizeof(j));
	if (!qid_valid(id) || !worker_owns(w, qid_bucket(id)))
		return;
	memcpy(j.e.id, id, QID_SIZE);
	j.e.bucket = (unsigned short)qid_bucket(id);
	j.bucketfd = w->bucketfd[j.e.bucket];
	if (fstatat(j.bucketfd, id, &sb, AT_SYMLINK_NOFOLLOW) == -1)
		return;		/* already delivered or moved */
	if (state_load(j.bucketfd, id, &j.st, &why) == -1 && errno != ENOENT) {
		move_aside(w, &j, w->corruptfd, SPOOL_CORRUPT, why != NULL ?
		    why : strerror(errno));
		return;
	}
	j.st.crashes++;
	log_msg(LOG_ERR, id, "the worker delivering this entry died "
	    "(%u time%s)", j.st.crashes, j.st.crashes == 1 ? "" : "s");
	if (j.st.crashes >= POISON_CRASHES)
		move_aside(w, &j, w->corruptfd, SPOOL_CORRUPT, "it crashed its "
		    "worker " "3 times");
	else if (state_save(j.bucketfd, id, &j.st) == -1)
		log_msg(LOG_ERR, id, "saving state: %s", strerror(errno));
	state_free(&j.st);
}

int
deliver_move_aside(struct worker *w, const char *id, int todir,
    const char *where, const char *why)
{
	struct job j;

	memset(&j, 0, sizeof(j));
	if (!qid_valid(id) || !worker_owns(w, qid_bucket(id)))
		return -1;
	memcpy(j.e.id, id, QID_SIZE);
	j.e.bucket = (unsigned short)qid_bucket(id);
	j.bucketfd = w->bucketfd[j.e.bucket];
	move_aside(w, &j, todir, where, why);
	return j.skip == 2 ? 0 : -1;
}
