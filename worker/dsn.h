/*
 * SPDX-License-Identifier: ISC
 *
 * Delivery status notifications (RFC 3464) for recipients listqd could
 * not deliver (failed, or past max_queue_lifetime) or that are delayed
 * past delay_warning_time (dsn.c).
 */
#ifndef LISTQ_DSN_H
#define LISTQ_DSN_H

#include <sys/types.h>

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "entry.h"
#include "state.h"

enum dsn_kind { DSN_FAILED, DSN_DELAYED };

struct dsn_report {
	enum dsn_kind		 kind;
	const struct entry_header *h;	/* the entry reported on */
	const char		*to;	/* its envelope sender */
	const char		*reporting_mta;	/* our EHLO name */
	const char		*remote_mta;	/* relay that answered, or NULL */
	const struct rcpt_status *const *r; /* the recipients reported */
	size_t			 n;
	const char		*headers; /* its header section, or NULL */
	time_t			 now;
	time_t			 retry_until; /* DSN_DELAYED: the lifetime's end */
};

/* May an entry with this envelope sender and header get a DSN at all? */
bool	dsn_allowed(const char *sender, const char *headers);

/* Writes the whole DSN message (LF line ends) to out. */
int	dsn_compose(const struct dsn_report *d, FILE *out);

/*
 * Queues the DSN as a send entry (null sender, to d->to) through the
 * spool, durably.  id gets its queue id.  -1 with errno set.
 */
int	dsn_queue(const struct dsn_report *d, int spoolfd, int tmpfd,
	    uid_t uid, gid_t gid, char id[QID_SIZE]);

#endif
