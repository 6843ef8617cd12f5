/*
 * SPDX-License-Identifier: ISC
 *
 * libFuzzer harness: list member files (addr_list_read, common/list.c)
 * read through fmemopen, then sorted, folded and searched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct addr_list l = { NULL, 0 };
	struct bad_lines bad;
	const char *why;
	size_t i, n;
	char *copy, *line, *save, out[ADDR_MAX + 1];
	FILE *f;

	if (size == 0)
		return 0;
	if ((f = fmemopen((void *)(uintptr_t)data, size, "r")) == NULL)
		return 0;
	if (addr_list_read(f, &l, &bad) == 0) {
		if ((bad.n == 0) != (bad.first == 0) ||
		    (bad.n == 0) != (bad.why == NULL))
			abort();
		for (i = 0; i < l.n; i++)
			if (!address_valid(l.v[i]))
				abort();
		addr_list_sort(&l);
		for (i = 0; i < l.n; i++)
			if (!addr_list_has(&l, l.v[i]))
				abort();
		n = l.n;
		if (addr_list_fold(&l) < 0 || l.n > n)
			abort();
	}
	fclose(f);
	addr_list_free(&l);

	/* Each line as list_line_take() takes it. */
	if ((copy = malloc(size + 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if ((list_line_take(line, strlen(line), out, sizeof(out),
		    &why) == LIST_LINE_ADDRESS) != (out[0] != '\0') ||
		    memchr(out, '\0', sizeof(out)) == NULL)
			abort();
	}
	free(copy);
	return 0;
}
