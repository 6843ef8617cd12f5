/*
 * SPDX-License-Identifier: ISC
 *
 * The in-memory schedule of one worker (see schedule.h).
 *
 * Invariants: an id appears at most once; an entry is kept under its
 * own bucket, so membership costs a scan of one bucket only; picks start
 * at a rotating bucket so that no bucket starves another.
 */
#include <stdlib.h>
#include <string.h>

#include "schedule.h"
#include "state.h"

struct sched_entry *
sched_find(struct schedule *s, unsigned int bucket, const char *id)
{
	size_t i;

	for (i = 0; i < s->n[bucket]; i++)
		if (memcmp(s->v[bucket][i].id, id, QID_SIZE) == 0)
			return &s->v[bucket][i];
	return NULL;
}

int
sched_add(struct schedule *s, unsigned int bucket, const char *id,
    time_t next)
{
	struct sched_entry *v;
	size_t cap;

	if (sched_find(s, bucket, id) != NULL)
		return 0;
	if (s->n[bucket] == s->cap[bucket]) {
		cap = s->cap[bucket] == 0 ? 16 : s->cap[bucket] * 2;
		if ((v = reallocarray(s->v[bucket], cap, sizeof(*v))) == NULL)
			return -1;
		s->v[bucket] = v;
		s->cap[bucket] = cap;
	}
	v = &s->v[bucket][s->n[bucket]++];
	memcpy(v->id, id, QID_SIZE);
	v->bucket = (unsigned short)bucket;
	v->known = 0;
	v->next = next;
	v->held = NULL;
	s->total++;
	return 0;
}

void
sched_remove(struct schedule *s, struct sched_entry *e)
{
	unsigned int b = e->bucket;

	if (e->held != NULL) {
		state_free(e->held);
		free(e->held);
	}
	*e = s->v[b][--s->n[b]];
	s->total--;
}

size_t
sched_due(struct schedule *s, time_t now, struct sched_entry *out,
    size_t max)
{
	unsigned int k, b;
	size_t i, got = 0;

	for (k = 0; k < QID_BUCKETS && got < max; k++) {
		b = (s->rotor + k) % QID_BUCKETS;
		for (i = 0; i < s->n[b] && got < max; i++)
			if (s->v[b][i].next <= now)
				out[got++] = s->v[b][i];
	}
	s->rotor = (s->rotor + 1) % QID_BUCKETS;
	return got;
}

time_t
sched_next(const struct schedule *s)
{
	time_t next = 0;
	unsigned int b;
	size_t i;

	for (b = 0; b < QID_BUCKETS; b++)
		for (i = 0; i < s->n[b]; i++)
			if (next == 0 || s->v[b][i].next < next)
				next = s->v[b][i].next == 0 ? 1 :
				    s->v[b][i].next;
	return next;
}

void
sched_flush(struct schedule *s)
{
	unsigned int b;
	size_t i;

	for (b = 0; b < QID_BUCKETS; b++)
		for (i = 0; i < s->n[b]; i++) {
			s->v[b][i].next = 0;
			s->v[b][i].known = 1;
		}
}
