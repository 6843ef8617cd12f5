/*
 * SPDX-License-Identifier: ISC
 *
 * listq status and listq metrics: the pool as its master reports it
 * (workers, deliveries counted by the workers, the relay in use, each
 * relay up or pausing) and the
 * spool as listq reads it, plus the settings compiled in.
 *
 * Invariants: both work with listqd stopped (they then say so and show
 * the spool alone); metrics is the Prometheus text exposition format,
 * one HELP and TYPE per family, counters only when listqd answered.
 */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin.h"
#include "json.h"
#include "number.h"
#include "settings.h"
#include "spool.h"

static const struct {
	const char	*name, *value;
} settings[] = {
	{ "PREFIX", PREFIX }, { "LIBEXECDIR", LIBEXECDIR },
	{ "SYSCONFDIR", SYSCONFDIR }, { "SPOOLDIR", SPOOLDIR },
	{ "LISTDIR", LISTDIR }, { "LISTQ_USER", LISTQ_USER },
	{ "LISTQ_UID", SETTING_TEXT(LISTQ_UID) },
	{ "LISTQ_GID", SETTING_TEXT(LISTQ_GID) },
	{ "MAIL_GIDS", SETTING_TEXT(MAIL_GIDS) },
	{ "MAX_MESSAGE_SIZE", SETTING_TEXT(MAX_MESSAGE_SIZE) },
	{ "SPOOL_RESERVE", SETTING_TEXT(SPOOL_RESERVE) },
	{ "VERSION", LISTQ_VERSION },
};
#define NSETTINGS	(sizeof(settings) / sizeof(settings[0]))

/* The live pid in the spool's pidfile (listq or a stuck listqd), or 0. */
static long
lock_holder(void)
{
	char buf[32];
	const char *end;
	uint64_t pid;
	ssize_t n;
	int fd;

	if ((fd = open(SPOOLDIR "/" SPOOL_PIDFILE, O_RDONLY | O_CLOEXEC)) ==
	    -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	/* pidfile_write() writes the pid and a newline. */
	if (number_scan(buf, INT32_MAX, &pid, &end) == -1 || (*end != '\n' &&
	    *end != '\0'))
		return 0;
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM) ?
	    (long)pid : 0;
}

static unsigned int
running_workers(const struct pool_status *ps)
{
	unsigned int i, r = 0;

	for (i = 0; i < ps->n; i++)
		r += ps->w[i].pid != 0;
	return r;
}

static void
text_workers(const struct pool_status *ps, time_t now)
{
	const struct pool_worker *w;
	char age[32];
	unsigned int i;

	for (i = 0; i < ps->n; i++) {
		w = &ps->w[i];
		if (w->pid == 0) {
			printf("  worker %-3u not running: restart in %lds\n",
			    i, (long)(w->restart_at - now));
			continue;
		}
		fmt_age((long)(now - w->started), age, sizeof(age));
		printf("  worker %-3u pid %-7ld up %-7s buckets b mod %u = %u "
		    "(%u)  %s%s%s\n", i, w->pid, age, ps->n, i,
		    (QID_BUCKETS - i + ps->n - 1) / ps->n, w->doing,
		    w->current[0] ? " " : "", w->current);
	}
}

static void
text_counts(const char *head, const char *when, const struct counts *c)
{
	printf("%-12s%-12s%lu sent, %lu deferred, %lu failed; %lu relay "
	    "errors\n", head, when, c->sent, c->deferred, c->failed,
	    c->relay_errors);
}

/* Each relay: up, or pausing until when, in how many workers, and why. */
static void
text_relays(const struct pool_status *ps)
{
	const struct pool_relay *r;
	char t[32];
	unsigned int i;

	for (i = 0; i < ps->nrelays; i++) {
		r = &ps->relays[i];
		printf("%-12s%s  ", i == 0 ? "relays:" : "", r->name);
		if (r->pausing == 0) {
			printf("up\n");
			continue;
		}
		fmt_time(r->until, t, sizeof(t));
		printf("pausing until %s (%u of %u workers): %s\n", t,
		    r->pausing, r->workers, r->why);
	}
}

