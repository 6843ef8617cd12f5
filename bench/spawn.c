/*
 * SPDX-License-Identifier: ISC
 *
 * spawn: runs a program N times, J at a time, each with a file on stdin,
 * and prints the rate; the driver of bench/enqueue.  Every run must exit
 * 0, or the measurement is void and spawn exits 1.
 *
 *	spawn [-u UID -g GID] -n N -j J -i FILE PROGRAM [ARG...]
 *
 * With -u/-g (as root) it first becomes that user, dropping every
 * capability, as an MTA's delivery agent does before running a pipe.
 */
#include <sys/wait.h>

#include <err.h>
#include <fcntl.h>
#include <grp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t
start(const char *input, char *argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, input, O_RDONLY, 0);
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
		err(1, "spawn %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

int
main(int argc, char *argv[])
{
	long n = 0, j = 1, started = 0, done = 0;
	const char *input = NULL;
	uid_t uid = 0;
	gid_t gid = 0;
	double t0;
	int c, st;

	while ((c = getopt(argc, argv, "+u:g:n:j:i:")) != -1) {
		switch (c) {
		case 'u': uid = (uid_t)atol(optarg); break;
		case 'g': gid = (gid_t)atol(optarg); break;
		case 'n': n = atol(optarg); break;
		case 'j': j = atol(optarg); break;
		case 'i': input = optarg; break;
		default: return 64;
		}
	}
	if (optind >= argc || input == NULL || n < 1 || j < 1)
		errx(64, "usage: spawn [-u UID -g GID] -n N -j J -i FILE "
		    "PROGRAM [ARG...]");
	if (uid != 0 && (setgroups(1, &gid) == -1 ||
	    setresgid(gid, gid, gid) == -1 || setresuid(uid, uid, uid) == -1))
		err(1, "becoming %lu:%lu", (unsigned long)uid,
		    (unsigned long)gid);
	t0 = now();
	while (done < n) {
		while (started < n && started - done < j) {
			start(input, argv + optind);
			started++;
		}
		if (wait(&st) == -1)
			err(1, "wait");
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			errx(1, "a run failed with status %#x", st);
		done++;
	}
	printf("%.0f\n", (double)n / (now() - t0));
	return 0;
}
