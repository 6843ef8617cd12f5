/*
 * SPDX-License-Identifier: ISC
 *
 * Mail addresses (address.c): validation and comparison.
 */
#ifndef LISTQ_ADDRESS_H
#define LISTQ_ADDRESS_H

#include <stdbool.h>

#define ADDR_MAX	254

/* True for a plain RFC 5321 mailbox: dot-atom local part @ domain. */
bool	address_valid(const char *addr);

/* The domain part of a valid address. */
const char *address_domain(const char *addr);

/* Same mailbox: local parts equal, domains equal ignoring case. */
bool	address_equal(const char *a, const char *b);

/* Orders addresses (char * const *) as address_equal compares them. */
int	address_cmp(const void *a, const void *b);

#endif
