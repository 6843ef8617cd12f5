#!/bin/sh
# SPDX-License-Identifier: ISC
# Invariant 6, swept over a whole spool: every file under SPOOL (the spool
# itself, entries, state files, DSN entries, held and corrupt entries, the
# pidfile, the control socket, and whatever later features keep there)
# belongs to UID:GID; directories are 0700, everything else 0600 (the
# control socket may be 0700: bind(2) gives it x bits that mean nothing
# on a socket; what counts is that others have none).  Prints
# each file that is not, as "MODE UID:GID PATH", and exits 1 if there is
# one (64 on a usage error, 66 if SPOOL is missing).  The e2e run calls
# it on the spool it leaves, the torture suite at the end of every test
# and, in the crash test, at each kill while the spool is busy (state
# files of entries in flight); the quarantine and hold tests after
# their corrupt/ and hold/ entries.  A file that vanishes while it runs
# is not reported.
#
#	tests/spool_sweep.sh SPOOL UID GID
set -eu

if [ $# -ne 3 ]; then
	echo "usage: $0 SPOOL UID GID" >&2
	exit 64
fi
if [ ! -d "$1" ]; then
	echo "spool_sweep: $1: not a directory" >&2
	exit 66
fi
bad=$(find "$1" \( ! -uid "$2" -o ! -gid "$3" -o \
    \( -type d ! -perm 0700 \) -o \( -type s ! -perm 0600 ! -perm 0700 \) \
    -o \( ! -type d ! -type s ! -perm 0600 \) \) \
    -printf '%m %U:%G %p\n' 2>/dev/null || true)	# a file may vanish
if [ -n "$bad" ]; then
	echo "spool_sweep: not $2:$3 0600/0700 (invariant 6):"
	echo "$bad" | head -n 40
	exit 1
fi
echo "spool_sweep: $(find "$1" 2>/dev/null | wc -l) files under $1, all $2:$3" \
    "0600/0700"
