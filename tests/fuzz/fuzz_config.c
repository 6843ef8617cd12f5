/*
 * SPDX-License-Identifier: ISC
 *
 * libFuzzer harness: listq.conf (config_load, common/config.c) and a
 * list's config (list_conf_load, common/list.c), both through conf_read.
 * The input is written to a file in a private temporary directory laid
 * out as LISTDIR/<list>/config.
 */
#include <sys/stat.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "list.h"

static char dir[64], path[128];

static void
cleanup(void)
{
	unlink(path);
	snprintf(path, sizeof(path), "%s/l", dir);
	rmdir(path);
	rmdir(dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	struct list_conf lc;
	char err[256];
	FILE *f;

	if (dir[0] == '\0') {
		const char *t = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/listq-fuzz-XXXXXX",
		    t != NULL && strlen(t) < 32 ? t : "/tmp");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(path, sizeof(path), "%s/l", dir);
		if (mkdir(path, 0700) == -1)
			abort();
		snprintf(path, sizeof(path), "%s/l/config", dir);
		atexit(cleanup);
	}
	if ((f = fopen(path, "w")) == NULL)
		abort();
	if (size > 0 && fwrite(data, size, 1, f) != 1)
		abort();
	fclose(f);
	config_defaults(&c);
	err[0] = '\0';
	if (config_load(path, 0, &c, err, sizeof(err)) == 0) {
		if (c.smarthost[sizeof(c.smarthost) - 1] != '\0' ||
		    c.helo_name[sizeof(c.helo_name) - 1] != '\0' ||
		    c.recipient_delimiter[sizeof(c.recipient_delimiter) - 1]
		    != '\0')
			abort();
	} else if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	if (list_conf_load(dir, "l", &lc, err, sizeof(err)) == 0) {
		if (!address_valid(lc.address) ||
		    memchr(lc.subject_prefix, '\0', sizeof(lc.subject_prefix))
		    == NULL)
			abort();
	}
	return 0;
}
