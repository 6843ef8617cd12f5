/*
 * SPDX-License-Identifier: ISC
 *
 * Test-only entry point of the AFL++ build of listq-wrapper (tests/afl/):
 * one fuzzer input carries everything an MTA's caller controls through
 * the pipe, the arguments and the message:
 *
 *	ARG \0 ARG \0 ... \0 \0 MESSAGE
 *
 * An empty argument ends the list (AFL++'s argv convention: an argument
 * that is the single byte 0x02 stands for ""); so does the end of the
 * input, or AFL_ARGS arguments, or AFL_ARGV_MAX bytes of them.  The
 * arguments are read from fd 0 one byte at a time, so that the file
 * offset stops at the first byte of the message; then the wrapper's own
 * main() (wrapper.c compiled with -Dmain=listq_wrapper_main) runs
 * unchanged and reads the rest of stdin as it reads the MTA's pipe.
 *
 * The harness turns a broken contract into a crash that AFL++ records:
 * an exit code outside the wrapper's sysexits set, or a file left in
 * tmp/ once exit(3) has run the wrapper's own cleanup (on_exit handlers
 * run in reverse order of registration, so this one runs last).  What a
 * run killed by the fuzzer's timeout (SIGKILL, which nothing can catch)
 * left in tmp/ is removed before the next run starts.
 */
#include <dirent.h>
#include <stdlib.h>
#include <sysexits.h>
#include <unistd.h>

#include "settings.h"
#include "spool.h"

#define AFL_ARGS	8
#define AFL_ARGV_MAX	4096
#define AFL_EMPTY_ARG	'\x02'

int	listq_wrapper_main(int argc, char *argv[]);

/* Removes every file in the spool's tmp/; returns how many there were. */
static int
tmp_clear(void)
{
	DIR *d = opendir(SPOOLDIR "/" SPOOL_TMP);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.') {
			unlinkat(dirfd(d), de->d_name, 0);
			n++;
		}
	closedir(d);
	return n;
}

static void
check_exit(int status, void *arg)
{
	(void)arg;
	if (tmp_clear() != 0)
		abort();	/* a partial entry outlived the wrapper */
	switch (status) {
	case EX_OK: case EX_USAGE: case EX_DATAERR: case EX_NOUSER:
	case EX_TEMPFAIL: case EX_NOPERM:
		return;
	}
	abort();		/* not an answer the MTA understands */
}

/* Adds buf[start..len) as an argument, unless it is the end marker. */
static int
add_arg(char *argv[], int argc, char *buf, size_t start, size_t len)
{
	buf[len] = '\0';
	if (len == start)
		return argc;
	if (len == start + 1 && buf[start] == AFL_EMPTY_ARG)
		buf[start] = '\0';
	argv[argc] = buf + start;
	return argc + 1;
}

/* Reads the arguments from fd 0 into argv[1..]; returns argc. */
static int
read_args(char *argv[AFL_ARGS + 2], char buf[AFL_ARGV_MAX + 1])
{
	size_t len = 0, start = 0;
	int argc = 1;

	while (argc <= AFL_ARGS && len < AFL_ARGV_MAX &&
	    read(STDIN_FILENO, buf + len, 1) == 1) {
		if (buf[len++] != '\0')
			continue;
		if (len - 1 == start)
			return argc;
		argc = add_arg(argv, argc, buf, start, len - 1);
		start = len;
	}
	return add_arg(argv, argc, buf, start, len);
}

int
main(void)
{
	static char buf[AFL_ARGV_MAX + 1];
	static char *argv[AFL_ARGS + 2] = { "listq-wrapper" };
	int argc;

	tmp_clear();
	argc = read_args(argv, buf);
	argv[argc] = NULL;
	if (on_exit(check_exit, NULL) != 0)
		return EX_OSERR;
	return listq_wrapper_main(argc, argv);
}