static void
status_text(const struct pool_status *ps, const struct spool_summary *s)
{
	time_t now = time(NULL);
	char t[32], age[32];
	long holder;
	size_t i;

	if (ps->running) {
		fmt_time(ps->started, t, sizeof(t));
		fmt_age((long)(now - ps->started), age, sizeof(age));
		printf("listqd:     running, pid %ld, up %s (since %s)\n"
		    "config:     %s\nworkers:    %u (%u running)\n", ps->pid,
		    age, t, ps->config, ps->n, running_workers(ps));
		text_workers(ps, now);
	} else if ((holder = lock_holder()) != 0)
		printf("listqd:     not answering; pid %ld holds the spool "
		    "lock\n", holder);
	else
		printf("listqd:     not running\n");
	printf("queue:      %lu queued (%lu deferred), %lu held, %lu corrupt; "
	    "%llu bytes\n", s->queued, s->deferred, s->held, s->corrupt,
	    s->bytes);
	fmt_age((long)(now - s->oldest), age, sizeof(age));
	printf("oldest:     %s\n", s->oldest != 0 ? age : "-");
	if (ps->running) {
		text_counts("deliveries:", "last minute", &ps->minute);
		text_counts("", "last hour", &ps->hour);
		text_counts("", "since start", &ps->total);
		fmt_age((long)(now - ps->relay_at), age, sizeof(age));
		printf("relay:      %s%s%s%s\n", ps->relay_at != 0 ? ps->relay :
		    "none used yet", ps->relay_at != 0 ? " (" : "",
		    ps->relay_at != 0 ? age : "", ps->relay_at != 0 ? " ago)" :
		    "");
		text_relays(ps);
	}
	printf("settings:\n");
	for (i = 0; i < NSETTINGS; i++)
		printf("  %-17s %s\n", settings[i].name, settings[i].value);
}

static void
json_counts(struct json *j, const char *key, const struct counts *c)
{
	json_object(j, key);
	json_int(j, "sent", (long long)c->sent);
	json_int(j, "deferred", (long long)c->deferred);
	json_int(j, "failed", (long long)c->failed);
	json_int(j, "relay_errors", (long long)c->relay_errors);
	json_end(j);
}

static void
json_workers(struct json *j, const struct pool_status *ps)
{
	const struct pool_worker *w;
	unsigned int i, b;

	json_array(j, "workers");
	for (i = 0; i < ps->n; i++) {
		w = &ps->w[i];
		json_object(j, NULL);
		json_int(j, "index", i);
		json_bool(j, "running", w->pid != 0);
		json_int(j, "pid", w->pid);
		json_int(j, "started", (long long)w->started);
		json_int(j, "restart_at", (long long)w->restart_at);
		json_str(j, "doing", w->doing);
		json_str(j, "entry", w->current[0] ? w->current : NULL);
		json_array(j, "buckets");
		for (b = 0; b < QID_BUCKETS; b++)
			if (qid_bucket_owner(b, ps->n) == i)
				json_int(j, NULL, b);
		json_end(j);
		json_end(j);
	}
	json_end(j);
}

static void
json_relays(struct json *j, const struct pool_status *ps)
{
	const struct pool_relay *r;
	unsigned int i;

	json_array(j, "relays");
	for (i = 0; i < ps->nrelays; i++) {
		r = &ps->relays[i];
		json_object(j, NULL);
		json_str(j, "name", r->name);
		json_str(j, "state", r->pausing > 0 ? "pausing" : "up");
		json_int(j, "until", r->pausing > 0 ? (long long)r->until : 0);
		json_int(j, "workers_pausing", r->pausing);
		json_int(j, "workers", r->workers);
		json_str(j, "why", r->pausing > 0 ? r->why : NULL);
		json_end(j);
	}
	json_end(j);
}

static void
status_json(const struct pool_status *ps, const struct spool_summary *s)
{
	time_t now = time(NULL);
	struct json j;
	size_t i;

	json_start(&j, stdout);
	json_object(&j, NULL);
	json_object(&j, "daemon");
	json_bool(&j, "running", ps->running);
	if (ps->running) {
		json_int(&j, "pid", ps->pid);
		json_int(&j, "started", (long long)ps->started);
		json_int(&j, "uptime", (long long)(now - ps->started));
		json_str(&j, "config", ps->config);
	} else
		json_int(&j, "lock_holder", lock_holder());
	json_end(&j);
	if (ps->running)
		json_workers(&j, ps);
	json_object(&j, "queue");
	json_int(&j, "queued", (long long)s->queued);
	json_int(&j, "deferred", (long long)s->deferred);
	json_int(&j, "held", (long long)s->held);
	json_int(&j, "corrupt", (long long)s->corrupt);
	json_int(&j, "bytes", (long long)s->bytes);
	json_int(&j, "oldest_age", s->oldest != 0 ? (long long)(now -
	    s->oldest) : 0);
	json_end(&j);
	if (ps->running) {
		json_object(&j, "deliveries");
		json_counts(&j, "minute", &ps->minute);
		json_counts(&j, "hour", &ps->hour);
		json_counts(&j, "total", &ps->total);
		json_end(&j);
		json_object(&j, "relay");
		json_str(&j, "last", ps->relay_at != 0 ? ps->relay : NULL);
		json_int(&j, "at", (long long)ps->relay_at);
		json_end(&j);
		json_relays(&j, ps);
	}
	json_object(&j, "settings");
	for (i = 0; i < NSETTINGS; i++)
		json_str(&j, settings[i].name, settings[i].value);
	json_end(&j);
	json_end(&j);
}

