/*
 * SPDX-License-Identifier: ISC
 *
 * Delivery counters.
 *
 * A worker counts the deliveries it logs: deliver.c writes one line per
 * recipient and attempt in the contract's format ("to=<a>, relay=R,
 * delay=D, dsn=X, status=S (reply)"), one "session: relay=R, ..." line
 * per session and one "relay HOST:PORT: why" warning per pause of a
 * relay (relay.c); a log hook reads them as they are written.  The
 * counts live in the worker's slot of the memory it shares with the
 * master, which sums them over the workers (keeping those of exited
 * workers) and samples the sum every STATS_STEP seconds for the last
 * minute and hour.  The same slot carries the worker's relay board (what relay.c knows of each
 * relay), which the master reads for listq status.
 *
 * Invariants: counts only grow; each is written by one process only, with
 * atomic stores, so the master never reads half of one; the relay note
 * and board are read under a sequence number (seqlock), whole or not at
 * all; nothing here does I/O (no fsync per delivery).
 */
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "log.h"
#include "stats.h"

const unsigned long stats_lat_bounds[LAT_BUCKETS] = {
	1, 5, 15, 60, 300, 900, 3600, 14400, 86400, 432000
};

static struct counts *my_counts;
static struct relay_note *my_relay;

static void
bump(unsigned long *c, unsigned long by)
{
	__atomic_store_n(c, *c + by, __ATOMIC_RELAXED);
}

/* A seqlock's writer: seq is odd while what it guards is rewritten. */
static void
seq_begin(unsigned int *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
seq_end(unsigned int *seq)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
}

/*
 * Its reader: a copy of the len bytes at from (which hold *seq) that no
 * write overlapped; -1 if every try met one.
 */
static int
seq_read(const unsigned int *seq, void *to, const void *from, size_t len)
{
	unsigned int s;
	int tries;

	for (tries = 0; tries < 100; tries++) {
		s = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		if (s & 1)
			continue;
		memcpy(to, from, len);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(seq, __ATOMIC_RELAXED) == s)
			return 0;
	}
	return -1;
}

static void
note_relay(const char *name, size_t len)
{
	struct relay_note *r = my_relay;

	if (len >= sizeof(r->name))
		len = sizeof(r->name) - 1;
	seq_begin(&r->seq);
	memcpy(r->name, name, len);
	r->name[len] = '\0';
	r->at = time(NULL);
	seq_end(&r->seq);
}

static void
count_delivery(const char *text)
{
	const char *d = strstr(text, ", delay="), *s = strstr(text,
	    ", status=");
	double delay;
	size_t b;

	if (d == NULL || s == NULL)
		return;
	if (strncmp(s + 9, "sent ", 5) == 0) {
		delay = strtod(d + 8, NULL);
		if (delay < 0)
			delay = 0;
		for (b = 0; b < LAT_BUCKETS &&
		    delay > (double)stats_lat_bounds[b]; b++)
			continue;
		bump(&my_counts->sent, 1);
		bump(&my_counts->lat[b], 1);
		bump(&my_counts->lat_sum_ms, (unsigned long)(delay * 1000));
	} else if (strncmp(s + 9, "deferred ", 9) == 0)
		bump(&my_counts->deferred, 1);
	else if (strncmp(s + 9, "failed ", 7) == 0)
		bump(&my_counts->failed, 1);
}

static void
observe(int prio, const char *qid, const char *text)
{
	const char *end;

	if (qid != NULL && strncmp(text, "to=<", 4) == 0)
		count_delivery(text);
	else if (qid == NULL && strncmp(text, "session: relay=", 15) == 0) {
		text += 15;
		end = strchr(text, ',');
		note_relay(text, end != NULL ? (size_t)(end - text) :
		    strlen(text));
	} else if (qid == NULL && prio == LOG_WARNING &&
	    strncmp(text, "relay ", 6) == 0)
		bump(&my_counts->relay_errors, 1);
}

void
stats_observe_start(struct counts *counts, struct relay_note *relay)
{
	my_counts = counts;
	my_relay = relay;
	log_set_hook(observe);
}

static unsigned long
load(const unsigned long *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

void
counts_add(struct counts *to, const struct counts *from)
{
	size_t i;

	to->sent += load(&from->sent);
	to->deferred += load(&from->deferred);
	to->failed += load(&from->failed);
	to->relay_errors += load(&from->relay_errors);
	to->lat_sum_ms += load(&from->lat_sum_ms);
	for (i = 0; i <= LAT_BUCKETS; i++)
		to->lat[i] += load(&from->lat[i]);
}

void
counts_diff(struct counts *to, const struct counts *a, const struct counts *b)
{
	size_t i;

	to->sent = a->sent - b->sent;
	to->deferred = a->deferred - b->deferred;
	to->failed = a->failed - b->failed;
	to->relay_errors = a->relay_errors - b->relay_errors;
	to->lat_sum_ms = a->lat_sum_ms - b->lat_sum_ms;
	for (i = 0; i <= LAT_BUCKETS; i++)
		to->lat[i] = a->lat[i] - b->lat[i];
}

int
relay_read(const struct relay_note *n, char *name, size_t len, time_t *at)
{
	struct relay_note copy;

	if (seq_read(&n->seq, &copy, n, sizeof(copy)) == -1)
		return -1;
	copy.name[sizeof(copy.name) - 1] = '\0';
	strlcpy(name, copy.name, len);
	*at = copy.at;
	return *at == 0 ? -1 : 0;
}

int
relay_board_read(const struct relay_board *b, struct relay_board *out)
{
	if (seq_read(&b->seq, out, b, sizeof(*out)) == -1)
		return -1;
	if (out->n > RELAYS_SHOWN)
		out->n = RELAYS_SHOWN;
	return 0;
}

void
relay_board_write(struct relay_board *b, const struct relay_board *from)
{
	seq_begin(&b->seq);
	b->n = from->n;
	memcpy(b->r, from->r, sizeof(b->r));
	seq_end(&b->seq);
}

void
relay_keep_newer(struct relay_note *to, const struct relay_note *from)
{
	char name[RELAY_NAME_MAX];
	time_t at;

	if (relay_read(from, name, sizeof(name), &at) == 0 && at >= to->at) {
		strlcpy(to->name, name, sizeof(to->name));
		to->at = at;
	}
}

void
stats_ring_push(struct stats_ring *r, time_t now, const struct counts *c)
{
	r->head = (r->head + 1) % STATS_SAMPLES;
	r->v[r->head] = *c;
	r->t[r->head] = now;
	if (r->n < STATS_SAMPLES)
		r->n++;
}

const struct counts *
stats_ring_at(const struct stats_ring *r, time_t when)
{
	size_t k, i = r->head;

	if (r->n == 0)
		return NULL;
	for (k = 0; k < r->n; k++) {
		i = (r->head + STATS_SAMPLES - k) % STATS_SAMPLES;
		if (r->t[i] <= when)
			return &r->v[i];
	}
	return &r->v[i];
}
