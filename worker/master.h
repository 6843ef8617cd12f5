/*
 * SPDX-License-Identifier: ISC
 *
 * The master process of listqd (master.c) and its control socket
 * (master_ctl.c), which share the master's state.
 */
#ifndef LISTQ_MASTER_H
#define LISTQ_MASTER_H

#include <sys/types.h>

#include <poll.h>
#include <time.h>

#include "config.h"
#include "pool.h"
#include "stats.h"

#define MAX_WORKERS	256
#define CTL_PENDING	16	/* connections waiting for their request */
#define CTL_WAIT	5	/* seconds a connection may take to ask */

struct worker_rec {
	pid_t		pid;
	time_t		restart_at;	/* when pid == 0: start then */
	unsigned int	backoff;	/* seconds, grows in a crash loop */
	int		chan;		/* our end of its control channel */
	char		crashed[QID_SIZE];
};

struct ctl_conn {
	int		fd;		/* -1: free */
	uid_t		uid;
	int		refused;	/* told so; dropped at its request */
	time_t		deadline;
};

struct master {
	const char	*config_path;
	struct config	 cfg;
	unsigned int	 n;		/* running pool size */
	struct worker_rec w[MAX_WORKERS];
	struct slot	*slots;		/* shared with the workers */
	int		 sigfd;
	int		 stopping;
	int		 foreground;
	time_t		 next_sweep;
	time_t		 started;
	int		 ctlfd;		/* listening control socket */
	struct ctl_conn	 conn[CTL_PENDING];
	struct counts	 gone;		/* deliveries of exited workers */
	struct relay_note relay;	/* newest relay of exited workers */
	struct stats_ring ring;
	time_t		 next_sample;
};

/* Runs the pool until SIGTERM; returns the exit code. */
int	master_run(const char *config_path, const struct config *cfg,
	    int foreground);

/* master.c, for master_ctl.c */
void	master_signal_workers(struct master *m, int sig);
void	master_totals(const struct master *m, struct counts *out);

/* master_ctl.c */
void	mctl_open(struct master *m);
void	mctl_close(struct master *m);
/* Adds what the control path waits on to pf; returns how many. */
size_t	mctl_pollfds(const struct master *m, struct pollfd *pf);
/* Accepts, reads and answers or passes on requests; drops stale ones. */
void	mctl_handle(struct master *m, const struct pollfd *pf, size_t n);
/* The earliest deadline of a waiting connection, or 0. */
time_t	mctl_deadline(const struct master *m);
/* In a new worker: closes what is the master's or another worker's. */
void	mctl_child_close(struct master *m, unsigned int self);

#endif
