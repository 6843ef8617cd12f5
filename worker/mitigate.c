/*
 * SPDX-License-Identifier: ISC
 *
 * DMARC mitigation of a post: the decision, and the copy the members get.
 *
 * A list with dmarc_mitigation = munge_from or wrap mitigates a post
 * whose From: domain publishes p=reject or p=quarantine (dmarc.c), every
 * post with dmarc_mitigation_always = yes, a post whose From: holds
 * several mailboxes or none that parses, and one whose domain's record
 * is malformed (a receiver's reading of it cannot be known; a needless
 * rewrite costs less than rejected copies).  A temporary DNS failure
 * defers the post (retried each TEMPFAIL_RETRY seconds) until
 * dmarc_defer_time after its arrival, then mitigates it: a post is never
 * relayed unmitigated on a guess.
 *
 * munge_from: the first From: field gives way, where it stood, to
 *   From: <name> via <list> <list address>
 *   Reply-To: <the original Reply-To: addresses>, <author>   (or Cc:)
 *   X-Original-From: <the original From: addresses>
 * (values formatted by GMime, RFC 2047 where needed); every other From:,
 * Reply-To: (Cc:) and X-Original-From: field of the post is dropped;
 * the rest of the message is copied byte for byte.  <name> is the
 * author's display name, or the local part of the address.
 * wrap: a message from the list, composed with GMime, whose header holds
 * the same From:, Reply-To: (Cc:) and X-Original-From:, the post's To:,
 * Cc:, Subject:, Date:, In-Reply-To: and References:, Message-ID:
 * <ID.wrapped@list domain>, MIME-Version: 1.0, Content-Type:
 * message/rfc822 and Content-Disposition: inline, and whose body is the
 * post, byte for byte.  A post whose header section exceeds HEAD_MAX is
 * wrapped when it should be munged.
 *
 * Invariants: the post in the spool is never changed (the copy is an
 * unlinked file in tmp/); the message body is copied in 64 KiB pieces,
 * never held whole (invariant 8).  Failure modes: a copy that cannot be
 * written returns -1 with errno, and the post waits.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "address.h"
#include "dmarc.h"
#include "log.h"
#include "mitigate.h"
#include "msghead.h"

#define TEMPFAIL_RETRY	60
#define COPY_BUF	65536

/* One header field of a header section: name, value, whole extent. */
struct field {
	const char	*start, *end;	/* the field, folded lines included */
	const char	*value;
	size_t		 nlen;
};

/* The field at *p, moving *p past it; 0 at the end of the section. */
static int
next_field(const char **p, struct field *f)
{
	const char *s = *p, *nl;

	if (*s == '\0')
		return 0;
	f->start = s;
	f->nlen = strcspn(s, ":\n");
	f->value = s[f->nlen] == ':' ? s + f->nlen + 1 : s + f->nlen;
	for (nl = strchr(s, '\n'); nl != NULL && (nl[1] == ' ' ||
	    nl[1] == '\t'); nl = strchr(nl + 1, '\n'))
		continue;
	f->end = nl != NULL ? nl + 1 : s + strlen(s);
	*p = f->end;
	return 1;
}

static int
is_field(const struct field *f, const char *name)
{
	return f->nlen == strlen(name) && strncasecmp(f->start, name,
	    f->nlen) == 0;
}

/* The value of the first field name, unfolded (caller frees), or NULL. */
static char *
field_value(const char *head, const char *name)
{
	struct field f;
	const char *p = head;
	char *v, *o;
	const char *s;

	while (next_field(&p, &f))
		if (is_field(&f, name)) {
			if ((v = malloc((size_t)(f.end - f.value) + 1)) == NULL)
				return NULL;
			for (o = v, s = f.value; s < f.end; s++)
				if (*s != '\n' && *s != '\r')
					*o++ = *s;
			*o = '\0';
			return v;
		}
	return NULL;
}

/* The mailboxes of header name, as GMime parses them (caller unrefs). */
static InternetAddressList *
field_addresses(const char *head, const char *name)
{
	char *v = field_value(head, name);
	InternetAddressList *l = v != NULL ? internet_address_list_parse(NULL,
	    v) : NULL;

	free(v);
	return l != NULL ? l : internet_address_list_new();
}

