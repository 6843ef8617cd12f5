/*
 * SPDX-License-Identifier: ISC
 *
 * listq-wrapper, run as a separate process the way an MTA runs it: as
 * root after a real uid switch to the test MTA user (done by the harness
 * as an MTA delivery agent does it: see harness.c) into the
 * capability-installed and the setuid-root builds; as an ordinary user,
 * the development build.  Each test asserts the exit code and what the
 * spool holds afterwards.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define MSG	"From: a@example.org\nTo: list@example.org\nSubject: hi\n\nbody\n"
#define LIST	"mylist"

static void
setup(void)
{
	spool_reset();
	list_create(LIST);
}

/* Exactly one entry holding msg, with every property the design asks. */
static void
assert_one_entry(const char *cmd, const void *msg, size_t len)
{
	struct entry_header h;
	char path[1024];
	struct stat st;
	size_t blen;
	char *body;

	cr_assert_eq(queue_count(path, sizeof(path)), 1);
	cr_assert_eq(tmp_count(), 0, "tmp/ not empty");
	body = entry_load(path, &h, &blen);
	cr_assert_str_eq(h.command, cmd);
	cr_assert_str_eq(h.list, LIST);
	cr_assert_eq(h.uid, T.caller_uid);
	cr_assert_eq(h.gid, T.caller_gid);
	cr_assert_eq(blen, len, "stored %zu bytes of %zu", blen, len);
	cr_assert_eq(memcmp(body, msg, len), 0, "message changed");
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_uid, T.svc_uid);
	cr_assert_eq(st.st_gid, T.svc_gid);
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o",
	    st.st_mode & 07777);
	cr_assert_not_null(strstr(path, h.id), "%s is not named by its id",
	    path);
	free(body);
}

static void
assert_nothing_queued(void)
{
	cr_assert_eq(queue_count(NULL, 0), 0, "an entry was queued");
	cr_assert_eq(tmp_count(), 0, "a partial file is left in tmp/");
}

Test(wrapper, accepts_post, .init = setup)
{
	struct result r;

	cr_assert_eq(run_simple("post", LIST, MSG, strlen(MSG), &r), 0,
	    "%s", r.err);
	cr_assert_str_empty(r.err, "stderr on success: %s", r.err);
	assert_one_entry("post", MSG, strlen(MSG));
}

/*
 * The service user itself needs no privilege to post: a copy of the
 * installed wrapper without its file capabilities, run as the service
 * user, queues the message as the service's.  Being unprivileged, that
 * run is one make valgrind-check puts under memcheck as root (the set-id
 * and file-capability installs cannot run under valgrind): the
 * wrapper's whole path, from its checks to the commit.
 */
Test(wrapper, service_user_posts_without_privilege, .init = setup)
{
	struct run run = { .wrapper = getenv("LISTQ_TEST_PLAIN_WRAPPER"),
	    .argv = { "post", LIST }, .input = MSG, .len = strlen(MSG),
	    .as_service = true };
	struct entry_header h;
	struct result r;
	char path[1024];
	size_t blen;

	if (!T.root)
		cr_skip_test("runs as the service user: root only");
	cr_assert_not_null(run.wrapper, "LISTQ_TEST_PLAIN_WRAPPER is not set");
	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_eq(queue_count(path, sizeof(path)), 1);
	free(entry_load(path, &h, &blen));
	cr_assert_eq(h.uid, T.svc_uid);
	cr_assert_eq(blen, strlen(MSG));
}

