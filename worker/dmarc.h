/*
 * SPDX-License-Identifier: ISC
 *
 * The DMARC policy (RFC 7489) of a From: domain, as a listqd worker
 * looks it up and caches it (dmarc.c).
 */
#ifndef LISTQ_DMARC_H
#define LISTQ_DMARC_H

#include <stddef.h>

#include "config.h"

enum dmarc_policy {
	DMARC_ABSENT,		/* no record at the domain nor its org. domain */
	DMARC_P_NONE,
	DMARC_P_QUARANTINE,
	DMARC_P_REJECT,
	DMARC_MALFORMED,	/* v=DMARC1 but no valid p=, or several records */
	DMARC_TEMPFAIL		/* SERVFAIL, timeout, no answer: unknown now */
};

/*
 * The policy for mail From: domain: from this worker's cache while the
 * answer's TTL lasts, else from DNS (at most c->dns_timeout seconds,
 * both _dmarc.<domain> and _dmarc.<organizational domain> asked at
 * once).  why receives what a DMARC_TEMPFAIL or DMARC_MALFORMED was
 * ("SERVFAIL", "timeout", "2 DMARC records", ...).
 */
enum dmarc_policy dmarc_policy(const struct config *c, const char *domain,
	    char *why, size_t whylen);

/* "reject", "quarantine", ...: for log lines. */
const char *dmarc_policy_name(enum dmarc_policy p);

/* The policy of the record text rec (one TXT record, strings joined). */
enum dmarc_policy dmarc_parse_record(const char *rec, int org);

#endif
