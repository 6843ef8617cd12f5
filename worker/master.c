/*
 * SPDX-License-Identifier: ISC
 *
 * The master of listqd: forks N workers, each the only owner of the
 * buckets b with b mod N == w, and supervises them.
 *
 * Invariants: a worker's replacement starts only after the dead worker
 * has been reaped, so two processes never own one slice; every slice is
 * always either running or due to restart after a bounded back-off (a
 * crash loop slows down, it is never given up); a change of N takes
 * effect only after every old worker has exited.  The master itself
 * never opens an entry; it only removes tmp/ files older than a day,
 * which are not entries yet.  listq requests reach it on the control
 * socket (master_ctl.c); it passes those about entries to their owners.
 * It sums the workers' delivery counters, keeping an exited worker's.
 */
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "master.h"
#include "settings.h"
#include "spool.h"

#define RESTART_MIN	1		/* seconds before a first restart */
#define RESTART_MAX	60
#define QUICK_DEATH	10		/* died this soon: a crash loop */
#define TMP_MAX_AGE	86400
#define TMP_SWEEP	3600

static struct master M;

static time_t
now(void)
{
	return time(NULL);
}

static void
start_worker(unsigned int i)
{
	struct worker_ctx ctx;
	int sv[2];
	pid_t pid;

	memset(&M.slots[i], 0, sizeof(M.slots[i]));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1 ||
	    (pid = fork()) == -1) {
		log_msg(LOG_ERR, NULL, "starting worker %u: %s", i,
		    strerror(errno));
		M.w[i].restart_at = now() + RESTART_MIN;
		return;
	}
	if (pid == 0) {
		close(M.sigfd);
		close(sv[0]);
		mctl_child_close(&M, i);
		memset(&ctx, 0, sizeof(ctx));
		ctx.index = i;
		ctx.count = M.n;
		ctx.config_path = M.config_path;
		ctx.cfg = M.cfg;
		ctx.slot = &M.slots[i];
		ctx.foreground = M.foreground;
		ctx.chan = sv[1];
		memcpy(ctx.crashed, M.w[i].crashed, QID_SIZE);
		worker_main(&ctx);
	}
	close(sv[1]);
	M.w[i].chan = sv[0];
	M.w[i].pid = pid;
	M.w[i].crashed[0] = '\0';
	M.slots[i].pid = pid;
	M.slots[i].started = now();
}

/* Worker i has exited: keep its counts, close its channel. */
static void
worker_gone(unsigned int i)
{
	counts_add(&M.gone, &M.slots[i].counts);
	memset(&M.slots[i].counts, 0, sizeof(M.slots[i].counts));
	relay_keep_newer(&M.relay, &M.slots[i].relay);
	M.w[i].pid = 0;
	M.slots[i].pid = 0;
	if (M.w[i].chan != -1)
		close(M.w[i].chan);
	M.w[i].chan = -1;
}

void
master_totals(const struct master *m, struct counts *out)
{
	unsigned int i;

	*out = m->gone;
	for (i = 0; i < m->n; i++)
		counts_add(out, &m->slots[i].counts);
}

static void
sample(void)
{
	struct counts c;

	master_totals(&M, &c);
	stats_ring_push(&M.ring, now(), &c);
	M.next_sample = now() + STATS_STEP;
}

static unsigned int
find_worker(pid_t pid)
{
	unsigned int i;

	for (i = 0; i < M.n; i++)
		if (M.w[i].pid == pid)
			return i;
	return M.n;
}

/* A worker died: note what it was doing and schedule its replacement. */
static void
worker_died(unsigned int i, int status)
{
	struct worker_rec *w = &M.w[i];
	int abnormal = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	time_t lived = now() - M.slots[i].started;
	long pid = (long)w->pid;

	worker_gone(i);
	if (M.stopping)
		return;
	if (abnormal && M.slots[i].current[0] != '\0')
		memcpy(w->crashed, M.slots[i].current, QID_SIZE);
	if (lived < QUICK_DEATH)
		w->backoff = w->backoff == 0 ? RESTART_MIN :
		    (w->backoff * 2 > RESTART_MAX ? RESTART_MAX : w->backoff * 2);
	else
		w->backoff = 0;
	w->restart_at = now() + w->backoff;
	if (WIFSIGNALED(status))
		log_msg(LOG_ERR, w->crashed[0] ? w->crashed : NULL,
		    "worker %u (pid %ld) killed by signal %d%s; restarting in "
		    "%u s", i, pid, WTERMSIG(status),
		    w->crashed[0] ? " while delivering this entry" : "",
		    w->backoff);
	else
		log_msg(abnormal ? LOG_ERR : LOG_WARNING, NULL, "worker %u "
		    "exited with status %d; restarting in %u s", i,
		    WEXITSTATUS(status), w->backoff);
}

static void
reap(void)
{
	unsigned int i;
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		if ((i = find_worker(pid)) < M.n)
			worker_died(i, st);
}

static void
start_due(void)
{
	unsigned int i;

	for (i = 0; i < M.n; i++)
		if (M.w[i].pid == 0 && M.w[i].restart_at <= now())
			start_worker(i);
}

static unsigned int
running(void)
{
	unsigned int i, r = 0;

	for (i = 0; i < M.n; i++)
		r += M.w[i].pid != 0;
	return r;
}

void
master_signal_workers(struct master *m, int sig)
{
	unsigned int i;

	for (i = 0; i < m->n; i++)
		if (m->w[i].pid != 0)
			kill(m->w[i].pid, sig);
}

