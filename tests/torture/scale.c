/*
 * SPDX-License-Identifier: ISC
 *
 * scale: a large spool.  N entries are preloaded (written in-process
 * with the common library, as the service uid, on a tmpfs), then listqd
 * starts with its default four workers.  Measured and printed for each
 * N (50k, 100k, 200k; smoke: 5k, 10k, 20k):
 *
 *  - the time from listqd's start to the sink's first accepted message
 *    (the bound: 2 s);
 *  - the workers' total resident memory, VmRSS and VmHWM from /proc,
 *    sampled while they deliver (bound: 64 MiB; invariant 8);
 *  - the cost of each worker's full scans of its buckets, from its
 *    "scan:" debug lines (entries, CPU seconds: the machine may be
 *    busy), at the start and at each rescan (every second here): the
 *    cost per entry of a rescan must not grow with N (a scan is O(its
 *    entries)).
 *
 * The bounds are asserted at full size; the smoke checks the same
 * figures exist and prints them.  Root only (tmpfs, service uid).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "daemon.h"
#include "enqueue.h"
#include "harness.h"
#include "spool.h"
#include "spoolfs.h"
#include "torture.h"

#define WORKERS		4
#define START_MS	2000
#define RSS_LIMIT_KB	((size_t)64 * 1024)
#define SAMPLE_MS	4000
#define FIRST_MS	60000
#define SIZES		3

static void
setup(void)
{
	target_load();
}

static void
teardown(void)
{
	daemon_teardown();
	spool_sweep();
}

TestSuite(scale, .init = setup, .fini = teardown, .timeout = 1800);

/* n entries of list "s", written as the service uid. */
static void
preload(size_t n)
{
	static const char msg[] = "From: a@example.net\nSubject: scale\n\n"
	    "a small message\n";
	struct entry_header h;
	char id[QID_SIZE];
	int spoolfd, tmpfd;
	size_t i;

	cr_assert_eq(setegid(T.svc_gid), 0);
	cr_assert_eq(seteuid(T.svc_uid), 0);
	spoolfd = spool_open(T.spool, T.svc_uid, T.svc_gid);
	tmpfd = spool_open_dir(spoolfd, SPOOL_TMP, T.svc_uid, T.svc_gid);
	for (i = 0; i < n && spoolfd != -1 && tmpfd != -1; i++) {
		memset(&h, 0, sizeof(h));
		strlcpy(h.command, "post", sizeof(h.command));
		strlcpy(h.list, "s", sizeof(h.list));
		if (enqueue_message(spoolfd, tmpfd, &h, msg, sizeof(msg) - 1,
		    T.svc_uid, T.svc_gid, id) == -1)
			break;
	}
	close(tmpfd);
	close(spoolfd);
	cr_assert_eq(seteuid(0), 0);
	cr_assert_eq(setegid(0), 0);
	cr_assert_eq(i, n, "preloading entry %zu: %s", i, strerror(errno));
}

/* Sums VmRSS and VmHWM (kB) over the master's children, the workers. */
static size_t
workers_mem(pid_t master, size_t *hwm)
{
	char path[64], line[256];
	size_t rss = 0, nw = 0;
	pid_t pid[WORKERS + 1];
	ssize_t n, i;
	uint64_t kb;
	FILE *f;

	*hwm = 0;
	if ((n = proc_children(master, pid, WORKERS + 1)) == -1)
		return 0;
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid[i]);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		nw++;
		while (fgets(line, sizeof(line), f) != NULL) {
			if (text_scan(text_field(line, 1), SIZE_MAX, &kb,
			    " kB") == NULL)
				continue;
			if (strncmp(line, "VmRSS:", 6) == 0)
				rss += kb;
			else if (strncmp(line, "VmHWM:", 6) == 0)
				*hwm += kb;
		}
		fclose(f);
	}
	cr_assert_eq(nw, WORKERS, "%zu workers found, not %d", nw, WORKERS);
	return rss;
}

struct scan {
	size_t	entries;	/* the first scans, summed over workers */
	double	secs;
	size_t	rescans;	/* the later ones (rescan_interval = 1s) */
	double	best_us;	/* the least CPU time per entry of those */
};

/*
 * Reads the workers' "scan:" lines: the first of each worker (the start)
 * summed, and of the rescans that follow (each finds every entry already
 * in the schedule) the cheapest per entry -- the least disturbed by the
 * other work of the machine.  Returns how many workers logged a scan.
 */