int
cmd_status(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 } };
	struct pool_status *ps = calloc(1, sizeof(*ps));
	struct spool_summary s;
	bool json = false;

	if (ps == NULL)
		err(EX_OSERR, NULL);
	while (admin_opt(argc, argv, "", opts) != -1)
		json = true;
	if (optind != argc)
		usage_error();
	pool_status_get(a, ps);
	spool_summary_get(a, &s);
	if (json)
		status_json(ps, &s);
	else
		status_text(ps, &s);
	free(ps);
	return 0;
}

static void
family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_pool(const struct pool_status *ps)
{
	const struct counts *c = &ps->total;
	unsigned long cum = 0;
	size_t i;

	family("listq_start_time_seconds", "gauge", "When the running listqd "
	    "started, in seconds since the epoch.");
	printf("listq_start_time_seconds %lld\n", (long long)ps->started);
	family("listq_workers", "gauge", "listqd workers, configured and "
	    "running.");
	printf("listq_workers{state=\"configured\"} %u\n"
	    "listq_workers{state=\"running\"} %u\n", ps->n,
	    running_workers(ps));
	family("listq_deliveries_total", "counter", "Recipient delivery "
	    "attempts by outcome, since listqd started.");
	printf("listq_deliveries_total{status=\"sent\"} %lu\n"
	    "listq_deliveries_total{status=\"deferred\"} %lu\n"
	    "listq_deliveries_total{status=\"failed\"} %lu\n", c->sent,
	    c->deferred, c->failed);
	family("listq_delivery_latency_seconds", "histogram", "From arrival "
	    "in the spool to delivery, per recipient delivered.");
	for (i = 0; i < LAT_BUCKETS; i++) {
		cum += c->lat[i];
		printf("listq_delivery_latency_seconds_bucket{le=\"%lu\"} "
		    "%lu\n", stats_lat_bounds[i], cum);
	}
	cum += c->lat[LAT_BUCKETS];
	printf("listq_delivery_latency_seconds_bucket{le=\"+Inf\"} %lu\n"
	    "listq_delivery_latency_seconds_sum %.3f\n"
	    "listq_delivery_latency_seconds_count %lu\n", cum,
	    (double)c->lat_sum_ms / 1000, cum);
	family("listq_relay_errors_total", "counter", "Relay pauses (no "
	    "session could be had, or sessions kept ending before delivering),"
	    " since listqd started.");
	printf("listq_relay_errors_total %lu\n", c->relay_errors);
}

int
cmd_metrics(struct admin *a, int argc, char **argv)
{
	struct pool_status *ps = calloc(1, sizeof(*ps));
	struct spool_summary s;

	if (ps == NULL)
		err(EX_OSERR, NULL);
	if (admin_opt(argc, argv, "", (struct option[]){ { NULL, 0, NULL,
	    0 } }) != -1 || optind != argc)
		usage_error();
	pool_status_get(a, ps);
	spool_summary_get(a, &s);
	family("listq_up", "gauge", "1 if listqd answered listq, else 0.");
	printf("listq_up %d\n", ps->running);
	family("listq_queue_entries", "gauge", "Entries in the spool by "
	    "state (queued: not attempted yet).");
	printf("listq_queue_entries{state=\"queued\"} %lu\n"
	    "listq_queue_entries{state=\"deferred\"} %lu\n"
	    "listq_queue_entries{state=\"held\"} %lu\n"
	    "listq_queue_entries{state=\"corrupt\"} %lu\n",
	    s.queued - s.deferred, s.deferred, s.held, s.corrupt);
	family("listq_queue_bytes", "gauge", "Message bytes in the spool.");
	printf("listq_queue_bytes %llu\n", s.bytes);
	family("listq_oldest_entry_age_seconds", "gauge", "Age of the oldest "
	    "queued entry; 0 when the queue is empty.");
	printf("listq_oldest_entry_age_seconds %lld\n", s.oldest != 0 ?
	    (long long)(time(NULL) - s.oldest) : 0);
	if (ps->running)
		metrics_pool(ps);
	free(ps);
	return 0;
}