/* The single author mailbox of From:, or NULL (none, or several). */
static InternetAddressMailbox *
author(InternetAddressList *from)
{
	InternetAddress *ia;

	if (internet_address_list_length(from) != 1)
		return NULL;
	ia = internet_address_list_get_address(from, 0);
	if (!INTERNET_ADDRESS_IS_MAILBOX(ia) || strchr(
	    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)),
	    '@') == NULL)
		return NULL;
	return INTERNET_ADDRESS_MAILBOX(ia);
}

/* The three header values both mitigations write (caller g_free()s). */
struct munged {
	char	*from, *author_in, *original;
};

static void
munged_free(struct munged *m)
{
	g_free(m->from);
	g_free(m->author_in);
	g_free(m->original);
}

/* "<name> via <list>", control characters made spaces. */
static char *
via_name(InternetAddressMailbox *a, const struct list_conf *lc)
{
	const char *name = a != NULL ? internet_address_get_name(
	    INTERNET_ADDRESS(a)) : NULL, *addr;
	char *v, *s;

	if (a != NULL && (name == NULL || *name == '\0')) {
		addr = internet_address_mailbox_get_addr(a);
		v = g_strdup_printf("%.*s via %s", (int)strcspn(addr, "@"),
		    addr, lc->name);
	} else
		v = g_strdup_printf("%s via %s", name != NULL ? name :
		    "unknown author", lc->name);
	for (s = v; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
	return v;
}

static void
munge_values(const char *head, const struct list_conf *lc,
    struct munged *m)
{
	InternetAddressList *from = field_addresses(head, "From");
	InternetAddressList *to = field_addresses(head, lc->dmarc_author_cc ?
	    "Cc" : "Reply-To");
	InternetAddressMailbox *a = author(from);
	InternetAddress *ia;
	char *name = via_name(a, lc);

	ia = internet_address_mailbox_new(name, lc->address);
	m->from = internet_address_to_string(ia, NULL, TRUE);
	g_object_unref(ia);
	g_free(name);
	if (a != NULL && !internet_address_list_contains(to,
	    INTERNET_ADDRESS(a)))
		internet_address_list_add(to, INTERNET_ADDRESS(a));
	m->author_in = internet_address_list_length(to) > 0 ?
	    internet_address_list_to_string(to, NULL, TRUE) : NULL;
	m->original = internet_address_list_length(from) > 0 ?
	    internet_address_list_to_string(from, NULL, TRUE) : NULL;
	g_object_unref(from);
	g_object_unref(to);
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Appends bytes [from, to) of fd to out, 64 KiB at a time. */
static int
copy_range(int fd, off_t from, off_t to, int out)
{
	char *buf = malloc(COPY_BUF);
	ssize_t n;

	if (buf == NULL)
		return -1;
	while (from < to) {
		n = pread(fd, buf, (size_t)(to - from) < COPY_BUF ?
		    (size_t)(to - from) : COPY_BUF, from);
		if (n <= 0 || write_all(out, buf, (size_t)n) == -1) {
			if (n == 0)
				errno = EIO;
			free(buf);
			return -1;
		}
		from += n;
	}
	free(buf);
	return 0;
}

static int
write_field(int out, const char *name, const char *value)
{
	char *line;
	int rc;

	if (value == NULL)
		return 0;
	if ((line = g_strdup_printf("%s: %s\n", name, value)) == NULL)
		return -1;
	rc = write_all(out, line, strlen(line));
	g_free(line);
	return rc;
}

/* The post's header section rewritten as munge_from says. */
static int
write_munged_head(int out, const char *head, const struct list_conf *lc,
    const struct munged *m)
{
	const char *dropped = lc->dmarc_author_cc ? "Cc" : "Reply-To";
	const char *p = head;
	struct field f;
	int done = 0;

	while (next_field(&p, &f)) {
		if (is_field(&f, "From") && !done) {
			done = 1;
			if (write_field(out, "From", m->from) == -1 ||
			    write_field(out, dropped, m->author_in) == -1 ||
			    write_field(out, "X-Original-From", m->original) ==
			    -1)
				return -1;
			continue;
		}
		if (is_field(&f, "From") || is_field(&f, dropped) ||
		    is_field(&f, "X-Original-From"))
			continue;
		if (write_all(out, f.start, (size_t)(f.end - f.start)) == -1)
			return -1;
	}
	if (!done && (write_field(out, "From", m->from) == -1 ||
	    write_field(out, dropped, m->author_in) == -1))
		return -1;
	return 0;
}

/* Adds the addresses of header name of the post to the wrapper's. */
static void
copy_addresses(GMimeMessage *w, GMimeAddressType type, const char *head,
    const char *name)
{
	InternetAddressList *l = field_addresses(head, name);

	internet_address_list_append(g_mime_message_get_addresses(w, type), l);
	g_object_unref(l);
}

/* Copies a header of the post into the wrapper, as GMime reads it. */
static void
copy_header(GMimeMessage *w, const char *head, const char *name)
{
	char *v = field_value(head, name), *text;

	if (v == NULL)
		return;
	text = g_mime_utils_header_decode_text(NULL, v);
	g_mime_object_append_header(GMIME_OBJECT(w), name, g_strstrip(text),
	    "utf-8");
	g_free(text);
	free(v);
}

/* The wrapper's header, as wrap says (see the top of this file). */
static void
wrap_headers(GMimeMessage *w, const struct post *p, const struct list_conf *lc,
    const struct munged *m)
{
	GMimeObject *o = GMIME_OBJECT(w);
	char id[128];

	g_mime_object_append_header(o, "From", m->from, NULL);
	if (m->author_in != NULL)
		g_mime_object_append_header(o, lc->dmarc_author_cc ? "Cc" :
		    "Reply-To", m->author_in, NULL);
	if (m->original != NULL)
		g_mime_object_append_header(o, "X-Original-From", m->original,
		    NULL);
	copy_addresses(w, GMIME_ADDRESS_TYPE_TO, p->head, "To");
	if (!lc->dmarc_author_cc)
		copy_addresses(w, GMIME_ADDRESS_TYPE_CC, p->head, "Cc");
	copy_header(w, p->head, "Subject");
	copy_header(w, p->head, "Date");
	snprintf(id, sizeof(id), "%s.wrapped@%s", p->id,
	    address_domain(lc->address));
	g_mime_message_set_message_id(w, id);
	copy_header(w, p->head, "In-Reply-To");
	copy_header(w, p->head, "References");
	g_mime_object_append_header(o, "MIME-Version", "1.0", NULL);
}

/* The wrapper around the post, written by GMime to out. */
static int
write_wrapped(int out, const struct post *p, const struct list_conf *lc,
    const struct munged *m)
{
	GMimeMessage *w = g_mime_message_new(FALSE);
	GMimePart *part = g_mime_part_new_with_type("message", "rfc822");
	GMimeStream *in, *os;
	GMimeDataWrapper *dw;
	int infd = dup(p->fd), outfd = dup(out), rc = -1;

	if (infd == -1 || outfd == -1) {
		if (infd != -1)
			close(infd);
		if (outfd != -1)
			close(outfd);
		g_object_unref(part);
		g_object_unref(w);
		return -1;
	}
	wrap_headers(w, p, lc, m);
	in = g_mime_stream_fs_new_with_bounds(infd, (gint64)p->body,
	    (gint64)p->fsize);
	dw = g_mime_data_wrapper_new_with_stream(in,
	    GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(part, dw);
	g_mime_object_append_header(GMIME_OBJECT(part), "Content-Disposition",
	    "inline", NULL);
	g_mime_message_set_mime_part(w, GMIME_OBJECT(part));
	os = g_mime_stream_fs_new(outfd);
	if (g_mime_object_write_to_stream(GMIME_OBJECT(w), NULL, os) != -1 &&
	    g_mime_stream_flush(os) == 0)
		rc = 0;
	g_object_unref(os);
	g_object_unref(dw);
	g_object_unref(in);
	g_object_unref(part);
	g_object_unref(w);
	return rc;
}

/* Is the post's whole header section in p->head (not cut at HEAD_MAX)? */
static int
head_complete(const struct post *p)
{
	off_t end = (off_t)(p->body + strlen(p->head));
	char c;

	return end >= p->fsize || (pread(p->fd, &c, 1, end) == 1 &&
	    (c == '\n' || c == '\r'));
}

/* An unlinked file in SPOOLDIR/tmp for the copy. */
static int
open_copy(const struct post *p)
{
	char name[64];
	int fd;

	fd = openat(p->spoolfd, "tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd != -1 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd;
	snprintf(name, sizeof(name), "tmp/%s.mitigated", p->id);
	unlinkat(p->spoolfd, name, 0);
	if ((fd = openat(p->spoolfd, name, O_CREAT | O_EXCL | O_RDWR |
	    O_CLOEXEC | O_NOFOLLOW, 0600)) != -1)
		unlinkat(p->spoolfd, name, 0);
	return fd;
}

/* Writes the copy; 0 with out filled, -1 with errno. */
static int
make_copy(const struct post *p, const struct list_conf *lc, int wrap,
    struct mitigated *out)
{
	struct munged m = { NULL, NULL, NULL };
	int fd, rc, saved;

	if ((fd = open_copy(p)) == -1)
		return -1;
	munge_values(p->head, lc, &m);
	rc = copy_range(p->fd, 0, (off_t)p->body, fd);
	if (rc == 0 && wrap)
		rc = write_wrapped(fd, p, lc, &m);
	else if (rc == 0)
		rc = write_munged_head(fd, p->head, lc, &m) == -1 ? -1 :
		    copy_range(p->fd, (off_t)(p->body + strlen(p->head)),
		    p->fsize, fd);
	munged_free(&m);
	if (rc == 0 && (out->size = lseek(fd, 0, SEEK_END)) != -1 &&
	    (out->head = msghead_read(fd, p->body)) != NULL) {
		out->fd = fd;
		return 0;
	}
	saved = errno != 0 ? errno : EIO;
	close(fd);
	errno = saved;
	return -1;
}

/* The domain of the single From: mailbox, or NULL. */
static char *
author_domain(const char *head)
{
	InternetAddressList *from = field_addresses(head, "From");
	InternetAddressMailbox *a = author(from);
	char *d = NULL;

	if (a != NULL)
		d = strdup(strrchr(internet_address_mailbox_get_addr(a), '@') +
		    1);
	g_object_unref(from);
	return d;
}

/*
 * Does the post need mitigating?  1 yes, 0 no, -1 not known yet (a
 * temporary failure, why says which).
 */
static int
needs_mitigation(const struct config *c, const struct list_conf *lc,
    const struct post *p, char *why, size_t len)
{
	enum dmarc_policy pol;
	char *domain;

	if (lc->dmarc_always) {
		snprintf(why, len, "dmarc_mitigation_always");
		return 1;
	}
	if ((domain = author_domain(p->head)) == NULL) {
		snprintf(why, len, "no single author in From:");
		return 1;
	}
	pol = dmarc_policy(c, domain, why, len);
	if (pol == DMARC_TEMPFAIL) {
		free(domain);
		return -1;
	}
	if (pol != DMARC_ABSENT && pol != DMARC_P_NONE) {
		log_msg(LOG_INFO, p->id, "DMARC policy of %s: %s %s", domain,
		    dmarc_policy_name(pol), why);
		snprintf(why, len, "p=%s at %s", dmarc_policy_name(pol), domain);
	}
	free(domain);
	return pol != DMARC_ABSENT && pol != DMARC_P_NONE;
}

int
mitigate_post(const struct config *c, const struct list_conf *lc,
    const struct post *p, struct mitigated *out, time_t *retry)
{
	time_t now = time(NULL), until = p->arrival + (time_t)c->dmarc_defer_time;
	static int ready;
	char why[128] = "";
	int need, wrap = lc->dmarc_mitigation == DMARC_WRAP;

	out->fd = -1;
	out->head = NULL;
	if (lc->dmarc_mitigation == DMARC_MITIGATE_NONE || p->head == NULL)
		return 0;
	if (!ready) {
		g_mime_init();
		ready = 1;
	}
	need = needs_mitigation(c, lc, p, why, sizeof(why));
	if (need == -1 && now < until) {
		*retry = now + (until - now < TEMPFAIL_RETRY ? until - now :
		    TEMPFAIL_RETRY);
		log_msg(LOG_WARNING, p->id, "DMARC policy unknown (%s); post "
		    "deferred for %lld s", why, (long long)(*retry - now));
		return 1;
	}
	if (need == 0)
		return 0;
	if (need == -1)
		snprintf(why, sizeof(why), "DMARC policy still unknown after "
		    "dmarc_defer_time");
	if (!wrap && !head_complete(p)) {
		wrap = 1;
		log_msg(LOG_INFO, p->id, "header over %d bytes: wrapped, not "
		    "munged", HEAD_MAX);
	}
	if (make_copy(p, lc, wrap, out) == -1) {
		log_msg(LOG_ERR, p->id, "cannot write the DMARC-safe copy: %s",
		    strerror(errno));
		return -1;
	}
	log_msg(LOG_INFO, p->id, "DMARC mitigation: %s (%s)", wrap ? "wrap" :
	    "munge_from", why);
	return 0;
}
