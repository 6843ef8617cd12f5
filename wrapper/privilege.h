/*
 * SPDX-License-Identifier: ISC
 *
 * The privileged steps of listq-wrapper, in the order main() takes them.
 * Each either succeeds or ends the process with a sysexits code and one
 * log line (see privilege.c).
 */
#ifndef LISTQ_WRAPPER_PRIVILEGE_H
#define LISTQ_WRAPPER_PRIVILEGE_H

void	sanitize_fds(void);
void	check_caller(void);
void	become_service(void);

#endif