/* Removes tmp/ files older than a day: writers that died mid-message. */
static void
sweep_tmp(void)
{
	struct dirent *de;
	struct stat st;
	int sfd, tfd;
	DIR *d;

	M.next_sweep = now() + TMP_SWEEP;
	if ((sfd = spool_open(SPOOLDIR, LISTQ_UID, LISTQ_GID)) == -1)
		return;
	tfd = spool_open_dir(sfd, SPOOL_TMP, LISTQ_UID, LISTQ_GID);
	close(sfd);
	if (tfd == -1 || (d = fdopendir(tfd)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || fstatat(tfd, de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG(st.st_mode) ||
		    st.st_mtime > now() - TMP_MAX_AGE)
			continue;
		if (unlinkat(tfd, de->d_name, 0) == 0)
			log_msg(LOG_WARNING, de->d_name, "removed incomplete "
			    "tmp/ file, %ld s old", (long)(now() - st.st_mtime));
	}
	closedir(d);
}

/* Stops every worker and waits: used at shutdown and to change N. */
static void
stop_all(void)
{
	int st;

	master_signal_workers(&M, SIGTERM);
	while (running() > 0) {
		pid_t pid = waitpid(-1, &st, 0);
		unsigned int i;

		if (pid == -1 && errno != EINTR)
			break;
		if (pid > 0 && (i = find_worker(pid)) < M.n)
			worker_gone(i);
	}
}

static void
reload(void)
{
	struct config c;
	char err[512];
	unsigned int i, old = M.n;

	config_defaults(&c);
	if (config_load(M.config_path, 1, &c, err, sizeof(err)) == -1) {
		log_msg(LOG_ERR, NULL, "reload refused, keeping the running "
		    "configuration: %s", err);
		return;
	}
	M.cfg = c;
	if (c.workers == old) {
		master_signal_workers(&M, SIGHUP);
		log_msg(LOG_INFO, NULL, "configuration reloaded");
		return;
	}
	log_msg(LOG_INFO, NULL, "configuration reloaded: workers %u -> %u, "
	    "restarting the pool", old, c.workers);
	stop_all();
	M.n = c.workers;
	for (i = 0; i < M.n; i++) {
		memset(&M.w[i], 0, sizeof(M.w[i]));
		M.w[i].chan = -1;
	}
}

static void
handle_signal(void)
{
	struct signalfd_siginfo si;

	while (read(M.sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap();
			break;
		case SIGTERM:
		case SIGINT:
			M.stopping = 1;
			break;
		case SIGHUP:
			sd_notify(0, "RELOADING=1");
			reload();
			sd_notify(0, "READY=1");
			break;
		case SIGUSR1:
			master_signal_workers(&M, SIGUSR1);
			break;
		}
	}
}

/* Seconds until the next restart, sweep, sample or control deadline. */
static int
next_timeout(void)
{
	time_t next = M.next_sweep, ctl = mctl_deadline(&M);
	unsigned int i;

	if (M.next_sample < next)
		next = M.next_sample;
	if (ctl != 0 && ctl < next)
		next = ctl;
	for (i = 0; i < M.n; i++)
		if (M.w[i].pid == 0 && M.w[i].restart_at < next)
			next = M.w[i].restart_at;
	return next <= now() ? 0 : (int)(next - now());
}

int
pool_signalfd(int with_sigchld)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	sigset_t set;
	size_t i;

	sigemptyset(&set);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	if (with_sigchld)
		sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void
master_init(const char *config_path, const struct config *cfg,
    int foreground)
{
	unsigned int i;

	M.config_path = config_path;
	M.cfg = *cfg;
	M.n = cfg->workers;
	M.foreground = foreground;
	M.started = now();
	for (i = 0; i < MAX_WORKERS; i++)
		M.w[i].chan = -1;
	M.slots = mmap(NULL, sizeof(struct slot) * MAX_WORKERS, PROT_READ |
	    PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (M.slots == MAP_FAILED || (M.sigfd = pool_signalfd(1)) == -1)
		log_exit(EX_OSERR, NULL, "master setup: %s", strerror(errno));
	mctl_open(&M);
	sample();
}

/* Waits for a signal, a listq request or the next timer. */
static void
wait_events(void)
{
	struct pollfd pf[2 + CTL_PENDING];
	size_t n;

	pf[0] = (struct pollfd){ .fd = M.sigfd, .events = POLLIN };
	n = 1 + mctl_pollfds(&M, pf + 1);
	if (poll(pf, n, next_timeout() * 1000) > 0 && pf[0].revents != 0)
		handle_signal();
	if (!M.stopping)
		mctl_handle(&M, pf + 1, n - 1);
}

int
master_run(const char *config_path, const struct config *cfg,
    int foreground)
{
	master_init(config_path, cfg, foreground);
	setproctitle("master");
	sweep_tmp();
	start_due();
	sd_notifyf(0, "READY=1\nSTATUS=%u workers\nMAINPID=%ld", M.n,
	    (long)getpid());
	log_msg(LOG_INFO, NULL, "started: %u workers, spool %s", M.n,
	    SPOOLDIR);
	while (!M.stopping) {
		wait_events();
		if (M.stopping)
			break;
		if (now() >= M.next_sweep)
			sweep_tmp();
		if (now() >= M.next_sample)
			sample();
		start_due();
	}
	sd_notify(0, "STOPPING=1");
	mctl_close(&M);
	log_msg(LOG_INFO, NULL, "stopping: waiting for %u workers to finish "
	    "the transaction in flight", running());
	stop_all();
	log_msg(LOG_INFO, NULL, "stopped");
	return EX_OK;
}
