#!/bin/sh
# SPDX-License-Identifier: ISC
# The hardening of built binaries, read with readelf: PIE, full RELRO
# (a GNU_RELRO segment and BIND_NOW), the stack protector
# (__stack_chk_fail imported) and FORTIFY (some __*_chk imported).
# Usage: tests/hardening.sh BINARY...  One line per binary; exit 1 if
# any lacks any of them.
#
# Then, as root, what the installed wrapper holds once it runs: see
# installed_wrapper_state below (skipped, saying so, otherwise).
set -eu

fail=0
for bin in "$@"; do
	missing=
	hdr=$(readelf -h "$bin")
	dyn=$(readelf -d "$bin")
	phdr=$(readelf -lW "$bin")
	syms=$(readelf --dyn-syms -W "$bin")
	echo "$hdr" | grep -q 'Type:[[:space:]]*DYN' &&
	    echo "$dyn" | grep -q 'FLAGS_1.*PIE' || missing="$missing PIE"
	echo "$phdr" | grep -q 'GNU_RELRO' || missing="$missing RELRO"
	echo "$dyn" | grep -Eq '\(BIND_NOW\)|FLAGS.*[[:space:]]BIND_NOW|FLAGS_1.*[[:space:]]NOW' ||
	    missing="$missing BIND_NOW"
	echo "$syms" | grep -q ' __stack_chk_fail' ||
	    missing="$missing stack-protector"
	echo "$syms" | grep -Eq ' __[a-z_]+_chk(@|$)' ||
	    missing="$missing FORTIFY"
	if [ -n "$missing" ]; then
		echo "hardening: $bin: MISSING$missing"
		fail=1
	fi
done
[ $fail = 0 ] && echo "hardening: $# binaries: PIE, full RELRO," \
    "BIND_NOW, stack protector, FORTIFY"

# The wrapper built with the test users' ids (tests/lib.sh), installed
# root-owned under a fresh directory each way: file capabilities, setuid
# root, and file capabilities with more than it needs.  Each is started
# as the MTA user with stdin a pipe held open, so that it blocks reading
# the message once its tmp/ file exists; it is stopped (SIGSTOP) and its
# /proc/PID/status read: no permitted, effective, inheritable or ambient
# capability, every uid and gid the service's, no supplementary group,
# no_new_privs.  SIGTERM then SIGCONT: it must exit 75 and leave nothing
# in the spool.  tests/test_privilege.c reads the same fields (and the
# open descriptors) in the Criterion suite; this is the shipped-binary
# check, and the one that holds the process stopped.  Last, an install
# that can switch the gid but not the uid: 75 naming an install fault.
cap0=0000000000000000
wpid=

installed_wrapper_state() {
	. tests/lib.sh
	make_test_users
	rm -rf "$root"
	install -d -o root -g root -m 0755 "$root"
	# (set -e does not apply in a function called with ||: say it.)
	build_wrapper "$BUILD/check-hardening" "$svc_uid" "$svc_gid" \
	    "$mail_gid" "$root/spool" "$root/lists" wrapper || return 1
	make_spool "$root/spool" "$svc_uid" "$svc_gid"
	install -d -o "$svc_uid" -g "$svc_gid" -m 0700 "$root/lists" \
	    "$root/lists/mylist"
	built=$BUILD/check-hardening/listq-wrapper
	install_wrapper "$built" "$root/caps" caps
	install_wrapper "$built" "$root/setuid" setuid
	install_wrapper "$built" "$root/extra" caps
	setcap cap_setuid,cap_setgid,cap_dac_override,cap_kill,cap_net_raw=ep \
	    "$root/extra/listq-wrapper"
	install_wrapper "$built" "$root/half" caps
	setcap cap_setgid=ep "$root/half/listq-wrapper"
	# $as_mta CMD...: CMD as the MTA user runs it (uid, gid, groups);
	# setpriv execs CMD, so that $! is the wrapper's own pid.
	as_mta="setpriv --reuid=$mta_uid --regid=$mail_gid --init-groups --"
	caller_holds_nothing || return 1
	for mode in caps setuid extra; do
		stopped_state "$mode" || return 1
	done
	half_switch
}

# status_of PID KEY: the value of KEY in /proc/PID/status, blanks folded.
status_of() {
	sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s ' \t' '  ' |
	    sed 's/ $//'
}

# The caller itself holds no capability: what the wrapper holds, it got
# from its install.
caller_holds_nothing() {
	prm=$($as_mta sed -n 's/^CapPrm:[[:space:]]*//p' /proc/self/status)
	[ "$prm" = $cap0 ] && return 0
	echo "hardening: the MTA test caller holds capabilities ($prm)"
	return 1
}

