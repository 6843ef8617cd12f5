/*
 * SPDX-License-Identifier: ISC
 *
 * listqd: the delivery daemon of listq.
 *
 *	listqd [-f CONFIG] [-n WORKERS] [-F]
 *
 * Reads the configuration (a bad one is refused, naming file, line and
 * key), becomes the service user when started as root, checks the spool,
 * takes the spool's pidfile lock (one daemon per spool: a second one
 * exits 75 naming the first; a full spool leaves the pidfile empty but
 * the lock held) and runs the master (master.c) in the
 * foreground under systemd (Type=notify) or with -F, which also copies
 * every log line to stderr; otherwise it detaches.
 */
#include <sys/prctl.h>

#include <err.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <bsd/libutil.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "number.h"
#include "service.h"
#include "settings.h"
#include "spool.h"
#include "token.h"

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: listqd [-f CONFIG] [-n WORKERS] [-F]\n");
	exit(EX_USAGE);
}

static void
load_config(const char *path, int explicit, struct config *c,
    unsigned int workers)
{
	char err[512];

	config_defaults(c);
	if (config_load(path, !explicit, c, err, sizeof(err)) == -1)
		log_exit(EX_CONFIG, NULL, "configuration refused: %s", err);
	if (workers != 0)
		c->workers = workers;
}

static struct pidfh *
lock_spool(void)
{
	char path[1024];
	struct pidfh *pfh;
	pid_t other = 0;

	snprintf(path, sizeof(path), "%s/%s", SPOOLDIR, SPOOL_PIDFILE);
	if ((pfh = pidfile_open(path, 0600, &other)) != NULL)
		return pfh;
	if (errno == EEXIST)
		log_exit(EX_TEMPFAIL, NULL, "spool %s is in use by pid %ld "
		    "(another listqd, or listq acting on a stopped daemon)",
		    SPOOLDIR, (long)other);
	log_exit(EX_TEMPFAIL, NULL, "pidfile %s: %s", path, strerror(errno));
}

/*
 * A full spool must not keep out the daemon that empties it.  The lock,
 * not the pid in the file, keeps a second listqd away; but libbsd's
 * pidfile_write() drops file and lock when the write fails, so on
 * ENOSPC the lock is taken again on an empty pidfile (which needs no
 * data block), and listqd runs.
 */
static struct pidfh *
write_pid(struct pidfh *pfh)
{
	if (pidfile_write(pfh) == 0)
		return pfh;
	if (errno != ENOSPC && errno != EDQUOT)
		log_exit(EX_TEMPFAIL, NULL, "pidfile: %s", strerror(errno));
	log_msg(LOG_WARNING, NULL, "pidfile: %s; running with the spool "
	    "locked and no pid in the pidfile", strerror(errno));
	return lock_spool();
}

/*
 * The key of moderation tokens, made once per installation.  On a full
 * spool listqd still starts, since it is what empties the spool; a
 * worker makes the key when it first needs one.
 */
static void
make_secret(void)
{
	int fd = spool_open(SPOOLDIR, LISTQ_UID, LISTQ_GID);

	if (fd == -1 || token_secret_create(fd) == -1)
		log_msg(LOG_WARNING, NULL, "spool %s: the token secret cannot "
		    "be made now: %s", SPOOLDIR, strerror(errno));
	if (fd != -1)
		close(fd);
}

int
main(int argc, char *argv[])
{
	const char *config_path = SYSCONFDIR "/" CONFIG_FILE;
	int c, explicit = 0, foreground = 0;
	struct pidfh *pfh;
	struct config cfg;
	char why[512];
	uint64_t workers = 0;

	setproctitle_init(argc, argv, environ);
	while ((c = getopt(argc, argv, "f:n:F")) != -1) {
		switch (c) {
		case 'f':
			config_path = optarg;
			explicit = 1;
			break;
		case 'n':
			if (number_parse(optarg, 256, &workers) == -1 ||
			    workers < 1)
				errx(EX_USAGE, "-n: 1 to 256 workers");
			break;
		case 'F':
			foreground = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("listqd", foreground ? LOG_ALSO_STDERR : LOG_ERRORS_STDERR);
	load_config(config_path, explicit, &cfg, (unsigned int)workers);
	service_become("listqd");
	/* spool_create: a spool from before moderation/ gains it here. */
	if (spool_create(SPOOLDIR, LISTQ_UID, LISTQ_GID, why, sizeof(why)) == -1)
		log_exit(EX_TEMPFAIL, NULL, "spool: %s", why);
	pfh = lock_spool();
	make_secret();
	if (!foreground && getenv("NOTIFY_SOCKET") == NULL &&
	    daemon(0, 0) == -1)
		log_exit(EX_OSERR, NULL, "daemon: %s", strerror(errno));
	pfh = write_pid(pfh);
	if (!foreground)
		log_init("listqd", 0);
	c = master_run(config_path, &cfg, foreground);
	pidfile_remove(pfh);
	return c;
}
