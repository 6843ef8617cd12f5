/*
 * The master process of listqd (see master.c).
 */
#ifndef LISTQ_MASTER_H
#define LISTQ_MASTER_H

#include "config.h"
#include "pool.h"

/* Runs the pool until SIGTERM; returns the exit code. */
int	master_run(const char *config_path, const struct config *cfg,
	    int foreground);

#endif
