/*
 * Relay failover.  smarthost is a comma-separated list, tried in order;
 * a relay that held no session (connection refused, timeout, 421 or a
 * refusing greeting) rests for relay_retry_time and the next one is used,
 * so delivery survives one relay going away, and returns to the first
 * once its rest is over.
 *
 * A relay that held a session but took no message in it before ending
 * it early (a 421 or a drop at the first transaction) rests the same way
 * (relay_rest_last), so that a relay that always drops is not reconnected
 * to in a loop: what the session did not offer stays due at once.
 *
 * Invariants: the resting times live in this process only (each worker
 * learns for itself, no shared state to corrupt); a resting relay is
 * tried only when every relay rests; every failure is logged with the
 * relay's name.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "relay.h"

#define RELAYS_MAX	16

static struct {
	char	name[256];
	time_t	rest_until;
} rest[RELAYS_MAX];

static char last_relay[256];	/* the relay of the last session */

/* The resting slot of a relay "host:port", made on first sight. */
static time_t *
rest_of(const char *name)
{
	size_t i, free_slot = RELAYS_MAX;

	for (i = 0; i < RELAYS_MAX; i++) {
		if (strcmp(rest[i].name, name) == 0)
			return &rest[i].rest_until;
		if (rest[i].name[0] == '\0' && free_slot == RELAYS_MAX)
			free_slot = i;
	}
	if (free_slot == RELAYS_MAX)
		return NULL;
	strlcpy(rest[free_slot].name, name, sizeof(rest[free_slot].name));
	rest[free_slot].rest_until = 0;
	return &rest[free_slot].rest_until;
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

/* The next "host:port" of a smarthost list being split, or NULL. */
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

/*
 * One pass over the relays; resting ones are skipped unless rested is
 * set.  Returns 0 when a session ran, -1 otherwise; *tried counts the
 * relays tried.
 */
static int
relay_pass(const struct config *c, struct smtp_msg *msgs, size_t n,
    char *relay, size_t len, int rested, int *tried,
    const struct smtp_relay *cb)
{
	char list[CONFIG_STR_MAX], name[256], *p = list, *item;
	struct smtp_relay r;
	time_t now = time(NULL), *until;

	strlcpy(list, c->smarthost, sizeof(list));
	while ((item = next_relay(&p)) != NULL) {
		strlcpy(name, item, sizeof(name));
		if ((until = rest_of(name)) != NULL && *until > now && !rested)
			continue;
		relay_from(c, item, &r);
		r.done = cb->done;
		r.done_arg = cb->done_arg;
		(*tried)++;
		if (smtp_deliver(&r, msgs, n, relay, len) == 0) {
			strlcpy(last_relay, name, sizeof(last_relay));
			return 0;
		}
		if (until != NULL)
			*until = now + (time_t)c->relay_retry_time;
		log_msg(LOG_WARNING, NULL, "relay %s: %s; not used for %u s",
		    name, msgs[0].reply, c->relay_retry_time);
	}
	return -1;
}

/*
 * Relays that rest are passed over while another may answer; when all
 * rest, all are tried (the worker's own back-off spaces those tries).
 */
int
relay_session(const struct config *c, struct smtp_msg *msgs, size_t n,
    char *relay, size_t len,
    int (*done)(struct smtp_msg *, const char *, void *), void *arg)
{
	struct smtp_relay cb = { .done = done, .done_arg = arg };
	int tried = 0;

	if (relay_pass(c, msgs, n, relay, len, 0, &tried, &cb) == 0)
		return 0;
	if (tried > 0)
		return -1;
	return relay_pass(c, msgs, n, relay, len, 1, &tried, &cb);
}

int
relay_rest_last(const struct config *c, const char *why)
{
	char list[CONFIG_STR_MAX], name[256], *p = list, *item;
	time_t now = time(NULL), *until;
	int all = 1;

	if ((until = rest_of(last_relay)) != NULL)
		*until = now + (time_t)c->relay_retry_time;
	log_msg(LOG_WARNING, NULL, "relay %s: %s; not used for %u s",
	    last_relay, why, c->relay_retry_time);
	strlcpy(list, c->smarthost, sizeof(list));
	while (all && (item = next_relay(&p)) != NULL) {
		strlcpy(name, item, sizeof(name));
		all = (until = rest_of(name)) != NULL && *until > now;
	}
	return all;
}
