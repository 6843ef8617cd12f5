/*
 * SPDX-License-Identifier: ISC
 *
 * The spool on its own tmpfs, in a private mount namespace (spoolfs.c):
 * the disk and scale torture tests.  Criterion runs each test in a
 * process of its own, so the namespace, and the mount, end with it; every
 * process the test starts sees the same spool.  Root only.
 */
#ifndef LISTQ_TEST_SPOOLFS_H
#define LISTQ_TEST_SPOOLFS_H

#include <stddef.h>

/*
 * A fresh spool (spool_reset), then a tmpfs of size bytes mounted over
 * it with the layout made again on it.
 */
void	spoolfs_mount(size_t size);
/* Unmounts it (the spool directory is then as spool_reset left it). */
void	spoolfs_unmount(void);
/* Grows or shrinks the tmpfs in place (mount -o remount,size=). */
void	spoolfs_resize(size_t size);
/* Fills what is left of the tmpfs with SPOOL/filler; returns its size. */
size_t	spoolfs_fill(void);
/* Frees bytes at the end of the filler (ftruncate). */
void	spoolfs_release(size_t bytes);

#endif
