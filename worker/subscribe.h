/*
 * SPDX-License-Identifier: ISC
 *
 * Members' own door (subscribe.c): subscribe and unsubscribe by mail to
 * name-request, each confirmed by a token mailed to the address itself.
 *
 *	SPOOLDIR/subscribe/<id>		a pending request, <id> the
 *					request mail's queue id:
 *	list: mylist
 *	action: subscribe | unsubscribe
 *	address: alice@example.net
 *	expires: 1765584000
 *
 *	SPOOLDIR/subscribe/.sent	"time address" of each
 *					confirmation of the last day
 */
#ifndef LISTQ_SUBSCRIBE_H
#define LISTQ_SUBSCRIBE_H

#include <stdbool.h>

#include "list.h"
#include "token.h"
#include "worker.h"

#define SPOOL_SUBSCRIBE	"subscribe"

/* "subscribe", "unsubscribe" or "help" when the Subject asks it, or NULL. */
const char *sub_command(const char *subject);

/* Is a token's action one of ours? */
bool	sub_action(const char *action);

/*
 * A request rid of list lc to (un)subscribe addr (the From:): one
 * confirmation with a token made with key, unless a limit or a check
 * says no, which is logged.
 */
void	sub_ask(struct worker *w, const char *rid, const struct list_conf *lc,
	    const char *action, const char *addr,
	    const unsigned char key[TOKEN_KEY_LEN]);

/* A verified token t came back: completes its pending request once. */
void	sub_confirm(struct worker *w, const char *rid,
	    const struct list_conf *lc, const struct token *t);

#endif
