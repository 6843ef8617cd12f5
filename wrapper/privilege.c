/*
 * SPDX-License-Identifier: ISC
 *
 * Privilege handling of listq-wrapper: standard descriptors, the caller
 * check and the switch to the service identity.
 *
 * Invariants: the caller is checked by its real ids against numbers
 * compiled in; after become_service() returns, real, effective and saved
 * uid and gid are the service's, no supplementary group is left (unless
 * the caller already was the service and had no privilege to drop them),
 * the effective, permitted and inheritable capability sets are empty (so
 * the ambient set is too) and no_new_privs is set.  The same code serves
 * both install modes (file capabilities, setuid root) and an unprivileged
 * development build.
 */
#include <sys/capability.h>
#include <sys/prctl.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "log.h"
#include "privilege.h"
#include "settings.h"

static const gid_t mail_gids[] = { MAIL_GIDS };

/* Is fd open for reading (fd 0) or writing (fds 1 and 2)? */
static bool
fd_usable(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1)
		return false;
	fl &= O_ACCMODE;
	return fd == STDIN_FILENO ? fl != O_WRONLY : fl != O_RDONLY;
}

/*
 * glibc's secure mode reopens closed standard descriptors with the wrong
 * access mode on purpose (stdin write-only); treat those as closed too.
 */
void
sanitize_fds(void)
{
	int fd, nfd;

	for (fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fd_usable(fd))
			continue;
		nfd = open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
		if (nfd == -1)
			_exit(EX_TEMPFAIL);
		if (nfd != fd && (dup2(nfd, fd) == -1 || close(nfd) == -1))
			_exit(EX_TEMPFAIL);
	}
}

void
check_caller(void)
{
	gid_t gid = getgid();
	size_t i;

	if (getuid() == LISTQ_UID)
		return;
	for (i = 0; i < sizeof(mail_gids) / sizeof(mail_gids[0]); i++)
		if (gid == mail_gids[i])
			return;
	log_exit(EX_NOPERM, NULL, "caller's group %lu is not allowed to "
	    "submit (allowed groups: " SETTING_TEXT(MAIL_GIDS) ", or uid %d)",
	    (unsigned long)gid, LISTQ_UID);
}

static bool
ids_are_service(void)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1)
		return false;
	return ru == LISTQ_UID && eu == LISTQ_UID && su == LISTQ_UID &&
	    rg == LISTQ_GID && eg == LISTQ_GID && sg == LISTQ_GID;
}

static void __attribute__((noreturn))
switch_failed(const char *step)
{
	int saved = errno;

	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1)
		log_exit(EX_TEMPFAIL, NULL, "cannot switch to uid:gid %d:%d: "
		    "no_new_privs is set, which disables set-id bits and file "
		    "capabilities (is the MTA run with systemd's "
		    "NoNewPrivileges= or RestrictSUIDSGID=?)",
		    LISTQ_UID, LISTQ_GID);
	log_exit(EX_TEMPFAIL, NULL, "cannot switch to uid:gid %d:%d (%s: %s): "
	    "install fault, the wrapper needs cap_setuid,cap_setgid=ep or "
	    "setuid root", LISTQ_UID, LISTQ_GID, step, strerror(saved));
}

/* Empties every capability set; true when they are all empty after. */
static bool
drop_capabilities(void)
{
	cap_t none = cap_init(), now;
	bool empty;

	if (none == NULL || cap_set_proc(none) == -1 ||
	    (now = cap_get_proc()) == NULL) {
		cap_free(none);
		return false;
	}
	empty = cap_compare(none, now) == 0;
	cap_free(now);
	cap_free(none);
	return empty;
}

/*
 * libcap raises CAP_SETGID/CAP_SETUID only for the call and keeps the
 * permitted set across setresuid: file capabilities would survive the
 * switch, so they are dropped explicitly and the result checked.
 */
void
become_service(void)
{
	bool unprivileged_dev = ids_are_service();

	if (cap_setgroups(LISTQ_GID, 0, NULL) == -1 && !unprivileged_dev)
		switch_failed("setgroups");
	if (cap_setuid(LISTQ_UID) == -1 && !unprivileged_dev)
		switch_failed("setuid");
	if (!ids_are_service())
		switch_failed("verifying ids");
	if (!unprivileged_dev && getgroups(0, NULL) != 0)
		log_exit(EX_TEMPFAIL, NULL, "supplementary groups remain "
		    "after the switch");
	if (!drop_capabilities())
		log_exit(EX_TEMPFAIL, NULL, "capabilities remain after the "
		    "switch");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_exit(EX_TEMPFAIL, NULL, "cannot set no_new_privs: %s",
		    strerror(errno));
}
