/*
 * SPDX-License-Identifier: ISC
 *
 * Composing listq's own notices with GMime: the notice of a held post to
 * each moderator (text, then the post as message/rfc822) and the notice
 * of a rejection to its poster.  They are queued as send entries from
 * the null sender through enqueue.c, as durable as any mail.
 *
 * Invariants: every notice carries Auto-Submitted: auto-replied (RFC
 * 3834) and the list's X-Loop, and none is ever sent to the null sender,
 * to a -bounces, -owner or MAILER-DAEMON address or about an
 * auto-submitted post; a sender gets at most one rejection notice an
 * hour (moderation/.replied, flock'd, shared by every process), so that
 * forged senders cannot turn the list into a backscatter source.
 * Failure modes: a post GMime cannot parse is still attached as its
 * raw bytes are read; a notice that cannot be queued is logged by the
 * caller, and the post stays held.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "enqueue.h"
#include "log.h"
#include "notice.h"
#include "number.h"
#include "spool.h"

#define QUOTE_LINES	12
#define QUOTE_WIDTH	200
#define REPLY_INTERVAL	3600	/* one rejection notice per sender */
#define REPLIED		".replied"

static void
mime_init(void)
{
	static int done;

	if (!done) {
		g_mime_init();
		done = 1;
	}
}

int
notice_first_address(const char *value, char *out, size_t len)
{
	InternetAddressList *l;
	InternetAddress *ia;
	int rc = -1, i, n;

	mime_init();
	out[0] = '\0';
	if ((l = internet_address_list_parse(NULL, value)) == NULL)
		return -1;
	n = internet_address_list_length(l);
	for (i = 0; i < n && rc == -1; i++) {
		ia = internet_address_list_get_address(l, i);
		if (!INTERNET_ADDRESS_IS_MAILBOX(ia))
			continue;
		strlcpy(out, internet_address_mailbox_get_addr(
		    INTERNET_ADDRESS_MAILBOX(ia)), len);
		rc = address_valid(out) ? 0 : -1;
	}
	g_object_unref(l);
	return rc;
}

bool
notice_addr_answerable(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t local;

	if (addr[0] == '\0' || at == NULL)
		return false;
	local = (size_t)(at - addr);
	if (local >= 8 && strncasecmp(at - 8, "-bounces", 8) == 0)
		return false;
	if (local >= 6 && strncasecmp(at - 6, "-owner", 6) == 0)
		return false;
	return !(local == 13 && strncasecmp(addr, "mailer-daemon", 13) == 0) &&
	    !(local >= 9 && strncasecmp(addr, "postmaster", 10) == 0 &&
	    local == 10) && strcasestr(addr, "-bounces+") == NULL;
}

static GMimeMessage *
notice_new(const struct list_conf *lc, const char *to, const char *subject)
{
	GMimeMessage *m = g_mime_message_new(TRUE);
	const char *domain = address_domain(lc->address);
	char owner[ADDR_MAX + 16], request[ADDR_MAX + 16], mid[128];
	GDateTime *now = g_date_time_new_now_local();
	unsigned char rnd[12];

	snprintf(owner, sizeof(owner), "%s-owner@%s", lc->name, domain);
	snprintf(request, sizeof(request), "%s-request@%s", lc->name, domain);
	arc4random_buf(rnd, sizeof(rnd));
	snprintf(mid, sizeof(mid), "listq.%02x%02x%02x%02x%02x%02x%02x%02x@%s",
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7],
	    domain);
	g_mime_message_add_mailbox(m, GMIME_ADDRESS_TYPE_FROM, lc->name, owner);
	g_mime_message_add_mailbox(m, GMIME_ADDRESS_TYPE_TO, NULL, to);
	g_mime_message_add_mailbox(m, GMIME_ADDRESS_TYPE_REPLY_TO, NULL,
	    request);
	g_mime_message_set_subject(m, subject, "utf-8");
	g_mime_message_set_date(m, now);
	g_mime_message_set_message_id(m, mid);
	g_date_time_unref(now);
	g_mime_object_set_header(GMIME_OBJECT(m), "Auto-Submitted",
	    "auto-replied", NULL);
	g_mime_object_set_header(GMIME_OBJECT(m), "X-Loop", lc->address, NULL);
	return m;
}

