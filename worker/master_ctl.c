/*
 * SPDX-License-Identifier: ISC
 *
 * The master's end of the control path (protocol in control.c): it
 * accepts listq's connections on SPOOLDIR/control, lets in root and the
 * service uid only (SO_PEERCRED), answers ping, status (from the workers'
 * shared slots: counts, relays up or pausing) and flush of the
 * whole queue itself, and passes every other request, with the
 * connection, to the worker owning the entry it names, or to every
 * worker for a whole list.
 *
 * Invariants: the master never opens an entry for listq (invariant 3);
 * it never blocks on a client: it reads a request only when poll says
 * it is there and drops a connection that does not ask within CTL_WAIT
 * seconds; a request for a worker that is not running is refused, never
 * queued, so it cannot reach a later owner of another slice.
 */
#include <sys/socket.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "admin_ops.h"
#include "control.h"
#include "log.h"
#include "master.h"
#include "settings.h"
#include "spool.h"

void
mctl_open(struct master *m)
{
	size_t i;

	for (i = 0; i < CTL_PENDING; i++)
		m->conn[i].fd = -1;
	if ((m->ctlfd = ctl_listen(SPOOLDIR "/" SPOOL_CONTROL)) == -1)
		log_exit(EX_TEMPFAIL, NULL, "control socket %s/%s: %s",
		    SPOOLDIR, SPOOL_CONTROL, strerror(errno));
}

static void
drop(struct ctl_conn *c)
{
	close(c->fd);
	c->fd = -1;
}

void
mctl_close(struct master *m)
{
	size_t i;

	for (i = 0; i < CTL_PENDING; i++)
		if (m->conn[i].fd != -1)
			drop(&m->conn[i]);
	if (m->ctlfd != -1) {
		close(m->ctlfd);
		unlink(SPOOLDIR "/" SPOOL_CONTROL);
		m->ctlfd = -1;
	}
}

void
mctl_child_close(struct master *m, unsigned int self)
{
	unsigned int i;

	for (i = 0; i < CTL_PENDING; i++)
		if (m->conn[i].fd != -1)
			close(m->conn[i].fd);
	for (i = 0; i < MAX_WORKERS; i++)
		if (i != self && m->w[i].chan != -1)
			close(m->w[i].chan);
	if (m->ctlfd != -1)
		close(m->ctlfd);
}

size_t
mctl_pollfds(const struct master *m, struct pollfd *pf)
{
	size_t i, n = 0;

	if (m->ctlfd != -1)
		pf[n++] = (struct pollfd){ .fd = m->ctlfd, .events = POLLIN };
	for (i = 0; i < CTL_PENDING; i++)
		if (m->conn[i].fd != -1)
			pf[n++] = (struct pollfd){ .fd = m->conn[i].fd,
			    .events = POLLIN };
	return n;
}

time_t
mctl_deadline(const struct master *m)
{
	time_t first = 0;
	size_t i;

	for (i = 0; i < CTL_PENDING; i++)
		if (m->conn[i].fd != -1 && (first == 0 ||
		    m->conn[i].deadline < first))
			first = m->conn[i].deadline;
	return first;
}

static void
say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(int fd, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		ctl_send(fd, line, (size_t)n < sizeof(line) ? (size_t)n :
		    sizeof(line) - 1);
}

static void
status_counts(struct ctl_out *o, const char *name, const struct counts *c)
{
	ctl_line(o, "%s %lu %lu %lu %lu", name, c->sent, c->deferred,
	    c->failed, c->relay_errors);
}

/* A slot's text, which its worker may be rewriting: one clean word run. */
static void
slot_text(char *out, size_t len, const char *in, size_t inlen)
{
	size_t i;

	for (i = 0; i + 1 < len && i < inlen && in[i] != '\0'; i++)
		out[i] = (char)(in[i] > ' ' && in[i] < 0x7f ? in[i] : ' ');
	out[i] = '\0';
}

static void
status_workers(struct master *m, struct ctl_out *o)
{
	char doing[64], cur[QID_SIZE];
	const struct slot *s;
	unsigned int i;

	for (i = 0; i < m->n; i++) {
		s = &m->slots[i];
		slot_text(doing, sizeof(doing), s->doing, sizeof(s->doing));
		slot_text(cur, sizeof(cur), s->current, sizeof(s->current));
		ctl_line(o, "worker %u %ld %lld %lld %s %s", i,
		    (long)m->w[i].pid, (long long)(m->w[i].pid != 0 ?
		    s->started : 0), (long long)(m->w[i].pid != 0 ? 0 :
		    m->w[i].restart_at), cur[0] != '\0' && cur[0] != ' ' ? cur :
		    "-", doing[0] != '\0' ? doing : "starting");
	}
}

