/*
 * SPDX-License-Identifier: ISC
 *
 * Delivery counters (see stats.c): kept by each worker in its shared
 * slot, summed and windowed by the master, shown by listq status and
 * listq metrics.
 */
#ifndef LISTQ_STATS_H
#define LISTQ_STATS_H

#include <stddef.h>
#include <time.h>

#define LAT_BUCKETS	10		/* bounds; one more for +Inf */
#define RELAY_NAME_MAX	128
#define STATS_STEP	10		/* seconds between samples */
#define STATS_SAMPLES	(3600 / STATS_STEP + 2)	/* an hour and a bit */

/* Upper bounds (seconds) of the delivery latency histogram. */
extern const unsigned long stats_lat_bounds[LAT_BUCKETS];

/* Counts since a start; only ever grow. */
struct counts {
	unsigned long	sent, deferred, failed;	/* recipient outcomes */
	unsigned long	relay_errors;		/* relays failing a session */
	unsigned long	lat[LAT_BUCKETS + 1];	/* sent, by delay bucket */
	unsigned long	lat_sum_ms;		/* sent, total delay */
};

/* The relay of the last session: written by one process, read by another. */
struct relay_note {
	unsigned int	seq;		/* odd while being written */
	time_t		at;
	char		name[RELAY_NAME_MAX];	/* host[ip]:port */
};

/*
 * What one worker knows of each relay of its smarthost list (relay.c
 * writes it, the master reads it for listq status), in list order.
 */
#define RELAYS_SHOWN	8
#define RELAY_WHY_MAX	160
struct relay_state {
	char		name[RELAY_NAME_MAX];	/* as in smarthost: host[:port] */
	time_t		until;		/* pausing until then; past: up */
	char		why[RELAY_WHY_MAX];	/* the cause of that pause */
};
struct relay_board {
	unsigned int	seq;		/* odd while being written */
	unsigned int	n;
	struct relay_state r[RELAYS_SHOWN];
};

/* Worker: count what this process logs, into counts and relay. */
void	stats_observe_start(struct counts *counts, struct relay_note *relay);

/* Master: *to += a consistent reading of the shared *from. */
void	counts_add(struct counts *to, const struct counts *from);
/* *to = a - b (counts of a window). */
void	counts_diff(struct counts *to, const struct counts *a,
	    const struct counts *b);
/* Reads a relay note; 0, or -1 if it has none. */
int	relay_read(const struct relay_note *n, char *name, size_t len,
	    time_t *at);
/* Master: a consistent copy of a board its worker may be writing. */
int	relay_board_read(const struct relay_board *b, struct relay_board *out);
/* Worker: replaces its board with *from. */
void	relay_board_write(struct relay_board *b, const struct relay_board *from);
/* Copies a note into one only this process writes. */
void	relay_keep_newer(struct relay_note *to, const struct relay_note *from);

/* Samples of the total counts, for the last minute and hour. */
struct stats_ring {
	struct counts	v[STATS_SAMPLES];
	time_t		t[STATS_SAMPLES];
	size_t		head, n;
};
void	stats_ring_push(struct stats_ring *r, time_t now,
	    const struct counts *c);
/* The newest sample taken at or before when, or the oldest, or NULL. */
const struct counts *stats_ring_at(const struct stats_ring *r, time_t when);

#endif
