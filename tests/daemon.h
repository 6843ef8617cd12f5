/*
 * SPDX-License-Identifier: ISC
 *
 * Test harness for listqd: starts the test SMTP sink and the daemon as
 * separate processes on loopback ports chosen at run time, reads what the
 * sink recorded and what the daemon logged, and stops every process it
 * started by pid -- also when an assertion fails (daemon_teardown, the
 * .fini of every test that starts one), and fails the test on a crash
 * it did not ask for.
 */
#ifndef LISTQ_TEST_DAEMON_H
#define LISTQ_TEST_DAEMON_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>

struct sink {
	pid_t	pid;
	int	port;
	char	dir[512];	/* recorded transactions */
};

struct txn {			/* one transaction the sink accepted */
	char	 from[256];
	char	**rcpt;
	size_t	 nrcpt;
	char	*data;		/* message as received, CRLF line ends */
	size_t	 len;
	unsigned long conn;	/* the sink's connection number */
	int	 peer_port;	/* the client's TCP port */
};

struct daemon {
	pid_t	pid;
	char	log[512];	/* its stderr (-F copies every log line) */
	char	conf[512];
};

/*
 * Starts the sink; rules may be NULL; port 0 lets the kernel choose;
 * chunking: offer CHUNKING (BDAT), as Postfix's smtpd does.
 */
void	sink_start(struct sink *s, const char *rules, int port, bool chunking);
/* The same, with more sink options (NULL-terminated), e.g. "-T", "c:k". */
void	sink_start_args(struct sink *s, const char *rules, int port,
	    bool chunking, const char *const *extra);
void	sink_stop(struct sink *s);
size_t	sink_count(const struct sink *s);
/* Every recorded transaction, in order; returns how many. */
size_t	sink_load(const struct sink *s, struct txn **out);
void	txns_free(struct txn *t, size_t n);

/* Writes the daemon's config (smarthost = the sink) plus extra lines. */
void	daemon_config(struct daemon *d, int port, const char *extra);
/* Starts listqd -F -f CONF [-n WORKERS, unless 0]; returns once it runs. */
void	daemon_start(struct daemon *d, int workers);
/*
 * SIGTERM and a bounded wait; returns the exit status (128+sig if
 * killed).  Like the teardown, it fails the test on a death not asked
 * for (see daemon_teardown).
 */
int	daemon_stop(struct daemon *d);
/* Runs listqd once more, to its end; returns its exit status. */
int	daemon_run_once(const char *conf, int workers, char *err, size_t len);
/* The whole log so far (caller frees). */
char	*daemon_log(const struct daemon *d);
/* How many lines of the log contain needle. */
size_t	log_count(const struct daemon *d, const char *needle);
/* Waits at most ms until n lines of the log contain needle. */
bool	log_wait(const struct daemon *d, const char *needle, size_t n,
	    int ms);
/*
 * Waits at most ms until rules of the sink fired n times, by the "KIND
 * VERB" of their fault log lines (e.g. "stall DOT": the end of data is
 * in, its reply held).
 */
bool	sink_wait_fired(const struct sink *s, const char *kind_verb,
	    size_t n, int ms);

/* A list NAME@example.org with members m0..m(n-1)@members.example. */
void	make_list(const char *name, size_t members);
/*
 * The header lines listqd puts before each post of list@example.org, as
 * the relay gets them (CRLF): the RFC 2369 and 2919 lines, List-Archive
 * when archive is not NULL, then X-Loop.  Returns the length written.
 */
size_t	list_headers(char *buf, size_t len, const char *list,
	    const char *archive);

/* Appends text to LISTDIR/<list>/<file> (created if missing). */
void	list_append(const char *list, const char *file, const char *text);

/* Waits at most ms until s has recorded n transactions. */
bool	sink_wait_count(const struct sink *s, size_t n, int ms);
/* How many recorded transactions of s went to rcpt. */
size_t	sink_copies_to(const struct sink *s, const char *rcpt);
/* The data of the only transaction of s to rcpt, from <> (caller frees). */
char	*sink_data_to(const struct sink *s, const char *rcpt);
/* The token ACTION-... in text (a notice) into tok. */
void	notice_token(const char *text, const char *action, char *tok,
	    size_t len);

/* Polls cond every 20 ms for at most ms; true once it holds. */
bool	wait_until(bool (*cond)(void *), void *arg, int ms);

/* A loopback TCP port with nothing listening, free when asked. */
int	unused_port(void);

/*
 * A self-signed certificate for 127.0.0.1 (a subjectAltName IP), made
 * with the openssl command as DIR/NAME.crt and DIR/NAME.key unless it is
 * there already.
 */
void	cert_make(const char *dir, const char *name);

/*
 * Stops every process the harness started; the .fini of daemon tests.
 * It fails the test when a listqd started here died: its master ended
 * other than with 0 on the teardown's (or daemon_stop's) SIGTERM, or it
 * logged a worker killed by a signal or exited.  Criterion ignores
 * assertions in a .fini, so it says why on stderr and aborts: the test
 * is reported as crashed in its teardown and the run exits non-zero.
 */
void	daemon_teardown(void);
/*
 * The current test kills (or makes die) listqd's master or workers on
 * purpose: its teardown then lets those deaths pass.
 */
void	daemon_expect_kills(void);

#endif