static void
status_relay(struct master *m, struct ctl_out *o)
{
	struct relay_note newest = m->relay;
	char name[RELAY_NAME_MAX];
	unsigned int i;

	for (i = 0; i < m->n; i++)
		relay_keep_newer(&newest, &m->slots[i].relay);
	if (newest.at == 0)
		return;
	slot_text(name, sizeof(name), newest.name, sizeof(newest.name));
	ctl_line(o, "relay %lld %s", (long long)newest.at, name);
}

/* One relay as the running workers see it, for status_relays. */
struct relay_sum {
	struct relay_state s;		/* the pause that ends last */
	unsigned int	 pausing, workers;
};

static void
sum_board(struct relay_sum *sum, size_t *n, const struct relay_board *b,
    time_t now)
{
	struct relay_sum *r;
	size_t k, j;

	for (k = 0; k < b->n; k++) {
		for (j = 0; j < *n && strncmp(sum[j].s.name, b->r[k].name,
		    sizeof(sum[j].s.name)) != 0; j++)
			continue;
		if (j == *n) {
			if (*n == RELAYS_SHOWN)
				continue;
			(*n)++;
		}
		r = &sum[j];
		if (r->workers++ == 0)
			slot_text(r->s.name, sizeof(r->s.name), b->r[k].name,
			    sizeof(b->r[k].name));
		if (b->r[k].until <= now)
			continue;
		r->pausing++;
		if (b->r[k].until > r->s.until) {
			r->s.until = b->r[k].until;
			slot_text(r->s.why, sizeof(r->s.why), b->r[k].why,
			    sizeof(b->r[k].why));
		}
	}
}

/*
 * Each relay: "relaystate NAME UNTIL PAUSING WORKERS WHY", UNTIL the end
 * of the last pause among the PAUSING of WORKERS that know it (each
 * worker learns for itself), 0 and "-" when none pauses it.
 */
static void
status_relays(struct master *m, struct ctl_out *o)
{
	struct relay_sum sum[RELAYS_SHOWN];
	struct relay_board b;
	time_t now = time(NULL);
	size_t n = 0, j;
	unsigned int i;

	memset(sum, 0, sizeof(sum));
	for (i = 0; i < m->n; i++)
		if (m->w[i].pid != 0 &&
		    relay_board_read(&m->slots[i].relays, &b) == 0)
			sum_board(sum, &n, &b, now);
	for (j = 0; j < n; j++)
		ctl_line(o, "relaystate %s %lld %u %u %s", sum[j].s.name,
		    (long long)sum[j].s.until, sum[j].pausing, sum[j].workers,
		    sum[j].pausing > 0 && sum[j].s.why[0] != '\0' ?
		    sum[j].s.why : "-");
}

/* The whole state of the pool, one fact a line (parsed by listq). */
static void
status(struct master *m, int fd)
{
	const struct counts *then;
	struct counts total, win;
	struct ctl_out o;
	time_t t = time(NULL);
	size_t i;

	ctl_out_init(&o, fd);
	ctl_line(&o, "listqd %ld %lld %u", (long)getpid(),
	    (long long)m->started, m->n);
	ctl_line(&o, "config %s", m->config_path);
	status_workers(m, &o);
	master_totals(m, &total);
	status_counts(&o, "total", &total);
	for (i = 0; i < 2; i++) {
		then = stats_ring_at(&m->ring, t - (i == 0 ? 60 : 3600));
		counts_diff(&win, &total, then != NULL ? then : &total);
		status_counts(&o, i == 0 ? "minute" : "hour", &win);
	}
	ctl_line(&o, "latency %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu",
	    total.lat_sum_ms, total.lat[0], total.lat[1], total.lat[2],
	    total.lat[3], total.lat[4], total.lat[5], total.lat[6],
	    total.lat[7], total.lat[8], total.lat[9], total.lat[10]);
	status_relay(m, &o);
	status_relays(m, &o);
	ctl_flush(&o);
}