Test(wrapper, accepts_owner_bounces_and_request, .init = setup)
{
	struct result r;

	cr_assert_eq(run_simple("owner", LIST, MSG, strlen(MSG), &r), 0,
	    "%s", r.err);
	assert_one_entry("owner", MSG, strlen(MSG));
	spool_reset();
	list_create(LIST);
	cr_assert_eq(run_simple("bounces", LIST, MSG, strlen(MSG), &r), 0,
	    "%s", r.err);
	assert_one_entry("bounces", MSG, strlen(MSG));
	spool_reset();
	list_create(LIST);
	cr_assert_eq(run_simple("request", LIST, MSG, strlen(MSG), &r), 0,
	    "%s", r.err);
	assert_one_entry("request", MSG, strlen(MSG));
	spool_reset();
	list_create(LIST);
	/* Near misses of the new word are still usage errors. */
	cr_assert_eq(run_simple("requests", LIST, MSG, strlen(MSG), &r), 64);
	cr_assert_eq(run_simple("reques", LIST, MSG, strlen(MSG), &r), 64);
	cr_assert_eq(queue_count(NULL, 0), 0);
}

Test(wrapper, usage_errors, .init = setup)
{
	struct run run = { .input = MSG, .len = strlen(MSG) };
	struct result r;

	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 64, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "usage"), "%s", r.err);
	cr_assert_eq(run_simple("subscribe", LIST, MSG, strlen(MSG), &r), 64);
	cr_assert_not_null(strstr(r.err, "unknown command"), "%s", r.err);
	assert_nothing_queued();
}

Test(wrapper, hostile_list_names, .init = setup)
{
	/* "../" LIST is one name: the concatenation is meant. */
	// NOLINTNEXTLINE(bugprone-suspicious-missing-comma)
	static const char *const names[] = { "../" LIST, "a/b", "/etc",
	    "MyList", "", "a..b", ".x", "x y", "x;rm" };
	char longname[201];
	struct result r;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		cr_assert_eq(run_simple("post", names[i], MSG, strlen(MSG), &r),
		    64, "list \"%s\": %d %s", names[i], r.status, r.err);
		cr_assert_not_null(strstr(r.err, "bad list name"), "%s", r.err);
	}
	memset(longname, 'a', 200);
	longname[200] = '\0';
	cr_assert_eq(run_simple("post", longname, MSG, strlen(MSG), &r), 64);
	assert_nothing_queued();
}

Test(wrapper, no_such_list, .init = setup)
{
	struct result r;

	cr_assert_eq(run_simple("post", "nolist", MSG, strlen(MSG), &r), 67,
	    "%s", r.err);
	cr_assert_not_null(strstr(r.err, "no such list: nolist"), "%s", r.err);
	assert_nothing_queued();
}

Test(wrapper, empty_message, .init = setup)
{
	struct result r;

	cr_assert_eq(run_simple("post", LIST, "", 0, &r), 65, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "empty message"), "%s", r.err);
	assert_nothing_queued();
}

static char *
message_of(size_t len)
{
	char *m = malloc(len);
	size_t i;

	cr_assert_not_null(m);
	for (i = 0; i < len; i++)
		m[i] = (char)(i % 64 == 63 ? '\n' : 'a' + (int)(i % 26));
	return m;
}

Test(wrapper, size_limit, .init = setup)
{
	size_t max = (size_t)T.max_size;
	char *m = message_of(max + 1), limit[64];
	struct result r;

	cr_assert_eq(run_simple("post", LIST, m, max + 1, &r), 65, "%s",
	    r.err);
	snprintf(limit, sizeof(limit), "size limit of %zu bytes", max);
	cr_assert_not_null(strstr(r.err, limit), "%s", r.err);
	assert_nothing_queued();
	cr_assert_eq(run_simple("post", LIST, m, max, &r), 0, "%s", r.err);
	assert_one_entry("post", m, max);
	free(m);
}

Test(wrapper, binary_and_nul_bytes_unchanged, .init = setup)
{
	char m[4096];
	struct result r;
	size_t i;

	for (i = 0; i < sizeof(m); i++)
		m[i] = (char)(i * 7 % 256);
	cr_assert_eq(run_simple("post", LIST, m, sizeof(m), &r), 0, "%s",
	    r.err);
	assert_one_entry("post", m, sizeof(m));
}

/* The MTA closes the pipe early: what arrived is kept as it came. */
Test(wrapper, stdin_closed_early, .init = setup)
{
	struct result r;

	cr_assert_eq(run_simple("post", LIST, MSG, 10, &r), 0, "%s", r.err);
	assert_one_entry("post", MSG, 10);
}

