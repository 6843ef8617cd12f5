/*
 * SPDX-License-Identifier: ISC
 *
 * The posting gate and the moderation queue, end to end: the built
 * wrapper, listqd, listq and the test sink as separate processes.
 *
 * The attacker comes first: a stranger's post to a members list must
 * reach no member until a moderator decides; a decision by mail needs
 * the token of that post, list and action, unexpired, from a
 * moderator's From:, and works once; altered, replayed, expired,
 * other-list tokens and forged From: lines do nothing but a log line.
 * Then the moderator's paths: one notice per moderator, approve (each
 * member gets the post once), reject (one notice to the poster, at most
 * one an hour), discard, expiry, and a worker killed while it applies a
 * decision.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "admin_run.h"
#include "daemon.h"
#include "harness.h"
#include "qid.h"

#define WAIT_MS		30000
#define LIST		"mod"
#define MODERATOR	"boss@example.org"
#define STRANGER	"stranger@evil.example"

static struct sink S;
static struct daemon D;
static struct out O;

static void
setup(void)
{
	spool_reset();
	memset(&S, 0, sizeof(S));
	memset(&D, 0, sizeof(D));
	memset(&O, 0, sizeof(O));
}

static void
teardown(void)
{
	daemon_teardown();
	out_free(&O);
}

static void
write_list_file(const char *list, const char *file, const char *text)
{
	char path[1024];
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%s", T.lists, list, file);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_neq(fd, -1, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	if (T.root)
		cr_assert_eq(fchown(fd, T.svc_uid, T.svc_gid), 0);
	close(fd);
}

/*
 * A list of three members whose config names no policy: invariant 10
 * makes it members + hold.  MODERATOR moderates.
 */
static void
make_gated_list(const char *name, const char *extra)
{
	char text[512];

	make_list(name, 3);
	snprintf(text, sizeof(text), "address = %s@example.org\n%s", name,
	    extra != NULL ? extra : "");
	write_list_file(name, "config", text);
	write_list_file(name, "moderators", MODERATOR "\n");
}

static void
start(const char *extra, int workers)
{
	sink_start(&S, NULL, 0, false);
	daemon_config(&D, S.port, extra);
	daemon_start(&D, workers);
}

static void
submit(const char *cmd, const char *list, const char *msg)
{
	struct result r;

	cr_assert_eq(run_simple(cmd, list, msg, strlen(msg), &r), 0,
	    "%s %s: %s", cmd, list, r.err);
}

/* A post From: from, with the MTA's Return-Path. */
static void
post_from(const char *list, const char *from, const char *subject)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "Return-Path: <%s>\nFrom: Someone <%s>\n"
	    "To: %s@example.org\nSubject: %s\n\nfirst line of %s\n"
	    "second line\n", from, from, list, subject, subject);
	submit("post", list, msg);
}

struct logwait {
	const char	*needle;
	size_t		 n;
};

static bool
logged(void *arg)
{
	struct logwait *w = arg;

	return log_count(&D, w->needle) >= w->n;
}

static void
wait_log(const char *needle, size_t n)
{
	struct logwait w = { needle, n };

	cr_assert(wait_until(logged, &w, WAIT_MS), "never logged %zu x \"%s\"",
	    n, needle);
}

static void
wait_sink(size_t n)
{
	cr_assert(sink_wait_count(&S, n, WAIT_MS), "the sink has %zu "
	    "transactions, not %zu", sink_count(&S), n);
}

static size_t
copies_to(const char *rcpt)
{
	return sink_copies_to(&S, rcpt);
}

static char *
data_to(const char *rcpt)
{
	return sink_data_to(&S, rcpt);
}

static void
assert_members_got(size_t n)
{
	char m[64];
	int i;

	for (i = 0; i < 3; i++) {
		snprintf(m, sizeof(m), "m%d@members.example", i);
		cr_assert_eq(copies_to(m), n, "%s got %zu copies, not %zu", m,
		    copies_to(m), n);
	}
}