static size_t
scans(const struct daemon *d, struct scan *out)
{
	char *log = daemon_log(d), *p = log;
	unsigned int seen = 0;
	const char *q;
	uint64_t w, e;
	size_t n = 0;
	char *end;
	double s;

	memset(out, 0, sizeof(*out));
	/* "scan: worker W, E entries, S s cpu" */
	for (; (p = strstr(p, "scan: worker ")) != NULL; p += 5) {
		if ((q = text_scan(p + 13, 31, &w, ", ")) == NULL ||
		    (q = text_scan(q, SIZE_MAX, &e, " entries, ")) == NULL ||
		    e == 0)
			continue;
		s = strtod(q, &end);
		if (end == q || strncmp(end, " s cpu", 6) != 0)
			continue;
		if (!(seen & (1u << w))) {
			seen |= 1u << w;
			out->entries += e;
			out->secs += s;
			n++;
		} else if (out->rescans++ == 0 || s * 1e6 / (double)e <
		    out->best_us)
			out->best_us = s * 1e6 / (double)e;
	}
	free(log);
	return n;
}

struct figures {
	size_t	n;
	double	preload_s, first_ms;
	size_t	rss_kb, hwm_kb;
	struct scan scan;
};

static bool
delivered(void *arg)
{
	return sink_count(arg) > 0;
}

static void
measure(size_t n, struct figures *fig)
{
	struct daemon d;
	struct sink s;
	double t0, end;
	size_t rss, hwm;

	memset(fig, 0, sizeof(*fig));
	fig->n = n;
	spoolfs_mount((size_t)4 << 30);
	make_list("s", 1);
	t0 = torture_now();
	preload(n);
	fig->preload_s = torture_now() - t0;
	cr_assert_eq(queue_count(NULL, 0), n);
	sink_start(&s, NULL, 0, false);
	daemon_config(&d, s.port, "rescan_interval = 1s\n");
	t0 = torture_now();
	daemon_start(&d, WORKERS);
	cr_assert(wait_until(delivered, &s, FIRST_MS), "nothing delivered in "
	    "%d ms", FIRST_MS);
	fig->first_ms = (torture_now() - t0) * 1000;
	/* Memory while delivering, its peak over the sampling time. */
	for (end = torture_now() + SAMPLE_MS / 1000.0; torture_now() < end;
	    usleep(100000)) {
		rss = workers_mem(d.pid, &hwm);
		if (rss > fig->rss_kb)
			fig->rss_kb = rss;
		if (hwm > fig->hwm_kb)
			fig->hwm_kb = hwm;
	}
	cr_assert_eq(scans(&d, &fig->scan), WORKERS, "a worker logged no scan "
	    "line");
	cr_assert_gt(fig->scan.rescans, 0, "no rescan in %d ms", SAMPLE_MS);
	daemon_stop(&d);
	sink_stop(&s);
	spoolfs_unmount();
	torture_report("scale", "%zu entries: preload %.1f s; first delivery "
	    "%.0f ms after start; workers' RSS %zu KiB (peak HWM %zu KiB); "
	    "first scans: %zu entries in %.3f s cpu = %.2f us/entry; "
	    "rescans: %zu, best %.2f us/entry", n, fig->preload_s,
	    fig->first_ms, fig->rss_kb, fig->hwm_kb, fig->scan.entries,
	    fig->scan.secs, fig->scan.secs * 1e6 / (double)fig->scan.entries,
	    fig->scan.rescans, fig->scan.best_us);
}

Test(scale, preloaded)
{
	size_t base = torture_size(50000, 5000), i;
	struct figures fig[SIZES];
	double per[SIZES];

	if (!T.root)
		cr_skip_test("the spool on a tmpfs needs root");
	for (i = 0; i < SIZES; i++) {
		measure(base << i, &fig[i]);
		per[i] = fig[i].scan.best_us;
		cr_assert_eq(fig[i].scan.entries, fig[i].n, "the scans found "
		    "%zu entries of %zu", fig[i].scan.entries, fig[i].n);
	}
	torture_report("scale", "rescan cost per entry, %zu -> %zu entries: "
	    "x%.2f (O(entries): about x1)", fig[0].n, fig[SIZES - 1].n,
	    per[SIZES - 1] / per[0]);
	if (!torture_full())
		return;
	for (i = 0; i < SIZES; i++) {
		cr_assert_lt(fig[i].first_ms, START_MS, "%zu entries: first "
		    "delivery after %.0f ms", fig[i].n, fig[i].first_ms);
		cr_assert_lt(fig[i].rss_kb, RSS_LIMIT_KB, "%zu entries: "
		    "workers' RSS %zu KiB", fig[i].n, fig[i].rss_kb);
	}
	/*
	 * Four times the entries: less than twice the cost per entry (a
	 * scan whose cost per entry grew with the entries would show about
	 * x4; caches and a busy machine alone move it by up to x1.4).
	 */
	cr_assert_lt(per[SIZES - 1], per[0] * 2, "rescan cost per entry "
	    "grew x%.2f from %zu to %zu entries", per[SIZES - 1] / per[0],
	    fig[0].n, fig[SIZES - 1].n);
}
