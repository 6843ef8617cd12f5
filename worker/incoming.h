/*
 * SPDX-License-Identifier: ISC
 *
 * What arrives at a list's -bounces address (incoming.c).
 */
#ifndef LISTQ_INCOMING_H
#define LISTQ_INCOMING_H

#include <stddef.h>

#include "entry.h"
#include "list.h"
#include "worker.h"

/*
 * Looks at a bounces entry (message at offset body of fd).  Returns 1
 * when it was a bounce and has been recorded against the members it
 * names (the entry is then done), 0 when it is not one listq recognizes
 * and must go to the owners.
 */
int	incoming_bounce(struct worker *w, const struct entry_header *h, int fd,
	    size_t body, const struct list_conf *lc);

#endif
