/*
 * SPDX-License-Identifier: ISC
 *
 * Who may run listqd and listq: root or the service uid (LISTQ_UID),
 * nobody else.  Root becomes the service identity before it touches the
 * spool or the lists, so that every file it creates there belongs to
 * the service (invariant 6).
 *
 * Invariants: after service_become() returns, real, effective and saved
 * ids are the service's and its group is the only one.
 */
#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "log.h"
#include "service.h"
#include "settings.h"

void
service_check_caller(const char *prog)
{
	uid_t uid = getuid();

	if ((uid == 0 || uid == LISTQ_UID) && geteuid() == uid)
		return;
	log_exit(EX_NOPERM, NULL, "%s must run as uid %d (%s) or root, not "
	    "uid %lu", prog, LISTQ_UID, LISTQ_USER, (unsigned long)uid);
}

void
service_become(const char *prog)
{
	gid_t gid = LISTQ_GID;

	service_check_caller(prog);
	if (geteuid() == LISTQ_UID)
		return;
	if (setgroups(1, &gid) == -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(LISTQ_UID, LISTQ_UID, LISTQ_UID) == -1)
		log_exit(EX_OSERR, NULL, "cannot become uid:gid %d:%d: %s",
		    LISTQ_UID, LISTQ_GID, strerror(errno));
}
