/*
 * SPDX-License-Identifier: ISC
 *
 * The relays of smarthost: where a session goes, and when a relay pauses.
 *
 * smarthost is a comma-separated list tried in order: a session goes to
 * the first relay that is not pausing, so delivery survives a relay going
 * away and returns to the first one as soon as its pause is over.
 *
 * What a relay is blamed for follows Postfix's queue manager, which
 * calls a destination dead only when sessions cannot be had, and defers
 * messages, not the destination, for what a working session answers:
 *  - no session at all (connection refused or timed out, greeting or
 *    EHLO refused, TLS or AUTH that the configuration requires not had):
 *    the relay pauses;
 *  - a session that was set up and ended (421, drop, timeout) before it
 *    delivered anything: the caller defers the messages it touched and
 *    the relay is used again at once, unless DYING_GRACE sessions in a
 *    row ended so: then it pauses, so that a relay that drops every
 *    session costs no spinning;
 *  - a delivered message: the relay is well; its pauses start over.
 * The first pause lasts smarthost_backoff (a second by default), each
 * further one twice the last, up to relay_retry_time.  Each is logged
 * once, with its length and cause, and shown on the worker's relay board
 * (listq status).  A 4xx to a recipient is no concern of this file: the
 * recipient's own back-off (min_backoff, max_backoff) decides when it is
 * due again.
 *
 * Invariants: the states live in this process only (each worker learns
 * for itself; the board is a copy for display, written under a seqlock);
 * a pausing relay is not used while its pause lasts (listq flush ends
 * every pause); the worker waits only while every relay pauses, and only
 * until the first one comes back (relay_back_at); every pause is logged
 * with the relay's name.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "relay.h"

#define RELAYS_MAX	16
#define DYING_GRACE	3	/* sessions in a row that took nothing */

struct relay {
	char		name[RELAY_NAME_MAX];
	time_t		until;		/* pausing until then */
	unsigned int	pauses;		/* since the last delivered message */
	unsigned int	dying;		/* sessions in a row that took nothing */
	char		why[RELAY_WHY_MAX];	/* the cause of the last pause */
};

static struct relay relays[RELAYS_MAX];
static struct relay_board *board;

void
relay_board_attach(struct relay_board *b)
{
	board = b;
}

/* The state of a relay, made on first sight; NULL if the table is full. */
static struct relay *
relay_of(const char *name)
{
	size_t i;

	for (i = 0; i < RELAYS_MAX && relays[i].name[0] != '\0'; i++)
		if (strcmp(relays[i].name, name) == 0)
			return &relays[i];
	if (i == RELAYS_MAX)
		return NULL;
	strlcpy(relays[i].name, name, sizeof(relays[i].name));
	return &relays[i];
}

/* The next "host[:port]" of a smarthost list being split, or NULL. */
static char *
next_relay(char **p)
{
	char *item;

	while ((item = strsep(p, ",")) != NULL) {
		item += strspn(item, " \t");
		item[strcspn(item, " \t")] = '\0';
		if (*item != '\0')
			return item;
	}
	return NULL;
}

/* Calls fn for each relay of c->smarthost in order, until it returns 1. */
static struct relay *
each_relay(const struct config *c, int (*fn)(struct relay *, void *),
    void *arg)
{
	char list[CONFIG_STR_MAX], *p = list, *item;
	struct relay *r;

	strlcpy(list, c->smarthost, sizeof(list));
	while ((item = next_relay(&p)) != NULL)
		if ((r = relay_of(item)) != NULL && fn(r, arg))
			return r;
	return NULL;
}

static int
show_one(struct relay *r, void *arg)
{
	struct relay_board *b = arg;

	if (b->n < RELAYS_SHOWN) {
		strlcpy(b->r[b->n].name, r->name, sizeof(b->r[b->n].name));
		b->r[b->n].until = r->until;
		strlcpy(b->r[b->n].why, r->why, sizeof(b->r[b->n].why));
		b->n++;
	}
	return 0;
}

/* The board shows every relay of the list as this worker sees it. */
static void
publish(const struct config *c)
{
	struct relay_board b;

	if (board == NULL)
		return;
	memset(&b, 0, sizeof(b));
	(void)each_relay(c, show_one, &b);
	relay_board_write(board, &b);
}

/* smarthost_backoff, doubled for each pause before, up to the cap. */
static unsigned int
pause_length(const struct config *c, unsigned int pauses)
{
	unsigned long p = c->smarthost_backoff;
	unsigned int i;

	for (i = 1; i < pauses && p < c->relay_retry_time; i++)
		p *= 2;
	return p < c->relay_retry_time ? (unsigned int)p : c->relay_retry_time;
}

