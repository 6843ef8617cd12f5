/*
 * SPDX-License-Identifier: ISC
 *
 * libFuzzer harness: addresses (common/address.c).  The input is split
 * at its first NUL into two strings, compared both ways.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "list.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a, *b;
	const char *d;
	size_t alen;
	bool va, vb;

	if ((a = malloc(size + 1)) == NULL)
		return 0;
	memcpy(a, data, size);
	a[size] = '\0';
	alen = strlen(a);
	b = alen < size ? a + alen + 1 : a + size;

	va = address_valid(a);
	vb = address_valid(b);
	if (va) {
		if (strlen(a) > ADDR_MAX)
			abort();
		d = address_domain(a);
		if (d == NULL || d < a || d > a + alen)
			abort();
		if (!address_equal(a, a))
			abort();
	}
	if (va && vb) {
		int c1 = address_cmp(&a, &b), c2 = address_cmp(&b, &a);
		int k1 = address_compare(a, b), k2 = address_compare(b, a);

		if ((c1 > 0 && c2 >= 0) || (c1 < 0 && c2 <= 0) ||
		    (c1 == 0 && c2 != 0))
			abort();
		if ((k1 == 0) != (k2 == 0))
			abort();
		if (address_equal(a, b) != address_equal(b, a))
			abort();
		if (address_equal(a, b) != (k1 == 0))
			abort();
	}
	free(a);
	return 0;
}
