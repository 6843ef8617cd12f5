/*
 * SPDX-License-Identifier: ISC
 *
 * The service identity (see service.c).
 */
#ifndef LISTQ_SERVICE_H
#define LISTQ_SERVICE_H

/* Exits EX_NOPERM, saying why, unless run by root or the service uid. */
void	service_check_caller(const char *prog);

/* As root, becomes the service uid:gid (its group only); else checks. */
void	service_become(const char *prog);

#endif
