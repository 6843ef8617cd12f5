#!/bin/sh
# SPDX-License-Identifier: ISC
# make analyze: cppcheck (warning, portability, performance), clang-tidy
# with the checked-in .clang-tidy, and scan-build over a fresh build.
# Each must report nothing; the run goes on after a failure so that every
# finding is listed, and exits 1 if there was any.
set -u

BUILD=${BUILD:-build}
out=$BUILD/analyze
fail=0
rm -rf "$out"
mkdir -p "$out"

# The test code is checked too.  cppcheck does not read Criterion's
# header: tests/criterion.cfg tells it what Test() and the like expand to.
echo "analyze: cppcheck"
cppcheck -q --error-exitcode=1 --enable=warning,portability,performance \
    --inline-suppr --library=tests/criterion.cfg -D_GNU_SOURCE \
    -I common -I worker -I tests \
    wrapper common worker tests/fuzz tests/torture tests/sink tests/afl \
    tests/*.c || fail=1

echo "analyze: clang-tidy"
settings='-DPREFIX="/usr/local" -DLIBEXECDIR="/usr/local/lib/listq"
    -DSYSCONFDIR="/usr/local/etc" -DSPOOLDIR="/var/spool/listq"
    -DLISTDIR="/var/lib/listq/lists" -DLISTQ_USER="listq" -DLISTQ_UID=38
    -DLISTQ_GID=38 -DMAIL_GIDS=65534 -DMAX_MESSAGE_SIZE=10485760'
flags="-D_GNU_SOURCE -Icommon -Iworker -Itests -std=gnu11 $settings
    $(pkg-config --cflags libbsd-overlay libsystemd openssl \
    libcares libpsl gmime-3.0 \
    criterion)"
# shellcheck disable=SC2086
ls common/*.c worker/*.c wrapper/*.c tests/*.c tests/fuzz/*.c \
    tests/torture/*.c tests/sink/*.c tests/afl/*.c |
    FLAGS=$flags xargs -P "$(nproc)" -n 4 \
    sh -c 'clang-tidy -quiet "$@" -- $FLAGS' clang-tidy \
    >"$out/clang-tidy.log" 2>&1
if grep -q 'warning:\|error:' "$out/clang-tidy.log"; then
	grep -A3 'warning:\|error:' "$out/clang-tidy.log"
	echo "analyze: clang-tidy: $(grep -c 'warning:\|error:' \
	    "$out/clang-tidy.log") findings"
	fail=1
fi

echo "analyze: scan-build"
if ! scan-build --status-bugs -o "$out/scan-build" \
    ${MAKE:-make} -s --no-print-directory -j"$(nproc)" BUILD="$out/build" \
    wrapper daemon admin >"$out/scan-build.log" 2>&1; then
	grep 'warning:\|error:' "$out/scan-build.log"
	echo "analyze: scan-build: findings (report under $out/scan-build)"
	fail=1
fi
[ $fail = 0 ] && echo "analyze: no findings"
exit $fail