/* The relay pauses: logged once, shown on the board. */
static void
pause_relay(const struct config *c, struct relay *r, const char *what,
    const char *why)
{
	unsigned int len = pause_length(c, ++r->pauses);

	r->until = time(NULL) + (time_t)len;
	snprintf(r->why, sizeof(r->why), "%s (%s)", what, why);
	log_msg(LOG_WARNING, NULL, "relay %s: %s; paused %u s", r->name,
	    r->why, len);
	publish(c);
}

void
relay_no_session(const struct config *c, const char *relay, const char *why)
{
	struct relay *r = relay_of(relay);

	if (r != NULL)
		pause_relay(c, r, "no session", why);
}

void
relay_died(const struct config *c, const char *relay, const char *why)
{
	struct relay *r = relay_of(relay);
	char what[64];

	if (r == NULL)
		return;
	if (++r->dying <= DYING_GRACE) {
		log_msg(LOG_INFO, NULL, "relay %s: session ended before "
		    "delivering a message (%s); used again at once", relay, why);
		return;
	}
	snprintf(what, sizeof(what), "%u sessions in a row ended before "
	    "delivering a message", r->dying);
	pause_relay(c, r, what, why);
}

void
relay_delivered(const struct config *c, const char *relay, size_t n)
{
	struct relay *r = relay_of(relay);

	if (r == NULL || n == 0 || (r->pauses == 0 && r->dying == 0))
		return;
	r->pauses = r->dying = 0;
	r->until = 0;
	r->why[0] = '\0';
	publish(c);
}

static int
is_up(struct relay *r, void *arg)
{
	return r->until <= *(const time_t *)arg;
}

int
relay_pick(const struct config *c, time_t now, char *name, size_t len)
{
	const struct relay *r = each_relay(c, is_up, &now);

	if (r == NULL)
		return -1;
	strlcpy(name, r->name, len);
	return 0;
}

struct back {
	time_t	now, first;
};

static int
first_back(struct relay *r, void *arg)
{
	struct back *b = arg;

	if (r->until <= b->now) {
		b->first = b->now;
		return 1;
	}
	if (b->first == 0 || r->until < b->first)
		b->first = r->until;
	return 0;
}

time_t
relay_back_at(const struct config *c, time_t now)
{
	struct back b = { now, 0 };

	(void)each_relay(c, first_back, &b);
	return b.first;		/* 0 (no relay known yet), or now: one is up */
}

static int
end_pause(struct relay *r, void *arg)
{
	(void)arg;
	r->until = 0;
	return 0;
}

void
relay_flush(const struct config *c)
{
	(void)each_relay(c, end_pause, NULL);
	publish(c);
}

static void
relay_from(const struct config *c, char *item, struct smtp_relay *r)
{
	char *colon;

	memset(r, 0, sizeof(*r));
	r->host = item;
	if ((colon = strrchr(item, ':')) != NULL) {
		*colon = '\0';
		r->port = colon + 1;
	}
	r->connect_timeout = (int)c->connect_timeout;
	r->cmd_timeout = (int)c->command_timeout;
	r->data_timeout = (int)c->data_timeout;
	r->helo = c->helo_name;
	r->tls = (int)c->smtp_tls;
	r->no_pipelining = c->smtp_pipelining == 0;
	r->sessions = c->smtp_sessions;
	r->tls_ca_file = c->smtp_tls_ca_file[0] ? c->smtp_tls_ca_file : NULL;
	r->auth_user = c->smtp_auth_user[0] ? c->smtp_auth_user : NULL;
	r->auth_password_file = c->smtp_auth_password_file;
}

/*
 * What ended a session that delivered nothing: the reason the first
 * message it never offered carries, or the last message's.
 */
static const char *
why_ended(const struct smtp_msg *msgs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (msgs[i].untried)
			return msgs[i].reply;
	return n > 0 ? msgs[n - 1].reply : "";
}

/* smtp_deliver's outcome as the events above. */
static void
report(const struct config *c, const char *name, int rv,
    const struct smtp_msg *msgs, size_t n)
{
	size_t i, delivered = 0;

	for (i = 0; i < n; i++)
		delivered += msgs[i].status == 2;
	if (delivered > 0)
		relay_delivered(c, name, delivered);
	else if (rv == 1)
		relay_died(c, name, why_ended(msgs, n));
}

int
relay_session(const struct config *c, struct smtp_msg *msgs, size_t n,
    char *relay, size_t len,
    int (*done)(struct smtp_msg *, const char *, void *), void *arg)
{
	char name[RELAY_NAME_MAX], item[RELAY_NAME_MAX];
	struct smtp_relay r;
	int rv;

	publish(c);
	while (relay_pick(c, time(NULL), name, sizeof(name)) == 0) {
		strlcpy(item, name, sizeof(item));
		relay_from(c, item, &r);
		r.done = done;
		r.done_arg = arg;
		if ((rv = smtp_deliver(&r, msgs, n, relay, len)) != -1) {
			report(c, name, rv, msgs, n);
			return 0;
		}
		relay_no_session(c, name, n > 0 ? msgs[0].reply : "");
	}
	return -1;
}
