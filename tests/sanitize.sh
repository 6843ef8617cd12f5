#!/bin/sh
# SPDX-License-Identifier: ISC
# make sanitize-check: the Criterion suite against a build with
# AddressSanitizer and UndefinedBehaviorSanitizer (make SANITIZE=...,
# under $BUILD-san).  An error aborts the program that has it, which
# fails the test that ran it; the reports go to files (SAN_LOGS), so that
# one from a program whose end no test looks at (a daemon's worker)
# fails the check too.  LISTQ_CHECK_ROOT gets "-san" added, so that the
# run may follow make test.
set -eu

logs=$(mktemp -d /tmp/listq-san.XXXXXX)
chmod 1777 "$logs"	# the daemons run as the service user
rc=0
${MAKE:-make} --no-print-directory SANITIZE=address,undefined \
    SAN_LOGS="$logs" \
    LISTQ_CHECK_ROOT="${LISTQ_CHECK_ROOT:-/tmp/listq-check}-san" test ||
    rc=$?
if [ -n "$(ls -A "$logs")" ]; then
	for f in "$logs"/*; do
		echo "--- $f"
		cat "$f"
	done
	echo "sanitize-check: the sanitizers reported errors (kept in" \
	    "$logs)" >&2
	exit 1
fi
rmdir "$logs"
[ "$rc" -eq 0 ] || echo "sanitize-check: the tests failed ($rc)" >&2
exit "$rc"