/* Passes the connection and the request to worker i, or says why not. */
static void
pass(struct master *m, unsigned int i, int fd, uid_t uid, const char *req)
{
	char msg[CTL_REQUEST_MAX + 32];

	if (m->w[i].pid == 0 || m->w[i].chan == -1) {
		say(fd, "err %d - worker %u is not running (restart in %lld s);"
		    " its entries were not touched\nend %u\n", EX_TEMPFAIL, i,
		    (long long)(m->w[i].restart_at - time(NULL)), i);
		return;
	}
	snprintf(msg, sizeof(msg), "%lu %s", (unsigned long)uid, req);
	if (ctl_send_fd(m->w[i].chan, fd, msg) == -1)
		say(fd, "err %d - worker %u cannot take the request now (%s)\n"
		    "end %u\n", EX_TEMPFAIL, i, strerror(errno), i);
}

static void
dispatch(struct master *m, int fd, uid_t uid, char *req)
{
	char copy[CTL_REQUEST_MAX], *arg = copy, *verb, id[QID_SIZE];
	unsigned int i;
	int route;

	strlcpy(copy, req, sizeof(copy));
	verb = strsep(&arg, " ");
	if (strcmp(verb, "ping") == 0 && arg == NULL)
		say(fd, "pong %ld\n", (long)getpid());
	else if (strcmp(verb, "status") == 0 && arg == NULL)
		status(m, fd);
	else if (strcmp(verb, "flush") == 0 && arg == NULL) {
		master_signal_workers(m, SIGUSR1);
		log_msg(LOG_INFO, NULL, "flush requested by uid %lu",
		    (unsigned long)uid);
		say(fd, "ok - every worker retries its deferred entries now\n");
	} else if ((route = adm_route(verb, arg)) == -1)
		say(fd, "err %d - bad request\n", EX_USAGE);
	else if (route == ADM_ONE) {
		/* The id alone: "reject ID REASON" has text after it. */
		strlcpy(id, arg, sizeof(id));
		say(fd, "parts 1\n");
		pass(m, qid_bucket_owner(qid_bucket(id), m->n), fd, uid, req);
	} else {
		say(fd, "parts %u\n", m->n);
		for (i = 0; i < m->n; i++)
			pass(m, i, fd, uid, req);
	}
}

/* A waiting connection has something: its request, or its end. */
static void
request(struct master *m, struct ctl_conn *c)
{
	char req[CTL_REQUEST_MAX];
	ssize_t n = recv(c->fd, req, sizeof(req) - 1, MSG_DONTWAIT);

	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && !c->refused) {
		req[n] = '\0';
		req[strcspn(req, "\n")] = '\0';
		dispatch(m, c->fd, c->uid, req);
	}
	drop(c);
}

static void
accept_all(struct master *m)
{
	struct ctl_conn *c;
	int fd, refused;
	size_t i;
	uid_t uid;

	while ((fd = accept4(m->ctlfd, NULL, NULL, SOCK_CLOEXEC)) != -1) {
		for (i = 0, c = NULL; i < CTL_PENDING && c == NULL; i++)
			if (m->conn[i].fd == -1)
				c = &m->conn[i];
		if (c == NULL) {
			say(fd, "err %d - busy, try again\n", EX_TEMPFAIL);
			close(fd);
			continue;
		}
		/* A refusal waits for the request, so that it is read. */
		uid = (uid_t)-1;
		if ((refused = ctl_peer_uid(fd, &uid) == -1 || (uid != 0 &&
		    uid != LISTQ_UID))) {
			log_msg(LOG_WARNING, NULL, "control: refused uid %ld",
			    (long)uid);
			say(fd, "err %d - uid %ld is neither root nor the "
			    "service\n", EX_NOPERM, (long)uid);
		}
		*c = (struct ctl_conn){ fd, uid, refused, time(NULL) +
		    CTL_WAIT };
	}
}

void
mctl_handle(struct master *m, const struct pollfd *pf, size_t n)
{
	size_t i, k;

	for (k = 0; k < n; k++) {
		if (pf[k].revents == 0 || pf[k].fd == m->ctlfd)
			continue;
		for (i = 0; i < CTL_PENDING; i++)
			if (m->conn[i].fd == pf[k].fd)
				request(m, &m->conn[i]);
	}
	/*
	 * "<=", as next_timeout() in master.c: it wakes the loop at once when
	 * a deadline is now, so a connection kept here until the second
	 * after would make the master spin for that second.
	 */
	for (i = 0; i < CTL_PENDING; i++)
		if (m->conn[i].fd != -1 && m->conn[i].deadline <= time(NULL))
			drop(&m->conn[i]);
	if (m->ctlfd != -1)
		accept_all(m);
}
