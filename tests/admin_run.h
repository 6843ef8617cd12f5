/*
 * SPDX-License-Identifier: ISC
 *
 * Running listq from the tests (admin_run.c): as the test's own user or,
 * as root, after a real switch to one of the test users; stdout, stderr
 * and the exit code captured, every wait bounded.  Output meant for
 * scripts is checked with real parsers (python3's json, a Prometheus
 * text parser), never with grep.
 */
#ifndef LISTQ_TEST_ADMIN_RUN_H
#define LISTQ_TEST_ADMIN_RUN_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>

enum who { AS_ME, AS_SERVICE, AS_STRANGER, AS_MTA };

struct out {
	int	 status;	/* exit code, or 128 + signal */
	char	*out, *err;	/* NUL-terminated */
	size_t	 outlen, errlen;
};

/* Runs argv (NULL-terminated) as who with input on stdin. */
void	run_prog(const char *const *argv, enum who who, const char *input,
	    size_t len, struct out *o);
void	out_free(struct out *o);

/* listq with these arguments (NULL-terminated); returns the exit code. */
int	listq_as(struct out *o, enum who who, const char *arg, ...)
	    __attribute__((sentinel));
#define listq(o, ...)	listq_as((o), AS_ME, __VA_ARGS__)

/* Starts listq with a pipe on its stdin (*in); listq_finish ends it. */
pid_t	listq_start(int *in, int *outfd, const char *const *args);
int	listq_finish(pid_t pid, int in, int outfd, struct out *o);

/* Asserts python3 finds expr true of d = json.load(text). */
void	assert_json(const char *text, const char *expr);
/*
 * Asserts text parses as the Prometheus text format and expr holds of
 * m = { 'name{labels}': value }.
 */
void	assert_prom(const char *text, const char *expr);

#define HAS(text, s)	cr_assert_not_null(strstr((text), (s)), \
			    "wanted \"%s\" in:\n%s", (s), (text))
#define HASNT(text, s)	cr_assert_null(strstr((text), (s)), \
			    "did not want \"%s\" in:\n%s", (s), (text))

/*
 * listq with its output in the caller's struct out O (freed first);
 * asserts the exit code.
 */
#define LQ(code, ...) do { \
	out_free(&O); \
	cr_assert_eq(listq(&O, __VA_ARGS__, (char *)NULL), (code), \
	    "listq " #__VA_ARGS__ ": exit %d\nout: %s\nerr: %s", O.status, \
	    O.out, O.err); \
} while (0)

#endif