/* A new text/plain part; the caller drops its reference once added. */
static GMimeObject *
text_part(const char *text)
{
	GMimeTextPart *t = g_mime_text_part_new_with_subtype("plain");

	g_mime_text_part_set_text(t, text);
	return GMIME_OBJECT(t);
}

/* Serializes m and queues it as a send entry from <> to rcpt. */
static int
queue_notice(int spoolfd, const char *list, const char *rcpt,
    GMimeMessage *m, char id[QID_SIZE])
{
	GMimeStream *mem = g_mime_stream_mem_new();
	GByteArray *ba;
	struct entry_header h;
	int tmpfd, rc = -1, saved;

	memset(&h, 0, sizeof(h));
	strlcpy(h.command, "send", sizeof(h.command));
	strlcpy(h.list, list, sizeof(h.list));
	strlcpy(h.rcpt, rcpt, sizeof(h.rcpt));
	if (g_mime_object_write_to_stream(GMIME_OBJECT(m), NULL, mem) < 0)
		errno = EIO;
	else if ((tmpfd = spool_open_dir(spoolfd, SPOOL_TMP, LISTQ_UID,
	    LISTQ_GID)) != -1) {
		ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		rc = enqueue_message(spoolfd, tmpfd, &h, ba->data, ba->len,
		    LISTQ_UID, LISTQ_GID, id);
		saved = errno;
		close(tmpfd);
		errno = saved;
	}
	g_object_unref(mem);
	return rc;
}

/* The post, parsed from offset body of fd; NULL if GMime cannot. */
static GMimeMessage *
post_parse(int fd, size_t body)
{
	GMimeStream *fs, *sub;
	GMimeParser *p;
	GMimeMessage *m;
	int dfd = dup(fd);

	if (dfd == -1)
		return NULL;
	fs = g_mime_stream_fs_new(dfd);
	sub = g_mime_stream_substream(fs, (gint64)body, -1);
	p = g_mime_parser_new_with_stream(sub);
	m = g_mime_parser_construct_message(p, NULL);
	g_object_unref(p);
	g_object_unref(sub);
	g_object_unref(fs);
	return m;
}

/* The first lines of the post's text, quoted with "> ". */
static void
quote_post(FILE *f, GMimeMessage *post)
{
	GMimeObject *b = post != NULL ? g_mime_message_get_body(post) : NULL;
	char *text, *p, *line;
	int n = 0;

	if (b == NULL || !GMIME_IS_TEXT_PART(b) ||
	    (text = g_mime_text_part_get_text(GMIME_TEXT_PART(b))) == NULL) {
		fprintf(f, "  (no plain text part to quote)\n");
		return;
	}
	for (p = text; n < QUOTE_LINES && (line = strsep(&p, "\n")) != NULL;
	    n++) {
		if (p == NULL && line[0] == '\0')
			break;		/* after the last newline */
		line[strcspn(line, "\r")] = '\0';
		fprintf(f, "> %.*s\n", QUOTE_WIDTH, line);
	}
	if (p != NULL)
		fprintf(f, "> [...]\n");
	g_free(text);
}

