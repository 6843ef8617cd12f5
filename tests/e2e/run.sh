#!/bin/sh
# SPDX-License-Identifier: ISC
# End to end through a real Postfix, run by `make check` before the
# Criterion suite: a private Postfix instance on loopback (its own config
# directory and queue) pipes list mail into an installed listq-wrapper as
# nobody:nogroup, listqd relays through the same Postfix, and members at a
# second domain get Maildirs that the test counts.  tests/e2e/e2e.py does
# the work; this script decides whether it can run.  Then the same through
# a private Exim 4 (tests/e2e/exim.py) and OpenSMTPD (tests/e2e/opensmtpd.py),
# wired as doc/exim-guide.md and doc/opensmtpd-guide.md say; one listq
# build serves the three rounds.
#
# Needs root (a set-id wrapper, a Postfix instance, uid switches); as an
# ordinary user it says so and passes.  Installs Debian's postfix if it is
# missing (debconf "No configuration": the system instance is never
# configured, started or touched).  Each round ends with its counts, "e2e:
# N passed, N failed" (Postfix), "e2e exim: ...", "e2e opensmtpd: ...";
# exit 1 if anything failed.  LISTQ_E2E_MTAS (default "postfix exim
# opensmtpd") picks the rounds; LISTQ_MTA_DEBS (default $BUILD/e2e-mta)
# is where the Exim and OpenSMTPD .debs are kept.  BUILD (default build)
# names the build directory; LISTQ_E2E_ROOT (default
# ${LISTQ_CHECK_ROOT:-/tmp/listq-check}-e2e) the directory it works in
# (removed at the end of each round).
set -eu

if [ "$(id -u)" != 0 ]; then
	echo "e2e: skipped: needs root (an installed set-id wrapper, a private" \
	    "Postfix instance); run make check as root"
	exit 0
fi
if [ "${LISTQ_SKIP_E2E:-}" = 1 ]; then
	echo "e2e: skipped: LISTQ_SKIP_E2E=1"
	exit 0
fi
if ! command -v python3 >/dev/null 2>&1 && [ ! -x /usr/bin/python3 ]; then
	echo "e2e: 0 passed, 1 failed (python3 missing; make deps installs it)"
	exit 1
fi

# Debian's postfix, preseeded so that it configures (and starts) nothing.
# Installing into the system: under the lock tests/packaging.sh takes.
if ! dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'ok installed'
then
	exec 9> /run/lock/listq-packaging.lock
	flock -w 600 9 || true
	if ! dpkg-query -W -f='${Status}' postfix 2>/dev/null |
	    grep -q 'ok installed'; then
		echo "e2e: installing postfix (debconf: No configuration)"
		echo 'postfix postfix/main_mailer_type select No configuration' |
		    debconf-set-selections
		if ! { apt-get update -qq &&
		    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		    -o DPkg::Lock::Timeout=300 --no-install-recommends postfix; \
		    } >/tmp/listq-e2e-apt.$$ 2>&1; then
			tail -n 5 /tmp/listq-e2e-apt.$$
			rm -f /tmp/listq-e2e-apt.$$
			echo "e2e: 0 passed, 1 failed (could not install postfix)"
			exit 1
		fi
		rm -f /tmp/listq-e2e-apt.$$
	fi
	flock -u 9 || true
	exec 9>&-
fi

# Exim 4 and OpenSMTPD conflict with postfix (mail-transport-agent), so
# they are not installed: their .debs are fetched once into $DEBS, and
# each round unpacks them under its own root.  Their libraries are
# ordinary packages (make deps).
DEBS=${LISTQ_MTA_DEBS:-${BUILD:-build}/e2e-mta}
MTAS=${LISTQ_E2E_MTAS:-postfix exim opensmtpd}
need=
for p in exim4-base exim4-daemon-light opensmtpd; do
	case " $MTAS " in
	*" exim "*|*" opensmtpd "*) ls "$DEBS/${p}_"*.deb >/dev/null 2>&1 ||
	    need="$need $p" ;;
	esac
done
if [ -n "$need" ]; then
	mkdir -p "$DEBS"
	echo "e2e: fetching$need (apt-get download, not installed)"
	if ! (cd "$DEBS" && apt-get download $need) \
	    >/tmp/listq-e2e-apt.$$ 2>&1; then
		tail -n 5 /tmp/listq-e2e-apt.$$
		echo "e2e: could not fetch$need"
	fi
	rm -f /tmp/listq-e2e-apt.$$
fi

py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
rc=0
for m in $MTAS; do
	case $m in
	postfix)	"$py" tests/e2e/e2e.py "$@" || rc=1 ;;
	exim|opensmtpd)	"$py" tests/e2e/$m.py || rc=1 ;;
	*)		echo "e2e $m: 0 passed, 1 failed (no such round)"; rc=1 ;;
	esac
done
exit $rc
