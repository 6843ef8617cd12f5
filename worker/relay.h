/*
 * The smarthost list and its failover (relay.c).
 */
#ifndef LISTQ_RELAY_H
#define LISTQ_RELAY_H

#include <stddef.h>

#include "config.h"
#include "smtp.h"

/*
 * Sends msgs over one session with the first relay of c->smarthost that
 * is not resting; a relay that cannot be reached (refused, timed out,
 * 421) rests for relay_retry_time.  Returns 0 when a session ran (relay
 * names the relay), -1 when none could be reached.  done and arg are
 * smtp_relay's per-transaction callback.
 */
int	relay_session(const struct config *c, struct smtp_msg *msgs, size_t n,
	    char *relay, size_t len,
	    int (*done)(struct smtp_msg *, const char *, void *), void *arg);

/*
 * The relay of the last session ended it before taking any message: it
 * rests for relay_retry_time, logged with why.  Returns 1 when every
 * relay now rests (the worker then waits smarthost_backoff), else 0.
 */
int	relay_rest_last(const struct config *c, const char *why);

#endif
