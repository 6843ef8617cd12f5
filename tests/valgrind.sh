#!/bin/sh
# SPDX-License-Identifier: ISC
# make valgrind-check: integration tests run with listqd (its forked
# workers too), listq and the unprivileged wrapper runs under valgrind's
# memcheck (tests/harness.c, under_valgrind: the set-id and
# file-capability installs of the wrapper are exempt, see there), then
# every log read: an error or a definite leak in any of them fails the
# check, and so does a failing test.
#
# VALGRIND_FILTER (a Criterion --filter pattern) chooses other tests;
# LISTQ_TEST_TIME_FACTOR (default 10) stretches every time limit of the
# tests; LISTQ_CHECK_ROOT gets "-vg" added, so that the run may follow
# make test.  The logs are kept, and named, when the check fails (or
# LISTQ_KEEP is set).
set -eu

BUILD=${BUILD:-build}
# Every suite that runs listqd or listq -- the delivery suites, TLS,
# AUTH, pipelining, SIZE, quarantine, memory aside (its bound is of the
# native worker) -- and the wrapper and privilege suites (their wrapper
# runs as an unprivileged caller are checked; the set-id and
# file-capability installs cannot run under valgrind, see
# tests/harness.c), but for the tests that find a worker by the title
# setproctitle() gives it: under valgrind, /proc/PID/cmdline shows
# valgrind's command line, never that title.
untitled='!(worker_killed_mid_transaction|poison_entry_quarantined|sigterm_with_backlog)'
suites='listqd|policy|listq|tls|auth|pipelining|size|corrupt|wrapper|privilege'
filter=${VALGRIND_FILTER:-"@($suites)/$untitled"}
if ! vg=$(command -v valgrind); then
	echo "valgrind-check: valgrind is not installed (make deps)" >&2
	exit 1
fi
logs=$(mktemp -d /tmp/listq-valgrind.XXXXXX)
chmod 1777 "$logs"	# listq and the workers run as other test users

rc=0
LISTQ_TEST_VALGRIND=$vg LISTQ_TEST_VALGRIND_LOGS=$logs \
    LISTQ_TEST_TIME_FACTOR=${LISTQ_TEST_TIME_FACTOR:-10} \
    LISTQ_CHECK_ROOT=${LISTQ_CHECK_ROOT:-/tmp/listq-check}-vg BUILD=$BUILD \
    tests/run.sh --filter "$filter" || rc=$?

# One log per process (pid in the name).  One without a summary was
# killed (SIGKILL) before valgrind could report: counted, not judged.
n=0 bad=0 cut=0
for f in "$logs"/*.log; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	if ! grep -q 'ERROR SUMMARY:' "$f"; then
		cut=$((cut + 1))
	elif grep -q -e 'ERROR SUMMARY: [1-9]' -e 'definitely lost: [1-9]' \
	    "$f"; then
		bad=$((bad + 1))
		echo "--- $f"
		cat "$f"
	fi
done
echo "valgrind: $n processes checked, $bad with an error or a definite" \
    "leak, $cut killed before their report"
if [ "$n" -eq 0 ] || [ "$bad" -gt 0 ] || [ "$rc" -ne 0 ]; then
	[ "$n" -gt 0 ] || echo "valgrind: no process ran under valgrind" >&2
	[ "$rc" -eq 0 ] || echo "valgrind: the tests failed ($rc)" >&2
	echo "valgrind: logs kept in $logs" >&2
	exit 1
fi
[ -n "${LISTQ_KEEP:-}" ] && echo "valgrind: logs kept in $logs" ||
    rm -rf "$logs"