# Waits (at most 10 s) for the wrapper's tmp/ file; false if it exited.
wait_blocked() {
	i=0
	while [ $i -lt 200 ]; do
		[ -z "$(find "$root/spool/tmp" -type f)" ] || return 0
		case $(status_of "$1" State) in Z*|'') return 1 ;; esac
		sleep 0.05
		i=$((i + 1))
	done
	return 1
}

stopped_state() {
	w=$root/$1/listq-wrapper
	fifo=$root/fifo
	rm -f "$fifo"
	mkfifo -m 0600 "$fifo"
	exec 3<>"$fifo"
	$as_mta "$w" post mylist <"$fifo" 2>"$root/stderr" 3>&- &
	wpid=$!
	if ! wait_blocked $wpid; then
		echo "hardening: $1 install: never blocked reading:" \
		    "$(cat "$root/stderr")"
		return 1
	fi
	kill -STOP $wpid
	bad=
	[ "$(readlink /proc/$wpid/exe)" = "$w" ] || bad="$bad not-the-wrapper"
	case $(status_of $wpid State) in T*) ;; *) bad="$bad not-stopped" ;; esac
	for k in CapPrm CapEff CapInh CapAmb; do
		[ "$(status_of $wpid $k)" = $cap0 ] ||
		    bad="$bad $k=$(status_of $wpid $k)"
	done
	[ "$(status_of $wpid Uid)" = "$svc_uid $svc_uid $svc_uid $svc_uid" ] ||
	    bad="$bad Uid=$(status_of $wpid Uid)"
	[ "$(status_of $wpid Gid)" = "$svc_gid $svc_gid $svc_gid $svc_gid" ] ||
	    bad="$bad Gid=$(status_of $wpid Gid)"
	[ -z "$(status_of $wpid Groups)" ] ||
	    bad="$bad Groups=$(status_of $wpid Groups)"
	[ "$(status_of $wpid NoNewPrivs)" = 1 ] || bad="$bad NoNewPrivs=0"
	line="Uid $(status_of $wpid Uid), Gid $(status_of $wpid Gid),"
	line="$line CapPrm $(status_of $wpid CapPrm) CapEff"
	line="$line $(status_of $wpid CapEff) CapInh $(status_of $wpid CapInh)"
	line="$line CapAmb $(status_of $wpid CapAmb)"
	line="$line CapBnd $(status_of $wpid CapBnd),"
	line="$line NoNewPrivs $(status_of $wpid NoNewPrivs)"
	kill -TERM $wpid
	kill -CONT $wpid
	rc=0
	wait $wpid || rc=$?
	wpid=
	exec 3>&-
	[ $rc = 75 ] || bad="$bad exit=$rc"
	left=$(find "$root/spool/tmp" "$root/spool/queue" -type f | wc -l)
	[ "$left" = 0 ] || bad="$bad $left-files-left-in-the-spool"
	if [ -n "$bad" ]; then
		echo "hardening: $1 install, stopped: FAILED:$bad ($line)"
		return 1
	fi
	echo "hardening: $1 install, stopped while reading: $line;" \
	    "SIGTERM: 75, spool empty"
}

# Only cap_setgid: the gid switch succeeds, the uid switch cannot.
half_switch() {
	rc=0
	printf 'Subject: x\n\nx\n' | $as_mta "$root/half/listq-wrapper" post \
	    mylist 2>"$root/stderr" || rc=$?
	left=$(find "$root/spool/tmp" "$root/spool/queue" -type f | wc -l)
	if [ $rc = 75 ] && [ "$left" = 0 ] &&
	    grep -q 'install fault' "$root/stderr"; then
		echo "hardening: cap_setgid only: 75, spool empty:" \
		    "$(cat "$root/stderr")"
		return 0
	fi
	echo "hardening: cap_setgid only: FAILED: exit $rc, $left files:" \
	    "$(cat "$root/stderr")"
	return 1
}

if [ "$(id -u)" != 0 ]; then
	echo "hardening: the installed wrapper after start: skipped (needs" \
	    "root to install it set-id and run it as the MTA user)"
	exit $fail
fi
BUILD=${BUILD:-build}
root=${LISTQ_CHECK_ROOT:-/tmp/listq-check}-hardening
trap '[ -z "$wpid" ] || kill -KILL "$wpid" 2>/dev/null; rm -rf "$root"' EXIT
installed_wrapper_state || fail=1
exit $fail
