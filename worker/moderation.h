/*
 * SPDX-License-Identifier: ISC
 *
 * The moderation queue (moderation.c): posts held for a moderator.
 *
 *	SPOOLDIR/moderation/<id>		the post, the entry unchanged
 *	SPOOLDIR/moderation/<id>.mod		its record:
 *
 *	listq-held: 1
 *	list: mylist
 *	held: 1764374400			when it was held
 *	expires: 1765584000			then discarded
 *	decision: none | approve		approve: on its way back
 *	poster: alice@example.net		From: (or Return-Path), "" none
 *	sender: alice@example.net		Return-Path, "" none
 *	reason: non-member			why it was held
 *	subject: the post's Subject, one line
 *
 * A held entry belongs to the owner of its bucket, as in hold/.  A
 * verified decision by mail that another worker received is dropped as
 * an empty file <id>.approve, <id>.reject or <id>.discard beside it,
 * which only the owner acts on.
 */
#ifndef LISTQ_MODERATION_H
#define LISTQ_MODERATION_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "admin_ops.h"
#include "address.h"
#include "entry.h"

#define MOD_SUFFIX	".mod"
#define MOD_VERSION	1

enum mod_decision { MOD_NONE, MOD_APPROVE };

struct held {
	char	 list[LIST_NAME_MAX + 1];
	int64_t	 held, expires;
	int	 decision;
	char	 poster[ADDR_MAX + 1];
	char	 sender[ADDR_MAX + 1];
	char	 reason[64];
	char	 subject[160];
};

/* Reads <id>.mod of dirfd; -1 with errno (EINVAL: malformed). */
int	mod_record_read(int dirfd, const char *id, struct held *r);

/* Writes <id>.mod of dirfd durably (tmp, fsync, rename). */
int	mod_record_write(int dirfd, const char *id, const struct held *r);

/*
 * Takes entry id out of bucketfd into moderation/ of spoolfd: record
 * first, then the message, then its state.  -1 (errno) leaves the entry
 * where it was.
 */
int	mod_take(int spoolfd, int bucketfd, const char *id,
	    const struct held *r);

/* Removes entry id of dirfd: message, record, state; logged with why. */
int	mod_remove(int dirfd, const char *id, const char *why);

/* Is a post in the bucket an approved one (its <id>.mod says so)? */
bool	mod_approved(int bucketfd, const char *id);

/*
 * The admin requests on held posts, run by their owner (admin_ops.c):
 * approve, reject (a->text: the reason), discard.  Return 0 or a
 * sysexits code, with msg (MOD_MSG_LEN) saying what happened.
 */
#define MOD_MSG_LEN	160
int	mod_op_approve(struct adm *a, const char *id, char *msg);
int	mod_op_reject(struct adm *a, const char *id, char *msg);
int	mod_op_discard(struct adm *a, const char *id, char *msg);

/*
 * The owner's sweep of moderation/: applies decisions dropped by other
 * workers, discards what expired (logged), finishes an approval that a
 * crash cut short.
 */
void	mod_sweep(struct adm *a, time_t now);

/*
 * A <id>.mod left in a bucket (name): kept beside its message, joined
 * with a message still in moderation/ (an interrupted approval), else
 * removed.
 */
void	mod_sweep_bucket(struct adm *a, int bucketfd, const char *id,
	    const char *name);

#endif
