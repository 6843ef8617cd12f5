/*
 * SPDX-License-Identifier: ISC
 *
 * listq, the admin command: what its parts share (listq.c).
 */
#ifndef LISTQ_ADMIN_H
#define LISTQ_ADMIN_H

#include <sys/types.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "admin_ops.h"
#include "entry.h"
#include "list.h"
#include "qid.h"
#include "state.h"
#include "stats.h"

#define CLIENT_WAIT	120	/* seconds listq waits for listqd's answer */

/* The spool, opened read-only or, holding the lock, as its owner. */
struct spool_view {
	int	 spoolfd, holdfd, corruptfd, modfd;
	int	 bucketfd[QID_BUCKETS];
};

struct admin {
	const char	*config_path;	/* -f, or the default */
	int		 config_given;
	int		 ctl;		/* connection to listqd, or -1 */
	struct pidfh	*pfh;		/* the spool lock: listqd stopped */
	uid_t		 who;		/* the caller */
	FILE		*in;		/* a file named on the command line */
	struct spool_view sv;		/* -1s until spool_view_open() */
	struct adm	 ops;		/* acting as owner, with pfh */
};

/* A command: its name, what it needs first, its function, its usage. */
#define NEED_DAEMON	0x1	/* connect to listqd if it runs */
#define NEED_OWNER	0x2	/* listqd, or else the spool lock */
struct command {
	const char	*name;
	int		(*fn)(struct admin *, int, char **);
	int		 flags;
	const char	*usage;
	const char	*help;
	void		(*prep)(struct admin *, int, char **); /* privileged */
};

/* listq.c */
void	usage_error(void) __attribute__((noreturn));
int	admin_opt(int argc, char **argv, const char *shortopts,
	    const struct option *opts);
void	fmt_time(time_t t, char *buf, size_t len);
void	fmt_age(long secs, char *buf, size_t len);

/* Lines of listqd's answer to req, one call each; -1: no answer. */
int	ctl_ask(struct admin *a, const char *req,
	    int (*line)(void *, char *), void *arg);

/* admin_spool.c: reading the spool, never changing it */
struct qitem {
	char		 id[QID_SIZE];
	int		 area;		/* ADM_QUEUE, ADM_HOLD, ADM_CORRUPT */
	unsigned int	 bucket;
	bool		 ok;		/* header parsed */
	const char	*why;		/* else why not */
	struct entry_header h;
	off_t		 size;		/* of the message */
	bool		 has_state;
	unsigned int	 attempts, crashes;
	int64_t		 first, next;
	size_t		 nrcpt, sent, pending, deferred, failed;
	char		 last_error[REPLY_MAX + 32];
};
#define LOAD_HEADER	0	/* header only */
#define LOAD_ATTEMPTS	1	/* and the attempt count */
#define LOAD_STATE	2	/* and the whole state */
void	spool_view_open(struct spool_view *v);
/* Calls fn with each entry of areas, in id (arrival) order. */
void	spool_walk(struct spool_view *v, int areas, int load,
	    void (*fn)(void *, const struct qitem *), void *arg);
/* Finds id; fills it (and st, when not NULL); -1 if there is none. */
int	spool_find(struct spool_view *v, const char *id, struct qitem *it,
	    struct state *st);
/* The directory fd an item lives in. */
int	spool_dirfd(const struct spool_view *v, const struct qitem *it);
const char *area_name(int area);
const char *item_state(const struct qitem *it);

/* What status and metrics show. */
struct pool_worker {
	long		 pid;
	time_t		 started, restart_at;
	char		 current[QID_SIZE];
	char		 doing[64];
};
struct pool_relay {		/* one relay, over the running workers */
	char		 name[RELAY_NAME_MAX];
	time_t		 until;		/* end of the last pause, 0 if none */
	unsigned int	 pausing, workers;
	char		 why[RELAY_WHY_MAX];
};
struct pool_status {
	bool		 running;
	long		 pid;
	time_t		 started;
	unsigned int	 n;
	char		 config[1024];
	struct pool_worker w[256];
	struct counts	 total, minute, hour;
	time_t		 relay_at;
	char		 relay[RELAY_NAME_MAX];
	struct pool_relay relays[RELAYS_SHOWN];
	unsigned int	 nrelays;
};
struct spool_summary {
	unsigned long	 queued, deferred, held, corrupt;
	unsigned long long bytes;
	time_t		 oldest;	/* arrival of the oldest queued, 0 */
};
void	pool_status_get(struct admin *a, struct pool_status *ps);
void	spool_summary_get(struct admin *a, struct spool_summary *s);

/* admin_members.c: the list directory */
int	listdir_open(void);
/* Opens LISTDIR/name (exit 67 if none), flock'd against other edits. */
int	list_open(const char *name, int lock);
/* Adds addr to LISTDIR/name/file (locked) unless there; 1 if added. */
int	list_file_add(const char *name, const char *file, const char *addr);
/* Replaces dirfd/file durably, or exits. */
void	list_file_replace(int dirfd, const char *file, const char *buf,
	    size_t len);

/* admin_lists.c */
struct list_info {
	struct list_conf lc;
	char		 error[512];	/* "" when every file was read */
	size_t		 members, enabled, owners, bad;
	char		 first_bad[128];	/* "members line 3: why" */
};
void	list_info(const char *name, struct list_info *li);
/* The names of the lists, sorted. */
char	**list_names(size_t *n);
void	free_names(char **v, size_t n);

/* The commands. */
int	cmd_status(struct admin *, int, char **);
int	cmd_metrics(struct admin *, int, char **);
int	cmd_queue(struct admin *, int, char **);
int	cmd_show(struct admin *, int, char **);
int	cmd_entries(struct admin *, int, char **);
int	cmd_lists(struct admin *, int, char **);
int	cmd_newlist(struct admin *, int, char **);
int	cmd_rmlist(struct admin *, int, char **);
int	cmd_members(struct admin *, int, char **);
void	prep_members(struct admin *, int, char **);
int	cmd_aliases(struct admin *, int, char **);
int	cmd_check(struct admin *, int, char **);
int	cmd_held(struct admin *, int, char **);
int	cmd_reject(struct admin *, int, char **);
int	cmd_accept(struct admin *, int, char **);
/* admin_queue.c: one request on entries (see cmd_entries); its code. */
int	entries_request(struct admin *a, const char *verb, const char *arg);

#endif
