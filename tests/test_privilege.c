/*
 * SPDX-License-Identifier: ISC
 *
 * What the wrapper process is while it runs, read from /proc by the test
 * (not reported by the wrapper itself): ids, groups, capabilities,
 * no_new_privs and open descriptors.  Also the callers it must refuse,
 * the setuid-root install, and 64 concurrent callers into one spool.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define MSG	"Subject: hello\n\nline one\nline two\n"
#define LIST	"mylist"
#define LEAKED_FD	7
#define CONCURRENT	64

static void
setup(void)
{
	spool_reset();
	list_create(LIST);
}

static void
need_root(void)
{
	if (!T.root)
		cr_skip_test("needs root: real uid switches "
		    "and installed set-id builds");
}

/* The value of "Key:" in /proc/PID/status, whitespace folded. */
static void
status_field(pid_t pid, const char *key, char *out, size_t len)
{
	char path[64], line[512], *v;
	size_t klen = strlen(key);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	cr_assert_not_null(f = fopen(path, "r"), "%s: %s", path,
	    strerror(errno));
	out[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, klen) != 0 || line[klen] != ':')
			continue;
		for (v = line + klen + 1; *v == ' ' || *v == '\t'; v++)
			continue;
		v[strcspn(v, "\n")] = '\0';
		for (char *p = v; *p != '\0'; p++)
			if (*p == '\t')
				*p = ' ';
		snprintf(out, len, "%s", v);
	}
	fclose(f);
}

static char seen_uid[128], seen_gid[128], seen_groups[256], seen_eff[64],
    seen_prm[64], seen_inh[64], seen_amb[64], seen_nnp[16];
static int seen_leak = -1;

static void
inspect(pid_t pid)
{
	char path[64];

	status_field(pid, "Uid", seen_uid, sizeof(seen_uid));
	status_field(pid, "Gid", seen_gid, sizeof(seen_gid));
	status_field(pid, "Groups", seen_groups, sizeof(seen_groups));
	status_field(pid, "CapEff", seen_eff, sizeof(seen_eff));
	status_field(pid, "CapPrm", seen_prm, sizeof(seen_prm));
	status_field(pid, "CapInh", seen_inh, sizeof(seen_inh));
	status_field(pid, "CapAmb", seen_amb, sizeof(seen_amb));
	status_field(pid, "NoNewPrivs", seen_nnp, sizeof(seen_nnp));
	snprintf(path, sizeof(path), "/proc/%ld/fd/%d", (long)pid, LEAKED_FD);
	seen_leak = access(path, F_OK) == 0;
}

static void
assert_process_dropped_everything(const char *wrapper)
{
	struct run run = { .wrapper = wrapper, .argv = { "post", LIST },
	    .input = MSG, .len = strlen(MSG), .leak_fd = LEAKED_FD,
	    .while_running = inspect };
	char want_uid[128], want_gid[128];
	struct result r;

	seen_leak = -1;
	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	snprintf(want_uid, sizeof(want_uid), "%lu %lu %lu %lu",
	    (unsigned long)T.svc_uid, (unsigned long)T.svc_uid,
	    (unsigned long)T.svc_uid, (unsigned long)T.svc_uid);
	snprintf(want_gid, sizeof(want_gid), "%lu %lu %lu %lu",
	    (unsigned long)T.svc_gid, (unsigned long)T.svc_gid,
	    (unsigned long)T.svc_gid, (unsigned long)T.svc_gid);
	cr_assert_str_eq(seen_uid, want_uid, "uids seen: %s", seen_uid);
	cr_assert_str_eq(seen_gid, want_gid, "gids seen: %s", seen_gid);
	cr_assert_str_eq(seen_eff, "0000000000000000");
	cr_assert_str_eq(seen_prm, "0000000000000000");
	cr_assert_str_eq(seen_inh, "0000000000000000");
	cr_assert_str_eq(seen_amb, "0000000000000000");
	cr_assert_str_eq(seen_nnp, "1");
	cr_assert_eq(seen_leak, 0, "fd %d of the caller stayed open",
	    LEAKED_FD);
	if (T.root)
		cr_assert_str_empty(seen_groups, "supplementary groups left: %s",
		    seen_groups);
	cr_assert_eq(queue_count(NULL, 0), 1);
}

Test(privilege, process_state_while_running, .init = setup)
{
	assert_process_dropped_everything(NULL);
}

Test(privilege, setuid_root_install, .init = setup)
{
	struct stat st;

	need_root();
	cr_assert_eq(stat(T.setuid_wrapper, &st), 0);
	cr_assert(st.st_mode & S_ISUID, "%s is not setuid", T.setuid_wrapper);
	assert_process_dropped_everything(T.setuid_wrapper);
}