/* The id of the one held post (from listq held --json). */
static void
held_id(char id[QID_SIZE])
{
	const char *p;

	cr_assert_eq(listq(&O, "held", "--json", (char *)NULL), 0, "%s",
	    O.err);
	assert_json(O.out, "len(d) == 1 and d[0]['list'] == 'mod'");
	cr_assert_not_null(p = strstr(O.out, "\"id\":\""), "%s", O.out);
	memcpy(id, p + 6, QID_LEN);
	id[QID_LEN] = '\0';
	cr_assert(qid_valid(id), "%s", O.out);
	out_free(&O);
}

static size_t
held_count(void)
{
	size_t n = 0;
	const char *p;

	cr_assert_eq(listq(&O, "held", "--json", (char *)NULL), 0, "%s",
	    O.err);
	for (p = O.out; (p = strstr(p, "\"id\":")) != NULL; p++)
		n++;
	out_free(&O);
	return n;
}

/* A moderator's (or a forger's) reply to name-request. */
static void
reply(const char *list, const char *from, const char *subject)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "Return-Path: <%s>\nFrom: <%s>\n"
	    "To: %s-request@example.org\nSubject: %s\n\nok\n", from, from,
	    list, subject);
	submit("request", list, msg);
}

/* Holds one stranger's post and returns its moderator's notice. */
static char *
hold_one(char id[QID_SIZE])
{
	post_from(LIST, STRANGER, "buy now");
	wait_log("held for moderation", 1);
	wait_sink(1);
	held_id(id);
	return data_to(MODERATOR);
}

Test(moderation, stranger_held_one_notice_approve_delivers_once,
    .init = setup, .fini = teardown, .timeout = 120)
{
	char id[QID_SIZE], *notice;

	make_gated_list(LIST, NULL);
	start(NULL, 2);
	notice = hold_one(id);
	cr_assert_not_null(strstr(notice, "Auto-Submitted: auto-replied"));
	cr_assert_not_null(strstr(notice, "X-Loop: mod@example.org"));
	cr_assert_not_null(strstr(notice, "From: mod <mod-owner@example.org>"),
	    "%s", notice);
	cr_assert_not_null(strstr(notice, "message/rfc822"));
	cr_assert_not_null(strstr(notice, "> first line of buy now"));
	cr_assert_not_null(strstr(notice, id));
	free(notice);
	assert_members_got(0);
	cr_assert_eq(listq(&O, "approve", id, (char *)NULL), 0, "%s", O.err);
	out_free(&O);
	wait_sink(2);
	wait_log("status=sent", 4);
	assert_members_got(1);
	cr_assert_eq(held_count(), 0);
	/* A second approval finds nothing: the post went once. */
	cr_assert_neq(listq(&O, "approve", id, (char *)NULL), 0);
	out_free(&O);
	cr_assert_eq(log_count(&D, "approved post: through the gate"), 1);
	assert_members_got(1);
}

Test(moderation, member_posts_straight_through, .init = setup,
    .fini = teardown, .timeout = 90)
{
	make_gated_list(LIST, NULL);
	start(NULL, 1);
	post_from(LIST, "m1@members.example", "hello");
	wait_log("status=sent", 3);
	assert_members_got(1);
	cr_assert_eq(log_count(&D, "held for moderation"), 0);
	cr_assert_eq(copies_to(MODERATOR), 0);
}

Test(moderation, reject_one_notice_per_hour_nothing_delivered,
    .init = setup, .fini = teardown, .timeout = 120)
{
	char id[QID_SIZE], *notice;

	make_gated_list(LIST, NULL);
	start(NULL, 8);		/* the reason must not change the owner */
	free(hold_one(id));
	cr_assert_eq(listq(&O, "reject", "--reason", "off topic here", id,
	    (char *)NULL), 0, "%s", O.err);
	out_free(&O);
	wait_sink(2);
	notice = data_to(STRANGER);
	cr_assert_not_null(strstr(notice, "off topic here"), "%s", notice);
	cr_assert_not_null(strstr(notice, "Auto-Submitted: auto-replied"));
	free(notice);
	/* The same sender again within the hour: rejected, not answered. */
	post_from(LIST, STRANGER, "buy more");
	wait_log("held for moderation", 2);
	wait_sink(3);
	held_id(id);
	cr_assert_eq(listq(&O, "reject", "--reason", "again", id,
	    (char *)NULL), 0, "%s", O.err);
	out_free(&O);
	wait_log("one went within the hour", 1);
	cr_assert_eq(copies_to(STRANGER), 1);
	assert_members_got(0);
	cr_assert_eq(held_count(), 0);
}

