/*
 * SPDX-License-Identifier: ISC
 *
 * The smarthost list: which relay a session goes to, and when a relay
 * pauses (relay.c).
 *
 * An SMTP client reports what became of each session with a relay by
 * one of the three events below; relay_session() does it for smtp.c.
 * The worker asks relay_back_at() whether it may start a session at
 * all.  Relays are named as in smarthost ("host[:port]").
 */
#ifndef LISTQ_RELAY_H
#define LISTQ_RELAY_H

#include <stddef.h>
#include <time.h>

#include "config.h"
#include "smtp.h"
#include "stats.h"

/*
 * No session could be had: connection refused or timed out, greeting or
 * EHLO refused, TLS or AUTH that the configuration requires not had.
 * The relay pauses (logged with why).
 */
void	relay_no_session(const struct config *c, const char *relay,
	    const char *why);

/*
 * A session was set up, then ended by the relay (421, a drop, a
 * timeout) before it delivered any message.  It is used again at once,
 * unless this happened several sessions in a row: then it pauses.
 */
void	relay_died(const struct config *c, const char *relay,
	    const char *why);

/* A session delivered n messages; n > 0 ends the relay's troubles. */
void	relay_delivered(const struct config *c, const char *relay, size_t n);

/*
 * The first relay of c->smarthost that is not pausing at now, into
 * name; -1 if every relay pauses.
 */
int	relay_pick(const struct config *c, time_t now, char *name,
	    size_t len);

/* now or earlier when a relay may be used; else when the first is back. */
time_t	relay_back_at(const struct config *c, time_t now);

/* listq flush: every pause ends now (their lengths still grow). */
void	relay_flush(const struct config *c);

/* Where this worker shows its relays to the master (its slot). */
void	relay_board_attach(struct relay_board *b);

/*
 * Sends msgs over one smtp.c session with the first relay not pausing,
 * reporting the events above; a relay that gives no session is followed
 * by the next.  Returns 0 when a session ran (relay names the relay),
 * -1 when none could be had.  done and arg are smtp_relay's
 * per-transaction callback.
 */
int	relay_session(const struct config *c, struct smtp_msg *msgs, size_t n,
	    char *relay, size_t len,
	    int (*done)(struct smtp_msg *, const char *, void *), void *arg);

#endif
