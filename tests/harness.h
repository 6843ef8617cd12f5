/*
 * SPDX-License-Identifier: ISC
 *
 * Test harness: runs listq-wrapper as a separate process exactly as an MTA
 * would (as root: after a real switch to the test MTA user's uid, gid and
 * groups), and inspects the
 * spool it wrote.  What to run comes from the environment that tests/run.sh
 * sets (LISTQ_TEST_*); every wait is bounded and every child is reaped.
 */
#ifndef LISTQ_TEST_HARNESS_H
#define LISTQ_TEST_HARNESS_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"

struct target {
	const char	*wrapper;	/* wrapper under test */
	const char	*setuid_wrapper; /* root: the setuid-root install */
	const char	*spool, *lists;
	uid_t		 svc_uid, caller_uid, stranger_uid;
	gid_t		 svc_gid, caller_gid, stranger_gid;
	uid_t		 caller2_uid;	/* an MTA user of the second of */
	gid_t		 caller2_gid;	/* two MAIL_GIDS (root only) */
	long long	 max_size;
	bool		 root;		/* run as root: real uid switches */
};

extern struct target T;

/* How to run the wrapper once. */
struct run {
	const char	*wrapper;	/* NULL: T.wrapper */
	const char	*argv[4];	/* arguments after the program name */
	const void	*input;		/* message on stdin */
	size_t		 len;
	bool		 stranger;	/* run as the stranger (root only) */
	bool		 second_mta;	/* as caller2 (root only) */
	bool		 as_service;	/* run as the service user (root only) */
	bool		 no_new_privs;	/* caller sets PR_SET_NO_NEW_PRIVS */
	bool		 close_std;	/* start with fds 0, 1 and 2 closed */
	const char	*const *env;	/* environment, NULL: empty */
	long		 fsize_limit;	/* RLIMIT_FSIZE, 0: unlimited */
	long		 itimer_ms;	/* ITIMER_REAL armed before exec, 0: none */
	bool		 umask_000;	/* umask 000 instead of 022 */
	int		 leak_fd;	/* >2: leave this fd open in the child */
	/* Called once the wrapper has created its tmp/ file (pid given). */
	void		(*while_running)(pid_t);
};

struct result {
	int		 status;	/* exit code, or 128+signal */
	char		 err[2048];	/* what it wrote to stderr */
	size_t		 taken;		/* input written before stdin closed */
};

void	target_load(void);
/* Removes a file or a directory tree, if it exists. */
void	rm_tree(const char *path);
void	spool_reset(void);
/*
 * At most len - 1 bytes of a small file (a /proc entry, a pidfile) into
 * buf, NUL-terminated; "" if it cannot be read.  Returns the bytes read.
 */
size_t	text_read(const char *path, char *buf, size_t len);
/* The pid in the test spool's pidfile, 0 if none can be read. */
long	spool_pid(void);
void	list_create(const char *name);
void	run_wrapper(const struct run *r, struct result *res);
/*
 * Waits at most ms for pid to end, then SIGKILLs it; returns its exit
 * code, or 128 + the signal that ended it.
 */
int	reap_bounded(pid_t pid, int ms);
int	run_simple(const char *cmd, const char *list, const void *msg,
	    size_t len, struct result *res);
/* Posts message i to list through the wrapper (Subject: msg-000i). */
void	post_numbered(const char *list, int i);

/* Entries in queue/ (state files not counted), and the first one's path. */
size_t	queue_count(char *first, size_t len);
size_t	tmp_count(void);
/*
 * Invariant 6 over the whole test spool (tests/spool_sweep.sh, the
 * script the e2e run uses too): fails the test, naming each file, unless
 * every file under it is the service uid:gid, directories 0700 and the
 * rest 0600.  Nothing to check when there is no spool.
 */
void	spool_sweep(void);
/* Entries in an area beside queue/ (hold, corrupt), and the first's path. */
size_t	area_count(const char *area, char *first, size_t len);
/* Reads a whole file; *len gets its size.  Caller frees. */
char	*read_file(const char *path, size_t *len);
/* Parses the entry at path; returns the body and its length. */
char	*entry_load(const char *path, struct entry_header *h, size_t *blen);

/*
 * Every time limit of the tests is multiplied by LISTQ_TEST_TIME_FACTOR
 * (1 when unset): the one factor that a slower run (valgrind) needs.
 * Criterion's per-test .timeout is stretched alike.
 */
int	time_factor(void);
/*
 * The number (decimal digits, at most max) that s starts with, when the
 * text after it starts with after: the rest past after, or NULL (also
 * for s NULL).  The checked sscanf("%lu<after>") of logs and records.
 */
const char *text_scan(const char *s, uint64_t max, uint64_t *out,
	    const char *after);
/* The k-th (from 0) field of s separated by blanks, or NULL. */
const char *text_field(const char *s, unsigned int k);
/* The children of pid (the master's: its workers); -1 if it is gone. */
ssize_t	proc_children(pid_t pid, pid_t *out, size_t max);
/*
 * /proc/pid/stat read into buf, from the field after "(comm)": the
 * state, then ppid and the rest (proc(5) fields 3 on); NULL if gone.
 */
const char *proc_stat_fields(long pid, char *buf, size_t len);
/* A "kB" line of /proc/pid/status (e.g. "VmHWM"), in kB; 0 if gone. */
size_t	proc_status_kb(long pid, const char *field);
/*
 * How often pid has been switched out so far, voluntarily (it waited)
 * or not (preempted, as a spinning process is): a count of wake-ups that
 * a busy machine does not inflate, unlike CPU time under valgrind.
 */
uint64_t proc_wakeups(long pid);

/*
 * With LISTQ_TEST_VALGRIND set (valgrind's path; the logs go to the
 * directory LISTQ_TEST_VALGRIND_LOGS), argv run under valgrind's memcheck:
 * buf (max slots) filled with valgrind, its options and argv; otherwise
 * argv itself.  tests/valgrind.sh reads the logs.
 */
#define VALGRIND_ARGS	16	/* slots that valgrind and its options take */
const char *const *under_valgrind(const char *const *argv, const char **buf,
	    size_t max);

#endif
