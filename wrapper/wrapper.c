/*
 * SPDX-License-Identifier: ISC
 *
 * listq-wrapper: the only privileged program of listq.  An MTA alias pipe
 * runs it as
 *
 *	listq-wrapper post|owner|bounces|request LIST < message
 *
 * It becomes the service uid:gid, streams the message into
 * SPOOLDIR/tmp/<id> behind an entry header, commits it into its bucket
 * and answers the MTA with a sysexits code.
 *
 * Invariants: exit 0 only once the entry is fsync'd, renamed into
 * queue/<bucket>/ and the bucket directory fsync'd (invariant 1); the
 * rename is the only step a reader can see (invariant 2); every file is
 * created by the service uid with mode 0600 (invariant 6); on any failure
 * the partial tmp/ file is removed, one line goes to stderr and syslog,
 * and the exit code tells the MTA to bounce (64, 65, 67, 77) or to retry
 * (75) -- a message is never both refused and kept.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "enqueue.h"
#include "entry.h"
#include "log.h"
#include "privilege.h"
#include "qid.h"
#include "settings.h"
#include "spool.h"

#define COPY_CHUNK	65536
/*
 * What cleanup() reads of a refused message at most: a message of the
 * largest accepted size and a chunk more, within DRAIN_MS.  The MTA sends
 * at once what it has, so this is all of any message it would give us;
 * beyond, the caller is not an MTA delivering, and may get SIGPIPE.
 */
#define DRAIN_MAX	((size_t)MAX_MESSAGE_SIZE + COPY_CHUNK)
#define DRAIN_MS	5000

/* The tmp/ file being written, removed by cleanup() and on signals. */
static int tmp_dirfd = -1;
static char tmp_name[QID_SIZE];
static volatile sig_atomic_t tmp_pending;
static bool drain_stdin;

static void
on_signal(int sig)
{
	(void)sig;
	if (tmp_pending)
		unlinkat(tmp_dirfd, tmp_name, 0);
	_exit(EX_TEMPFAIL);
}

/* Milliseconds from now to end (CLOCK_MONOTONIC), at least 0. */
static int
ms_until(const struct timespec *end)
{
	struct timespec t;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &t);
	ms = (end->tv_sec - t.tv_sec) * 1000LL + (end->tv_nsec - t.tv_nsec) /
	    1000000;
	return ms > 0 ? (int)ms : 0;
}

/*
 * Runs at exit(3): remove a partial entry, and read the rest of the
 * message so that the MTA sees our exit code rather than SIGPIPE --
 * bounded in bytes and time, so that an endless or stalled stdin cannot
 * keep the wrapper alive.
 */
static void
cleanup(void)
{
	struct pollfd pf = { .fd = STDIN_FILENO, .events = POLLIN };
	struct timespec end;
	char buf[4096];
	size_t left = DRAIN_MAX;
	ssize_t n = 1;

	if (tmp_pending)
		unlinkat(tmp_dirfd, tmp_name, 0);
	tmp_pending = 0;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += DRAIN_MS / 1000;
	while (drain_stdin && n > 0 && left > 0 &&
	    poll(&pf, 1, ms_until(&end)) > 0 &&
	    (n = read(STDIN_FILENO, buf, sizeof(buf))) > 0)
		left -= (size_t)n < left ? (size_t)n : left;
}

/*
 * Besides the terminal's signals and SIGTERM, what the caller can still
 * send once the ids are the service's: interval timers armed before exec
 * (SIGALRM, SIGVTALRM, SIGPROF) and RLIMIT_CPU (SIGXCPU) survive execve
 * and the uid switch.  Each ends the wrapper as SIGTERM does.
 */
static void
set_signals(void)
{
	static const int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM,
	    SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU };
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sigfillset(&sa.sa_mask);
	sa.sa_handler = on_signal;
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	/* A file size limit must give EFBIG (and 75), not a core dump. */
	signal(SIGXFSZ, SIG_IGN);
	/* A closed stderr must not turn an accepted message into a retry. */
	signal(SIGPIPE, SIG_IGN);
}

/*
 * Blocks signals: while the tmp/ file is created and before its name is
 * known to the handler, and for good once the entry is renamed into the
 * queue, where no signal may undo it.
 */
static void
block_signals(int block)
{
	sigset_t all;

	sigfillset(&all);
	sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &all, NULL);
}

static void
check_args(int argc, char *argv[])
{
	if (argc != 3)
		log_exit(EX_USAGE, NULL, "usage: listq-wrapper "
		    "post|owner|bounces|request LIST");
	if (!entry_command_valid(argv[1]))
		log_exit(EX_USAGE, NULL, "unknown command \"%.16s\" (expected "
		    "post, owner, bounces or request)", argv[1]);
	if (!list_name_valid(argv[2]))
		log_exit(EX_USAGE, NULL, "bad list name \"%.80s\" (expected "
		    "[a-z0-9][a-z0-9._-]{0,63}, no \"..\")", argv[2]);
}

