/*
 * SPDX-License-Identifier: ISC
 *
 * Queue ids and the bucket hash.
 *
 * A queue id is QID_LEN characters of [0-9A-Za-z]: six digits of seconds,
 * four of microseconds, four of the process id and four random ones, all
 * base 62 with digits in ASCII order, so that ids sort in arrival order.
 * Time and pid make an id unique across concurrent processes; the random
 * part makes it unpredictable.  The bucket of an entry is the top byte of
 * a well-mixed hash of its id, never the time digits.
 */
#ifndef LISTQ_QID_H
#define LISTQ_QID_H

#include <stdbool.h>
#include <stddef.h>

#define QID_LEN		18
#define QID_SIZE	(QID_LEN + 1)
#define QID_BUCKETS	256

/* Writes a fresh id into out (QID_SIZE bytes). */
void		qid_new(char out[QID_SIZE]);

/* True when s is exactly a well-formed id (length and alphabet). */
bool		qid_valid(const char *s);

/* The bucket, 0..QID_BUCKETS-1, of a well-formed id. */
unsigned int	qid_bucket(const char *id);

/* Writes the two-digit hex name of a bucket ("00".."ff") into out[3]. */
void		qid_bucket_name(unsigned int bucket, char out[3]);

/* The worker, 0..nworkers-1, that owns a bucket; nworkers is 1..256. */
unsigned int	qid_bucket_owner(unsigned int bucket, unsigned int nworkers);

#endif