Test(moderation, no_notice_to_robots_or_null_sender, .init = setup,
    .fini = teardown, .timeout = 120)
{
	make_gated_list(LIST, "nonmember_action = reject\n");
	start(NULL, 1);
	post_from(LIST, "list-bounces@other.example", "a bounce");
	submit("post", LIST, "Return-Path: <>\nFrom: <x@evil.example>\n"
	    "Subject: null\n\nx\n");
	submit("post", LIST, "Return-Path: <bot@evil.example>\n"
	    "From: <bot@evil.example>\nAuto-Submitted: auto-replied\n"
	    "Subject: vacation\n\nx\n");
	wait_log("rejected at the gate", 3);
	cr_assert_eq(sink_count(&S), 0);
	cr_assert_eq(log_count(&D, "rejection notice"), 0);
}

Test(moderation, discard_delivers_nothing, .init = setup,
    .fini = teardown, .timeout = 90)
{
	char id[QID_SIZE];

	make_gated_list(LIST, NULL);
	start(NULL, 1);
	free(hold_one(id));
	cr_assert_eq(listq(&O, "discard", id, (char *)NULL), 0, "%s", O.err);
	out_free(&O);
	wait_log("discarded by uid", 1);
	cr_assert_eq(held_count(), 0);
	cr_assert_eq(sink_count(&S), 1);
	assert_members_got(0);
}

Test(moderation, expiry_discards, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[QID_SIZE];

	make_gated_list(LIST, NULL);
	start("moderation_lifetime = 2s\nrescan_interval = 1s\n", 1);
	free(hold_one(id));
	wait_log("expired after 2 s without a decision; discarded", 1);
	cr_assert_eq(held_count(), 0);
	cr_assert_eq(sink_count(&S), 1);
	assert_members_got(0);
}

Test(moderation, approve_by_mail_works_once, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char id[QID_SIZE], tok[256], subject[512], *notice;

	make_gated_list(LIST, NULL);
	start(NULL, 2);
	notice = hold_one(id);
	notice_token(notice, "approve", tok, sizeof(tok));
	free(notice);
	/* Folded, as the notice's own Subject is. */
	snprintf(subject, sizeof(subject), "Re: mod: post held for approval\n"
	    " %s", tok);
	reply(LIST, MODERATOR, subject);
	wait_log("status=sent", 4);
	assert_members_got(1);
	/* The same mail again: a log line, nothing else. */
	reply(LIST, MODERATOR, subject);
	wait_log("no such held post", 1);
	assert_members_got(1);
	cr_assert_eq(sink_count(&S), 2);
}

/* After each forged request: its log line, the post still held. */
static void
assert_refused(const char *why, size_t n)
{
	wait_log(why, n);
	wait_log("removed (request processed)", n);
	cr_assert_eq(held_count(), 1);
	assert_members_got(0);
}