Test(wrapper, closed_standard_fds, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .close_std = true };
	struct result r;

	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 65, "closed stdin must read as an empty "
	    "message, got %d", r.status);
	assert_nothing_queued();
}

Test(wrapper, hostile_environment, .init = setup)
{
	static char tmpdir[] = "/tmp/listq-tmpdir.XXXXXX", marker[256];
	char preload[512], tmpenv[300], markenv[300];
	const char *env[] = { "IFS=/", "PATH=/nonexistent", tmpenv, preload,
	    markenv, "LD_LIBRARY_PATH=/nonexistent", NULL };
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .env = env };
	struct result r;
	DIR *d;
	struct dirent *de;
	int n = 0;

	cr_assert_not_null(mkdtemp(tmpdir));
	chmod(tmpdir, 0777);
	snprintf(marker, sizeof(marker), "%s/preloaded", tmpdir);
	snprintf(tmpenv, sizeof(tmpenv), "TMPDIR=%s", tmpdir);
	snprintf(markenv, sizeof(markenv), "LISTQ_PRELOAD_MARKER=%s", marker);
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s",
	    getenv("LISTQ_TEST_PRELOAD"));
	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_one_entry("post", MSG, strlen(MSG));
	if (T.root)
		cr_assert_eq(access(marker, F_OK), -1, "LD_PRELOAD was honoured "
		    "by the privileged wrapper");
	else
		unlink(marker);	/* an unprivileged build may honour it */
	cr_assert_not_null(d = opendir(tmpdir));
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	cr_assert_eq(n, 0, "the wrapper wrote into TMPDIR");
	rmdir(tmpdir);
}

Test(wrapper, file_size_limit_gives_tempfail, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .fsize_limit = 64 };
	struct result r;

	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 75, "%d: %s", r.status, r.err);
	assert_nothing_queued();
}

Test(wrapper, umask_000_still_0600, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .umask_000 = true };
	struct result r;

	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_one_entry("post", MSG, strlen(MSG));
}

Test(wrapper, spool_missing_or_unsafe_gives_tempfail, .init = setup)
{
	char moved[1024], sub[1100];
	struct result r;

	snprintf(moved, sizeof(moved), "%s.away", T.spool);
	cr_assert_eq(rename(T.spool, moved), 0);
	cr_assert_eq(run_simple("post", LIST, MSG, strlen(MSG), &r), 75);
	cr_assert_not_null(strstr(r.err, T.spool), "%s", r.err);
	cr_assert_eq(rename(moved, T.spool), 0);
	snprintf(sub, sizeof(sub), "%s/tmp", T.spool);
	cr_assert_eq(chmod(sub, 0777), 0);
	cr_assert_eq(run_simple("post", LIST, MSG, strlen(MSG), &r), 75);
	cr_assert_not_null(strstr(r.err, "wrong owner or mode"), "%s", r.err);
	cr_assert_eq(chmod(sub, 0700), 0);
	assert_nothing_queued();
}

static size_t partial_seen;	/* tmp/ files when terminate() struck */

static void
terminate(pid_t pid)
{
	partial_seen = tmp_count();
	kill(pid, SIGTERM);
}

/* A signal while the message streams in: 75, and no partial file left. */
Test(wrapper, signal_while_reading_removes_partial, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .while_running = terminate };
	struct result r;

	partial_seen = 0;
	run_wrapper(&run, &r);
	cr_assert_eq(partial_seen, 1, "no partial tmp/ file when the signal "
	    "came");
	cr_assert_eq(r.status, 75, "%d: %s", r.status, r.err);
	assert_nothing_queued();
}

/* Waits (at most 10 s) until the wrapper has ended, leaving it unreaped. */
static void
wait_until_ended(pid_t pid)
{
	siginfo_t si;
	int i;

	for (i = 0; i < 1000; i++) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG |
		    WNOWAIT) == -1 || si.si_pid != 0)
			return;
		usleep(10000);
	}
}

