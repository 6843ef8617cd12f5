/*
 * SPDX-License-Identifier: ISC
 *
 * The worker pool: what the master and its workers share.
 *
 * The master maps one slot per worker in memory shared with the workers
 * (MAP_SHARED, made before fork).  A worker writes the queue id it is
 * delivering into its slot; when it dies abnormally the master reads the
 * slot to learn which entry was in flight and tells the replacement, which
 * counts the crash in the entry's state file (a poison entry goes to
 * corrupt/ after POISON_CRASHES).  The worker also keeps its delivery
 * counters there (stats.h), which the master sums for listq, and the
 * state of each relay as it sees it (relay.c).
 *
 * Each worker has a control channel to the master (a socketpair made
 * before fork): the master passes it the listq requests about entries
 * the worker owns (control.c, worker_ctl.c).
 */
#ifndef LISTQ_POOL_H
#define LISTQ_POOL_H

#include <sys/types.h>

#include <time.h>

#include "config.h"
#include "qid.h"
#include "stats.h"

#define POISON_CRASHES	3

struct slot {
	pid_t		pid;		/* 0: no worker */
	time_t		started;
	char		current[QID_SIZE];	/* entry in flight, "" if none */
	char		doing[64];	/* "idle", "delivering", ... */
	struct counts	counts;		/* deliveries, since it started */
	struct relay_note relay;	/* relay of its last session */
	struct relay_board relays;	/* its relays, up or pausing */
};

/* Everything a worker needs to run. */
struct worker_ctx {
	unsigned int	 index, count;	/* worker w of N */
	const char	*config_path;
	struct config	 cfg;
	struct slot	*slot;		/* this worker's, shared */
	char		 crashed[QID_SIZE];	/* entry that killed the
						   previous worker, or "" */
	int		 foreground;
	int		 chan;		/* control channel to the master */
};

/*
 * Blocks SIGTERM, SIGINT, SIGHUP, SIGUSR1 (and SIGCHLD for the master),
 * ignores SIGPIPE and returns a non-blocking signalfd for them.
 */
int	pool_signalfd(int with_sigchld);

/* Runs one worker until SIGTERM; never returns. */
void	worker_main(struct worker_ctx *ctx) __attribute__((noreturn));

#endif
