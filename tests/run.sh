#!/bin/sh
# SPDX-License-Identifier: ISC
# Runs the Criterion suite against freshly built wrappers.
#
# As root it makes the test users (an MTA user in an allowed group, a
# stranger, the service user), builds the wrapper with their ids and a
# spool under a fresh root-owned directory, installs it both ways (file
# capabilities; setuid root), plus a copy without privilege for the
# service user's own runs, and removes those installs afterwards.  As
# an ordinary user it builds the development wrapper, whose service
# identity is the caller's own; the tests that need root say so and skip.
# SUITE names another Criterion binary (the torture suite) to run the
# same way.  BUILD (default build) and LISTQ_CHECK_ROOT (default /tmp/listq-check)
# let two runs proceed side by side.
set -eu

BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
top=$(pwd)
suite=${SUITE:-$BUILD/tests/listq-tests}
export LISTQ_TEST_MAX_SIZE=10485760 LISTQ_TEST_RESERVE=1048576

. tests/lib.sh

if [ "$(id -u)" = 0 ]; then
	make_test_users
	root=${LISTQ_CHECK_ROOT:-/tmp/listq-check}
	[ -n "${LISTQ_KEEP:-}" ] || trap 'rm -rf "$root"' EXIT
	rm -rf "$root"
	install -d -o root -g root -m 0755 "$root"
	build_wrapper "$BUILD/check-root" "$svc_uid" "$svc_gid" \
	    "$mail_gid,$mail2_gid" \
	    "$root/spool" "$root/lists"
	install_wrapper "$BUILD/check-root/listq-wrapper" "$root/caps" caps
	install_wrapper "$BUILD/check-root/listq-wrapper" "$root/setuid" setuid
	install -d -m 0755 "$root/plain"
	install -m 0755 "$BUILD/check-root/listq-wrapper" "$root/plain"
	export LISTQ_TEST_PLAIN_WRAPPER="$root/plain/listq-wrapper"
	export LISTQ_TEST_LISTQD="$top/$BUILD/check-root/listqd"
	export LISTQ_TEST_LISTQ="$top/$BUILD/check-root/listq"
	install -m 0644 "$BUILD/tests/preload.so" "$root/preload.so"
	export LISTQ_TEST_WRAPPER="$root/caps/listq-wrapper"
	export LISTQ_TEST_SETUID_WRAPPER="$root/setuid/listq-wrapper"
	export LISTQ_TEST_SPOOL="$root/spool" LISTQ_TEST_LISTS="$root/lists"
	export LISTQ_TEST_SVC_UID=$svc_uid LISTQ_TEST_SVC_GID=$svc_gid
	export LISTQ_TEST_MTA_UID=$mta_uid LISTQ_TEST_MTA_GID=$mail_gid
	export LISTQ_TEST_MTA2_UID=$mta2_uid LISTQ_TEST_MTA2_GID=$mail2_gid
	export LISTQ_TEST_STRANGER_UID=$(id -u listq-tstranger)
	export LISTQ_TEST_STRANGER_GID=$(gid_of listq-tother)
	export LISTQ_TEST_PRELOAD="$root/preload.so"
else
	dev=$top/$BUILD/check-dev
	build_wrapper "$dev" "$(id -u)" "$(id -g)" 65534 "$dev/spool" "$dev/lists"
	export LISTQ_TEST_WRAPPER="$dev/listq-wrapper"
	export LISTQ_TEST_LISTQD="$dev/listqd"
	export LISTQ_TEST_LISTQ="$dev/listq"
	export LISTQ_TEST_SPOOL="$dev/spool" LISTQ_TEST_LISTS="$dev/lists"
	export LISTQ_TEST_SVC_UID=$(id -u) LISTQ_TEST_SVC_GID=$(id -g)
	export LISTQ_TEST_PRELOAD="$top/$BUILD/tests/preload.so"
fi

export LISTQ_TEST_SINK="$top/$BUILD/tests/listq-sink"
export LISTQ_TEST_SWEEP="$top/tests/spool_sweep.sh"

# One test at a time: they share the spool compiled into the wrapper.
"$suite" --jobs=1 --verbose "$@"
