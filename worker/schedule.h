/*
 * SPDX-License-Identifier: ISC
 *
 * A worker's in-memory schedule: the entries of its own buckets and when
 * each is next due.  Small metadata per entry (invariant 8); bodies and
 * recipients stay on disk until an entry is due.
 */
#ifndef LISTQ_SCHEDULE_H
#define LISTQ_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "qid.h"

struct state;

struct sched_entry {
	char		id[QID_SIZE];
	unsigned short	bucket;
	unsigned char	known;		/* next comes from its state file */
	time_t		next;		/* due at; 0: now */
	struct state	*held;		/* newer than its state file (the
					   file could not be written), or
					   NULL; owned here */
};

struct schedule {
	struct sched_entry *v[QID_BUCKETS];
	size_t		 n[QID_BUCKETS], cap[QID_BUCKETS];
	size_t		 total;
	unsigned int	 rotor;		/* first bucket of the next pick */
};

/* Adds id unless present; returns -1 only when out of memory. */
int	sched_add(struct schedule *s, unsigned int bucket, const char *id,
	    time_t next);
struct sched_entry *sched_find(struct schedule *s, unsigned int bucket,
	    const char *id);
/* Removes e, and frees the state it holds. */
void	sched_remove(struct schedule *s, struct sched_entry *e);
/* Up to max copies of entries due at now; returns how many. */
size_t	sched_due(struct schedule *s, time_t now, struct sched_entry *out,
	    size_t max);
/* The earliest due time, or 0 when the schedule is empty. */
time_t	sched_next(const struct schedule *s);
/* Makes every entry due now, whatever its state file says (flush). */
void	sched_flush(struct schedule *s);

#endif
