/*
 * SPDX-License-Identifier: ISC
 *
 * One worker's view of the spool: its own buckets only (see worker.c).
 */
#ifndef LISTQ_WORKER_H
#define LISTQ_WORKER_H

#include <stdbool.h>

#include "admin_ops.h"
#include "pool.h"
#include "schedule.h"

struct worker {
	struct worker_ctx *ctx;
	int		 spoolfd;
	int		 bucketfd[QID_BUCKETS];	/* -1: not ours */
	int		 holdfd, corruptfd;
	int		 modfd, mod_wd;		/* moderation/, its watch */
	int		 sigfd, inofd;
	int		 wd_bucket[QID_BUCKETS * 2]; /* inotify wd -> bucket */
	struct schedule	 sched;
	time_t		 relay_retry_at;	/* every relay pauses: wait */
	time_t		 next_rescan;
	bool		 stopping;
	bool		 flushing;
	bool		 mod_due;		/* moderation/ to sweep */
};

/* Is bucket b ours? */
bool	worker_owns(const struct worker *w, unsigned int b);
/* Polls the signal fd without blocking; true once SIGTERM was seen. */
bool	worker_check_signals(struct worker *w);
/* Says what the worker does, in the process title and its slot. */
void	worker_doing(struct worker *w, const char *what, const char *id);
/* This worker as the owner in admin_ops (worker_ctl.c); who: nobody. */
void	worker_adm(struct worker *w, struct adm *a);
/* Handles the listq requests the master passed (worker_ctl.c). */
void	worker_control(struct worker *w);

#endif