static char *
held_text(const struct list_conf *lc, const char *id, const struct held *r,
    GMimeMessage *post, const char *approve, const char *reject,
    const char *discard)
{
	const char *domain = address_domain(lc->address);
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if ((f = open_memstream(&text, &len)) == NULL)
		return NULL;
	fprintf(f, "A post to %s is held for a moderator's decision.\n\n"
	    "  Queue id: %s\n  From:     %s\n  Sender:   %s\n  Subject:  %s\n"
	    "  Reason:   %s\n\nIt begins:\n\n", lc->address, id,
	    r->poster[0] != '\0' ? r->poster : "(none)", r->sender[0] != '\0' ?
	    r->sender : "<>", r->subject, r->reason);
	quote_post(f, post);
	fprintf(f, "\nTo APPROVE it, reply to this message keeping the "
	    "Subject, or send a\nmessage to %s-request@%s with this Subject:\n"
	    "  %s\n\nTo REJECT it (the sender is told), send a message to "
	    "%s-request@%s\nwith this Subject:\n  %s\n\nTo DISCARD it "
	    "silently, use this Subject:\n  %s\n\nOr on the list server: "
	    "listq approve %s | listq reject %s | listq discard %s\n"
	    "Undecided, it is discarded at %s", lc->name, domain, approve,
	    lc->name, domain, reject, discard, id, id, id,
	    ctime(&(time_t){ (time_t)r->expires }));
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

int
notice_held(int spoolfd, const struct list_conf *lc, const char *id, int fd,
    size_t body, const struct held *r, const unsigned char key[TOKEN_KEY_LEN],
    const struct addr_list *moderators)
{
	static const char *const actions[] = { "approve", "reject", "discard" };
	char tok[3][TOKEN_MAX], subject[TOKEN_MAX + 128], nid[QID_SIZE];
	struct token t = { .expires = r->expires };
	GMimeMessage *post, *m;
	GMimeObject *tp;
	GMimeMultipart *mp;
	GMimeMessagePart *mpart;
	size_t i;
	int sent = 0;
	char *text;

	mime_init();
	strlcpy(t.id, id, sizeof(t.id));
	for (i = 0; i < 3; i++) {
		strlcpy(t.action, actions[i], sizeof(t.action));
		token_make(key, lc->name, &t, tok[i]);
	}
	post = post_parse(fd, body);
	if ((text = held_text(lc, id, r, post, tok[0], tok[1], tok[2])) ==
	    NULL) {
		if (post != NULL)
			g_object_unref(post);
		return -1;
	}
	snprintf(subject, sizeof(subject), "%s: post held for approval %s",
	    lc->name, tok[0]);
	for (i = 0; i < moderators->n; i++) {
		m = notice_new(lc, moderators->v[i], subject);
		mp = g_mime_multipart_new_with_subtype("mixed");
		tp = text_part(text);
		g_mime_multipart_add(mp, tp);
		g_object_unref(tp);
		if (post != NULL) {
			mpart = g_mime_message_part_new_with_message("rfc822",
			    post);
			g_mime_multipart_add(mp, GMIME_OBJECT(mpart));
			g_object_unref(mpart);
		}
		g_mime_message_set_mime_part(m, GMIME_OBJECT(mp));
		g_object_unref(mp);
		if (queue_notice(spoolfd, lc->name, moderators->v[i], m,
		    nid) == 0) {
			log_msg(LOG_INFO, id, "moderation notice %s to <%s>",
			    nid, moderators->v[i]);
			sent++;
		} else
			log_msg(LOG_ERR, id, "moderation notice to <%s> not "
			    "queued: %s", moderators->v[i], strerror(errno));
		g_object_unref(m);
	}
	free(text);
	if (post != NULL)
		g_object_unref(post);
	return sent > 0 || moderators->n == 0 ? sent : -1;
}

/* "TIME ADDRESS" of moderation/.replied; -1 if the line is not one. */
static int
replied_line(const char *line, long long *t, char *addr, size_t len)
{
	const char *sp = strchr(line, ' ');
	uint64_t n;
	char num[24];

	if (sp == NULL || (size_t)(sp - line) >= sizeof(num))
		return -1;
	memcpy(num, line, (size_t)(sp - line));
	num[sp - line] = '\0';
	if (number_parse(num, INT64_MAX, &n) == -1 ||
	    strlcpy(addr, sp + 1, len) >= len)
		return -1;
	addr[strcspn(addr, "\n")] = '\0';
	*t = (long long)n;
	return address_valid(addr) ? 0 : -1;
}

int
notice_ledger(int spoolfd, const char *path, const char *addr, time_t now,
    const struct ledger_limit *lim)
{
	char line[ADDR_MAX + 32], a[ADDR_MAX + 1];
	unsigned int mine = 0, recent = 0;
	char *keep = NULL;
	size_t klen = 0;
	FILE *f, *k;
	int fd, rc;
	long long t;

	if ((fd = openat(spoolfd, path, O_RDWR | O_CREAT | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1)
		return -1;
	if (flock(fd, LOCK_EX) == -1 || (f = fdopen(fd, "r+")) == NULL) {
		close(fd);
		return -1;
	}
	if ((k = open_memstream(&keep, &klen)) == NULL) {
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL)
		if (replied_line(line, &t, a, sizeof(a)) == 0 &&
		    t > (long long)now - (long long)lim->per_addr_window) {
			fputs(line, k);
			mine += address_equal(a, addr);
			recent += t > (long long)now -
			    (long long)lim->total_window;
		}
	rc = mine >= lim->per_addr ? 1 : recent >= lim->total ? 2 : 0;
	if (rc == 0)
		fprintf(k, "%lld %s\n", (long long)now, addr);
	fclose(k);
	if (keep != NULL && ftruncate(fd, 0) == 0 &&
	    pwrite(fd, keep, klen, 0) == (ssize_t)klen)
		fsync(fd);
	free(keep);
	fclose(f);
	return rc;
}

/* Was addr told within the hour?  If not, records it now. */
static bool
recently_told(int spoolfd, const char *addr, time_t now)
{
	static const struct ledger_limit once_an_hour = { 1, REPLY_INTERVAL,
	    UINT_MAX, REPLY_INTERVAL };
	char path[64];

	snprintf(path, sizeof(path), "%s/%s", SPOOL_MODERATION, REPLIED);
	return notice_ledger(spoolfd, path, addr, now, &once_an_hour) != 0;
}

int
notice_plain(int spoolfd, const struct list_conf *lc, const char *to,
    const char *subject, const char *text, char nid[QID_SIZE])
{
	GMimeMessage *m;
	GMimeObject *tp;
	int rc;

	mime_init();
	m = notice_new(lc, to, subject);
	tp = text_part(text);
	g_mime_message_set_mime_part(m, tp);
	g_object_unref(tp);
	rc = queue_notice(spoolfd, lc->name, to, m, nid);
	g_object_unref(m);
	return rc;
}

int
notice_rejected(int spoolfd, const char *id, const struct held *r,
    const char *reason)
{
	struct list_conf lc;
	char err[512], subject[ADDR_MAX + 64], nid[QID_SIZE], *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (!notice_addr_answerable(r->sender))
		return 1;
	if (list_conf_load(LISTDIR, r->list, &lc, err, sizeof(err)) == -1) {
		errno = ENOENT;
		return -1;
	}
	if (recently_told(spoolfd, r->sender, time(NULL))) {
		log_msg(LOG_INFO, id, "no rejection notice to <%s>: one went "
		    "within the hour", r->sender);
		return 1;
	}
	if ((f = open_memstream(&text, &len)) == NULL)
		return -1;
	fprintf(f, "Your message to %s was not distributed to the list.\n\n"
	    "  Subject: %s\n  Reason:  %s\n\nThis notice is automatic; "
	    "the list's owners are %s-owner@%s.\n", lc.address, r->subject,
	    reason, lc.name, address_domain(lc.address));
	if (fclose(f) != 0) {
		free(text);
		return -1;
	}
	snprintf(subject, sizeof(subject), "Your post to %s was rejected",
	    lc.address);
	rc = notice_plain(spoolfd, &lc, r->sender, subject, text, nid);
	free(text);
	if (rc == 0)
		log_msg(LOG_INFO, id, "rejection notice %s to <%s>", nid,
		    r->sender);
	return rc;
}