Test(moderation, forged_and_altered_tokens_do_nothing, .init = setup,
    .fini = teardown, .timeout = 180)
{
	char id[QID_SIZE], tok[256], bad[256], subject[512], *notice;
	size_t last, n = 0;

	make_gated_list(LIST, NULL);
	make_gated_list("other", NULL);
	start(NULL, 2);
	notice = hold_one(id);
	notice_token(notice, "approve", tok, sizeof(tok));
	free(notice);

	/* A moderator's From without the token. */
	reply(LIST, MODERATOR, "Re: approve it please");
	assert_refused("ignored: no token", 1);
	/* The token altered: its MAC, its action, its id, its expiry. */
	strlcpy(bad, tok, sizeof(bad));
	last = strlen(bad) - 1;
	bad[last] = bad[last] == '0' ? '1' : '0';
	snprintf(subject, sizeof(subject), "Re: %s", bad);
	reply(LIST, MODERATOR, subject);
	assert_refused("wrong token", ++n);
	snprintf(subject, sizeof(subject), "Re: discard%s", tok + 7);
	reply(LIST, MODERATOR, subject);
	assert_refused("wrong token", ++n);
	strlcpy(bad, tok, sizeof(bad));		/* the expiry, later */
	bad[8 + QID_LEN + 1] = '9';
	snprintf(subject, sizeof(subject), "Re: %s", bad);
	reply(LIST, MODERATOR, subject);
	assert_refused("wrong token", ++n);
	strlcpy(bad, tok, sizeof(bad));		/* the id, another's */
	bad[8 + QID_LEN - 1] = bad[8 + QID_LEN - 1] == 'a' ? 'b' : 'a';
	snprintf(subject, sizeof(subject), "Re: %s", bad);
	reply(LIST, MODERATOR, subject);
	assert_refused("wrong token", ++n);
	/* The right token sent to another list. */
	snprintf(subject, sizeof(subject), "Re: %s", tok);
	reply("other", MODERATOR, subject);
	assert_refused("wrong token", ++n);
	/* The right token from a forger's From:. */
	reply(LIST, STRANGER, subject);
	assert_refused("From: is not a moderator", 1);
	cr_assert_eq(log_count(&D, "by mail accepted"), 0);
}

static bool
clock_past(void *arg)
{
	return (long long)time(NULL) > *(long long *)arg;
}

Test(moderation, expired_token_does_nothing, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char tok[256], subject[512], *notice;
	long long expires;

	make_gated_list(LIST, NULL);
	/* No sweep before the reply: the post outlives its token. */
	start("moderation_lifetime = 1s\nrescan_interval = 1h\n", 1);
	post_from(LIST, STRANGER, "late");
	wait_log("held for moderation", 1);
	wait_sink(1);
	notice = data_to(MODERATOR);
	notice_token(notice, "approve", tok, sizeof(tok));
	free(notice);
	/* approve-ID-EXPIRES-MAC: wait for the token's own clock. */
	expires = strtoll(tok + 8 + QID_LEN + 1, NULL, 10);
	cr_assert(wait_until(clock_past, &expires, WAIT_MS));
	snprintf(subject, sizeof(subject), "Re: %s", tok);
	reply(LIST, MODERATOR, subject);
	wait_log("token expired", 1);
	assert_members_got(0);
	cr_assert_eq(log_count(&D, "by mail accepted"), 0);
}

/* The bucket directory of id. */
static void
bucket_of(const char *id, char *path, size_t len)
{
	snprintf(path, len, "%s/queue/%02x", T.spool, qid_bucket(id));
}

static void
move(const char *from_dir, const char *to_dir, const char *name)
{
	char a[2300], b[2300];

	snprintf(a, sizeof(a), "%s/%s", from_dir, name);
	snprintf(b, sizeof(b), "%s/%s", to_dir, name);
	cr_assert_eq(rename(a, b), 0, "%s: %s", a, strerror(errno));
}

/*
 * The worker died between the two renames of an approval: the record,
 * marked approved, is in the bucket, the post still in moderation/.  The
 * next owner finishes the move and delivers once.
 */
Test(moderation, approval_cut_short_is_finished_once, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char id[QID_SIZE], mod[1024], bucket[1024], path[1100], *rec, *p;
	size_t len;
	int fd;

	make_gated_list(LIST, NULL);
	start(NULL, 1);
	free(hold_one(id));
	cr_assert_eq(daemon_stop(&D), 0);
	snprintf(mod, sizeof(mod), "%s/moderation", T.spool);
	bucket_of(id, bucket, sizeof(bucket));
	snprintf(path, sizeof(path), "%s/%s.mod", mod, id);
	rec = read_file(path, &len);
	cr_assert_not_null(p = strstr(rec, "decision: none\n"));
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_neq(fd, -1);
	dprintf(fd, "%.*sdecision: approve\n%s", (int)(p - rec), rec,
	    p + strlen("decision: none\n"));
	close(fd);
	free(rec);
	snprintf(path, sizeof(path), "%s.mod", id);
	move(mod, bucket, path);
	daemon_start(&D, 1);
	wait_log("approval finished", 1);
	wait_log("status=sent", 4);
	assert_members_got(1);
	cr_assert_eq(held_count(), 0);
}

