/*
 * SPDX-License-Identifier: ISC
 *
 * The posting gate (gate.c): who may post to a list, decided once per
 * post before its recipients are expanded.
 */
#ifndef LISTQ_GATE_H
#define LISTQ_GATE_H

#include <stddef.h>

#include "entry.h"
#include "list.h"
#include "worker.h"

enum gate_verdict {
	GATE_PASS,	/* expand and deliver it */
	GATE_TAKEN,	/* held, rejected or discarded: no longer queued */
	GATE_LATER	/* could not act now: try again later (logged) */
};

/*
 * Decides for post id (entry h, message at offset body of fd, header
 * section head) of list lc in bucket bucketfd, and acts on it.
 */
enum gate_verdict gate_post(struct worker *w, const struct entry_header *h,
	    int bucketfd, int fd, size_t body, const char *head,
	    const struct list_conf *lc);

/*
 * Takes a decision mailed to name-request (entry h): finds its token,
 * checks it and who sent it, and applies it through the post's owner.
 * Every outcome is one log line; the request entry is then consumed.
 */
void	gate_request(struct worker *w, const struct entry_header *h,
	    const char *head, const struct list_conf *lc);

#endif
