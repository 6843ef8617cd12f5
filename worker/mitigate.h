/*
 * SPDX-License-Identifier: ISC
 *
 * DMARC mitigation of a post (mitigate.c): From: rewritten or the post
 * wrapped, when its author's domain asks receivers to reject or
 * quarantine mail that fails DMARC.
 */
#ifndef LISTQ_MITIGATE_H
#define LISTQ_MITIGATE_H

#include <sys/types.h>

#include <stddef.h>
#include <time.h>

#include "config.h"
#include "list.h"

struct post {
	const char	*id;		/* queue id, for log lines */
	int		 fd;		/* the entry, read with pread only */
	size_t		 body;		/* where its message starts */
	off_t		 fsize;
	const char	*head;		/* its header section (msghead.h) */
	time_t		 arrival;
	int		 spoolfd;	/* SPOOLDIR: the copy goes in tmp/ */
};

struct mitigated {
	int		 fd;		/* the copy, or -1: send the post */
	off_t		 size;
	char		*head;		/* the copy's header section */
};

/*
 * What the members get of post p of list lc.  0: out->fd is -1 (the post
 * goes as it is) or an unlinked file laid out like the entry (its
 * first p->body bytes are the entry's, then the mitigated message), with
 * out->head its header section (caller frees, closes).  1: the policy
 * is unknown for now (a temporary DNS failure, within dmarc_defer_time
 * of arrival): try again at *retry.  -1: the copy could not be written
 * (errno); logged.
 */
int	mitigate_post(const struct config *c, const struct list_conf *lc,
	    const struct post *p, struct mitigated *out, time_t *retry);

#endif
