/*
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

/* The previous worker died delivering id: count it, quarantine a poison. */
void	deliver_note_crash(struct worker *w, const char *id);

#endif
