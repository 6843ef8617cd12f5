/*
 * SPDX-License-Identifier: ISC
 *
 * Delivering a batch of due entries over one SMTP session (deliver.c).
 */
#ifndef LISTQ_DELIVER_H
#define LISTQ_DELIVER_H

#include <stddef.h>

#include "schedule.h"
#include "worker.h"

/* Attempts due[0..n): afterwards each is rescheduled, held or gone. */
void	deliver_batch(struct worker *w, const struct sched_entry *due,
	    size_t n);

/*
 * Moves entry id of one of this worker's buckets, message first, then
 * its state, into todir (hold/ or corrupt/, named by where), with a log
 * line giving why.  0 on success; -1 (logged) leaves it in place.
 */
int	deliver_move_aside(struct worker *w, const char *id, int todir,
	    const char *where, const char *why);

/* The previous worker died delivering id: count it, quarantine a poison. */
void	deliver_note_crash(struct worker *w, const char *id);

#endif