/* SIGKILL of the only worker right after it took an approval. */
Test(moderation, worker_killed_while_applying_approval, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char id[QID_SIZE];
	pid_t w;

	make_gated_list(LIST, NULL);
	start(NULL, 1);
	free(hold_one(id));
	cr_assert_eq(proc_children(D.pid, &w, 1), (ssize_t)1);
	cr_assert_eq(listq(&O, "approve", id, (char *)NULL), 0, "%s", O.err);
	out_free(&O);
	daemon_expect_kills();
	cr_assert_eq(kill(w, SIGKILL), 0);
	wait_log("killed by signal 9", 1);
	wait_log("status=sent", 4);
	assert_members_got(1);
	cr_assert_eq(held_count(), 0);
}

Test(moderation, open_list_warned_by_check_and_newlist_secure,
    .init = setup, .fini = teardown, .timeout = 90)
{
	char path[1024], *text;
	size_t len;

	make_list("wide", 1);	/* post_policy = open */
	start(NULL, 1);
	listq(&O, "check", (char *)NULL);
	cr_assert_not_null(strstr(O.out, "warning: list wide: post_policy = "
	    "open"), "%s", O.out);
	out_free(&O);
	cr_assert_eq(listq(&O, "newlist", "fresh@example.org",
	    "owner@example.org", (char *)NULL), 0, "%s", O.err);
	out_free(&O);
	snprintf(path, sizeof(path), "%s/fresh/config", T.lists);
	text = read_file(path, &len);
	cr_assert_not_null(strstr(text, "\npost_policy = members\n"
	    "nonmember_action = hold\n"), "%s", text);
	free(text);
	listq(&O, "check", (char *)NULL);
	cr_assert_null(strstr(O.out, "list fresh: post_policy"), "%s", O.out);
}

/*
 * listq accept, run as the tests' user (root in make check): the address
 * joins the accept file, which stays the service's, its held post goes
 * out, and its next post is not held.
 */
Test(moderation, accept_approves_and_lets_through, .init = setup,
    .fini = teardown, .timeout = 120)
{
	char id[QID_SIZE], path[1024];
	struct stat st;

	make_gated_list(LIST, NULL);
	start(NULL, 2);
	free(hold_one(id));
	cr_assert_eq(listq(&O, "accept", STRANGER, LIST, (char *)NULL), 0,
	    "%s", O.err);
	cr_assert_not_null(strstr(O.out, "approved"), "%s", O.out);
	out_free(&O);
	snprintf(path, sizeof(path), "%s/%s/accept", T.lists, LIST);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_uid, T.svc_uid, "accept belongs to uid %lu",
	    (unsigned long)st.st_uid);
	wait_log("status=sent", 4);
	assert_members_got(1);
	post_from(LIST, STRANGER, "welcome now");
	wait_log("status=sent", 7);
	assert_members_got(2);
	cr_assert_eq(log_count(&D, "held for moderation"), 1);
}

/*
 * listqd could not make the token key at its start (a full spool): the
 * first worker to hold a post makes it, mode 0600, and the hold goes on.
 */
Test(moderation, secret_made_when_missing, .init = setup, .fini = teardown,
    .timeout = 90)
{
	char id[QID_SIZE], path[1024];
	struct stat st;

	make_gated_list(LIST, NULL);
	start(NULL, 1);
	snprintf(path, sizeof(path), "%s/secret", T.spool);
	cr_assert_eq(unlink(path), 0, "%s: %s", path, strerror(errno));
	free(hold_one(id));
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(st.st_uid, T.svc_uid);
	cr_assert_eq(st.st_size, 32);
}