static void
check_list(const char *list)
{
	struct stat st;
	int fd;

	if ((fd = open(LISTDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		log_exit(EX_TEMPFAIL, NULL, "list directory %s: %s", LISTDIR,
		    strerror(errno));
	if (fstatat(fd, list, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			log_exit(EX_NOUSER, NULL, "no such list: %s", list);
		log_exit(EX_TEMPFAIL, NULL, "list %s: %s", list,
		    strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		log_exit(EX_NOUSER, NULL, "no such list: %s", list);
	close(fd);
}

static int
open_spool(void)
{
	int fd = spool_open(SPOOLDIR, LISTQ_UID, LISTQ_GID);

	if (fd == -1)
		log_exit(EX_TEMPFAIL, NULL, "spool %s: %s", SPOOLDIR,
		    errno == EPERM ? "wrong owner or mode" : strerror(errno));
	tmp_dirfd = spool_open_dir(fd, SPOOL_TMP, LISTQ_UID, LISTQ_GID);
	if (tmp_dirfd == -1)
		log_exit(EX_TEMPFAIL, NULL, "spool %s/%s: %s", SPOOLDIR,
		    SPOOL_TMP, errno == EPERM ? "wrong owner or mode" :
		    strerror(errno));
	return fd;
}

static struct enqueue q;

/* Creates tmp/<id> with its header; from here a failure removes it. */
static void
create_entry(const char *command, const char *list, uid_t uid, gid_t gid)
{
	struct entry_header h;
	struct timeval now;

	memset(&h, 0, sizeof(h));
	gettimeofday(&now, NULL);
	strlcpy(h.command, command, sizeof(h.command));
	strlcpy(h.list, list, sizeof(h.list));
	h.arrival_sec = now.tv_sec;
	h.arrival_usec = now.tv_usec;
	h.uid = uid;
	h.gid = gid;
	block_signals(1);
	if (enqueue_open(&q, tmp_dirfd, &h) == -1)
		log_exit(EX_TEMPFAIL, NULL, "cannot create an entry in %s/%s: "
		    "%s", SPOOLDIR, SPOOL_TMP, strerror(errno));
	memcpy(tmp_name, q.h.id, QID_SIZE);
	tmp_pending = 1;
	block_signals(0);
}

/* Streams stdin into the entry, checking the size limit as it goes. */
static void
copy_message(void)
{
	static char buf[COPY_CHUNK];
	ssize_t n;

	for (;;) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			log_exit(EX_TEMPFAIL, q.h.id, "reading the message: %s",
			    strerror(errno));
		if (n == 0)
			return;
		if (q.size + (size_t)n > MAX_MESSAGE_SIZE)
			log_exit(EX_DATAERR, q.h.id, "message exceeds the size "
			    "limit of %lld bytes", (long long)MAX_MESSAGE_SIZE);
		if (enqueue_write(&q, buf, (size_t)n) == -1)
			log_exit(EX_TEMPFAIL, q.h.id, "writing %s/%s: %s",
			    SPOOL_TMP, q.h.id, strerror(errno));
	}
}

/*
 * Before anything is written: the spool's file system must keep
 * SPOOL_RESERVE free for listqd's own writes, whoever calls us.
 */
static void
check_room(int spoolfd)
{
	unsigned long long avail;

	if (spool_free_bytes(spoolfd, &avail) == -1)
		log_exit(EX_TEMPFAIL, NULL, "spool %s: free space: %s",
		    SPOOLDIR, strerror(errno));
	if (avail < (unsigned long long)SPOOL_RESERVE)
		log_exit(EX_TEMPFAIL, NULL, "spool %s: %llu bytes free, below "
		    "the reserve of %lld bytes kept for listqd: message not "
		    "accepted, try again later", SPOOLDIR, avail,
		    (long long)SPOOL_RESERVE);
}

static void
enqueue(int spoolfd, const char *command, const char *list, uid_t uid,
    gid_t gid)
{
	check_room(spoolfd);
	create_entry(command, list, uid, gid);
	copy_message();
	if (q.size == 0)
		log_exit(EX_DATAERR, q.h.id, "empty message");
	block_signals(1);
	if (enqueue_commit(&q, spoolfd, LISTQ_UID, LISTQ_GID) == -1)
		log_exit(EX_TEMPFAIL, q.h.id, "committing %s: %s", q.h.id,
		    strerror(errno));
	tmp_pending = 0;
	log_msg(LOG_INFO, q.h.id, "queued: command=%s, list=%s, size=%zu, "
	    "uid=%lu, gid=%lu", command, list, q.size, (unsigned long)uid,
	    (unsigned long)gid);
}

int
main(int argc, char *argv[])
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	int spoolfd;

	sanitize_fds();
	closefrom(STDERR_FILENO + 1);
	log_init("listq-wrapper", LOG_ERRORS_STDERR);
	check_caller();
	clearenv();
	become_service();
	umask(077);
	drain_stdin = true;
	atexit(cleanup);
	set_signals();
	check_args(argc, argv);
	spoolfd = open_spool();
	check_list(argv[2]);
	enqueue(spoolfd, argv[1], argv[2], uid, gid);
	return EX_OK;
}
