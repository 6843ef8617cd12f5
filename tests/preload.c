/*
 * SPDX-License-Identifier: ISC
 *
 * A library for LD_PRELOAD that leaves a marker file when it is loaded:
 * the hostile-environment test proves the privileged wrapper never loads
 * it.  Test-only; never installed.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void
mark(void)
{
	const char *path = getenv("LISTQ_PRELOAD_MARKER");
	int fd;

	if (path != NULL && (fd = open(path, O_WRONLY | O_CREAT, 0666)) != -1)
		close(fd);
}