Test(privilege, stranger_refused, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .stranger = true };
	char want[64];
	struct result r;

	need_root();
	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 77, "%d: %s", r.status, r.err);
	snprintf(want, sizeof(want), "group %lu is not allowed",
	    (unsigned long)T.stranger_gid);
	cr_assert_not_null(strstr(r.err, want), "%s", r.err);
	snprintf(want, sizeof(want), "allowed groups: %lu,%lu",
	    (unsigned long)T.caller_gid, (unsigned long)T.caller2_gid);
	cr_assert_not_null(strstr(r.err, want), "%s", r.err);
	cr_assert_eq(queue_count(NULL, 0), 0);
}

/*
 * MAIL_GIDS with two gids (tests/run.sh builds it so): a caller whose
 * real gid is either one is accepted; every other test runs as the
 * first, this one as the second.
 */
Test(privilege, second_mail_gid_accepted, .init = setup)
{
	struct run run = { .argv = { "post", LIST }, .input = MSG,
	    .len = strlen(MSG), .second_mta = true };
	char first[256];
	struct entry_header h;
	struct result r;
	size_t blen;

	need_root();
	run_wrapper(&run, &r);
	cr_assert_eq(r.status, 0, "%d: %s", r.status, r.err);
	cr_assert_eq(queue_count(first, sizeof(first)), 1);
	free(entry_load(first, &h, &blen));
	cr_assert_eq(h.gid, T.caller2_gid, "entry records gid %lu",
	    (unsigned long)h.gid);
}

/* The MTA runs under NoNewPrivileges=: set-id bits do nothing. */
Test(privilege, no_new_privs_caller_gives_tempfail, .init = setup)
{
	const char *modes[] = { NULL, T.setuid_wrapper };
	struct result r;
	size_t i;

	need_root();
	for (i = 0; i < 2; i++) {
		struct run run = { .wrapper = modes[i],
		    .argv = { "post", LIST }, .input = MSG,
		    .len = strlen(MSG), .no_new_privs = true };

		run_wrapper(&run, &r);
		cr_assert_eq(r.status, 75, "%d: %s", r.status, r.err);
		cr_assert_not_null(strstr(r.err, "NoNewPrivileges"), "%s",
		    r.err);
	}
	cr_assert_eq(queue_count(NULL, 0), 0);
	cr_assert_eq(tmp_count(), 0);
}

/* 64 callers at once: every message present once, byte for byte. */
Test(privilege, concurrent_callers, .init = setup, .timeout = 120)
{
	char msgs[CONCURRENT][128], path[1024], b[3];
	bool found[CONCURRENT] = { false };
	struct entry_header h;
	struct dirent *de;
	struct result r;
	size_t blen, n = 0;
	pid_t pids[CONCURRENT];
	unsigned int bk;
	uint64_t v;
	int i, st;
	char *body;
	DIR *d;

	for (i = 0; i < CONCURRENT; i++) {
		snprintf(msgs[i], sizeof(msgs[i]), "Subject: %d\n\nbody %d\n",
		    i, i);
		if ((pids[i] = fork()) == 0)
			_exit(run_simple("post", LIST, msgs[i], strlen(msgs[i]),
			    &r));
		cr_assert_neq(pids[i], -1);
	}
	for (i = 0; i < CONCURRENT; i++) {
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "caller %d: status %x", i, st);
	}
	cr_assert_eq(tmp_count(), 0);
	for (bk = 0; bk < 256; bk++) {
		qid_bucket_name(bk, b);
		snprintf(path, sizeof(path), "%s/queue/%s", T.spool, b);
		cr_assert_not_null(d = opendir(path));
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/queue/%s/%s", T.spool,
			    b, de->d_name);
			body = entry_load(path, &h, &blen);
			cr_assert_eq(qid_bucket(h.id), bk);
			cr_assert(strncmp(body, "Subject: ", 9) == 0 &&
			    text_scan(body + 9, CONCURRENT - 1, &v, "") !=
			    NULL && !found[v], "message %.20s twice or unknown",
			    body);
			i = (int)v;
			cr_assert_eq(blen, strlen(msgs[i]));
			cr_assert_eq(memcmp(body, msgs[i], blen), 0);
			found[i] = true;
			n++;
			free(body);
		}
		closedir(d);
	}
	cr_assert_eq(n, CONCURRENT, "%zu entries for %d messages", n,
	    CONCURRENT);
}