/*
 * The caller's interval timer survives execve and the uid switch: its
 * SIGALRM, while the message streams in, ends the wrapper as SIGTERM
 * does (75, no partial file), not by the default action (a signal death
 * that leaves tmp/<id> behind).
 */
Test(wrapper, caller_timer_removes_partial, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .itimer_ms = 3000,
	    .while_running = wait_until_ended };
	struct result r;

	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 75, "%d: %s", r.status, r.err);
	assert_nothing_queued();
}

/*
 * The spool, or its tmp/, replaced by a symbolic link to a directory of
 * the right owner and mode: refused (75), nothing written through it.
 */
Test(wrapper, spool_symlink_refused, .init = setup)
{
	char real[1024], sub[1100], away[1100];
	struct result r;

	snprintf(real, sizeof(real), "%s.real", T.spool);
	cr_assert_eq(rename(T.spool, real), 0);
	cr_assert_eq(symlink(real, T.spool), 0);
	cr_assert_eq(run_simple("post", LIST, MSG, strlen(MSG), &r), 75,
	    "spool a symbolic link: %d %s", r.status, r.err);
	cr_assert_eq(unlink(T.spool), 0);
	cr_assert_eq(rename(real, T.spool), 0);
	snprintf(sub, sizeof(sub), "%s/tmp", T.spool);
	snprintf(away, sizeof(away), "%s/tmp.away", T.spool);
	cr_assert_eq(rename(sub, away), 0);
	cr_assert_eq(symlink("hold", sub), 0);
	cr_assert_eq(run_simple("post", LIST, MSG, strlen(MSG), &r), 75,
	    "tmp/ a symbolic link: %d %s", r.status, r.err);
	cr_assert_eq(unlink(sub), 0);
	cr_assert_eq(rename(away, sub), 0);
	snprintf(sub, sizeof(sub), "%s/hold", T.spool);
	cr_assert_eq(rmdir(sub), 0, "hold/ is not empty: written through "
	    "the link");
	assert_nothing_queued();
}

/*
 * A list name or command carrying line breaks and escapes: refused, and
 * echoed as one line with the control characters replaced, so that it
 * cannot forge a second log line for the MTA's bounce or syslog.
 */
Test(wrapper, control_characters_not_echoed, .init = setup)
{
	struct result r;

	cr_assert_eq(run_simple("post", "x\nlistq-wrapper: queued\x1b[2J",
	    MSG, strlen(MSG), &r), 64, "%d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "x?listq-wrapper: queued?[2J"), "%s",
	    r.err);
	cr_assert_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1,
	    "more than one line: %s", r.err);
	cr_assert_eq(run_simple("post\r\n", LIST, MSG, strlen(MSG), &r), 64);
	cr_assert_not_null(strstr(r.err, "\"post??\""), "%s", r.err);
	assert_nothing_queued();
}

/*
 * After a refusal the wrapper reads the rest of stdin, so that the MTA
 * gets the exit code rather than SIGPIPE, but not for ever: a caller that
 * keeps sending (here ten times the size limit, zero pages that cost no
 * memory) gets the refusal once about one more message's worth is read.
 */
Test(wrapper, drain_after_refusal_is_bounded, .init = setup)
{
	size_t max = (size_t)T.max_size, len = 10 * max;
	char *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
	    MAP_NORESERVE, -1, 0);
	struct result r;

	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(run_simple("post", "nolist", m, len, &r), 67, "%d: %s",
	    r.status, r.err);
	cr_assert_lt(r.taken, 2 * max, "took %zu bytes of %zu", r.taken, len);
	cr_assert_eq(run_simple("post", LIST, m, len, &r), 65, "%d: %s",
	    r.status, r.err);
	cr_assert_lt(r.taken, 3 * max, "took %zu bytes of %zu", r.taken, len);
	/* What the MTA sends whole is still read: no SIGPIPE for it. */
	cr_assert_eq(run_simple("post", "nolist", m, max, &r), 67);
	cr_assert_eq(r.taken, max);
	assert_nothing_queued();
	munmap(m, len);
}
