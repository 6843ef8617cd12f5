#!/bin/sh
# SPDX-License-Identifier: ISC
# Packaging tests, run by `make check` before the Criterion suite.
#
#   - the unit's systemd-analyze security rating (2.0 or lower), and the
#     tmpfiles.d and sysusers.d files in packaging/ as install.sh writes them;
#   - `make install DESTDIR=...` as an ordinary user (the tree, no chown or
#     setcap, and a note of what root would add), then `make uninstall`;
#     as root, the same with ownership: caps and setuid wrappers, the spool;
#   - the .deb: built with dpkg-buildpackage, lintian without errors; as
#     root, installed into this machine: the wrapper's owner, group, mode
#     and capabilities, the spool, the unit (verify, security), a message
#     piped in as nobody:nogroup lands list:list 0600 and the installed
#     listqd delivers it (to listq-sink), `listq check` where listq is
#     built, then `dpkg --purge` leaves nothing behind;
#   - as root, the unit under a real systemd: a container booted from an
#     overlay of this machine, where the package's listqd.service starts
#     (Type=notify, as list, no capability), reloads, delivers, writes its
#     metrics (listq-metrics.service) and stops;
#   - the RPM: built with rpmbuild, modes and capabilities from rpm -qlvp.
#
# Ends with one line: "packaging: N passed, N failed, N skipped".  Exit 1
# if anything failed.  BUILD (default build) names the build directory.
set -eu

BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
top=$(pwd)
npass=0 nfail=0 nskip=0
tmp=$(mktemp -d /tmp/listq-packaging.XXXXXX)
chmod 0755 "$tmp"
installed= listqd_pid= sink_pid= nspawn_pid= ct_init= ct_mounts=

pass() { npass=$((npass + 1)); printf '  ok    %s\n' "$*"; }
fail() { nfail=$((nfail + 1)); printf '  FAIL  %s\n' "$*"; }
skip() { nskip=$((nskip + 1)); printf '  skip  %s\n' "$*"; }
section() { printf 'packaging: %s\n' "$*"; }

# check DESCRIPTION COMMAND...: pass if the command succeeds.
check() {
	d=$1; shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}

# same DESCRIPTION EXPECTED ACTUAL
same() {
	if [ "$2" = "$3" ]; then pass "$1"
	else fail "$1: expected '$2', got '$3'"; fi
}

# alive PID: running, not a zombie (a daemon's parent may be slow to reap).
alive() {
	case $(ps -o stat= -p "$1" 2>/dev/null) in
	''|Z*) return 1 ;;
	esac
}

stop_pid() {
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq 1 100); do
		alive "$1" || return 0
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
}

# The container of the systemd test: stop it, unmount its overlay.
ct_down() {
	if [ -n "$nspawn_pid" ]; then
		stop_pid "$nspawn_pid"
		wait "$nspawn_pid" 2>/dev/null || true
		# The container's init takes every process of it along.
		[ -z "$ct_init" ] || ! alive "$ct_init" || kill -9 "$ct_init"
		nspawn_pid= ct_init=
	fi
	for m in $ct_mounts; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	ct_mounts=
}

cleanup() {
	rc=$?
	[ -z "$listqd_pid" ] || stop_pid "$listqd_pid"
	[ -z "$sink_pid" ] || stop_pid "$sink_pid"
	if [ -n "$installed" ]; then
		dpkg --purge listq >/dev/null 2>&1 || true
	fi
	ct_down
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

root=no
[ "$(id -u)" = 0 ] && root=yes

# as_user CMD...: an ordinary user (nobody) when we are root.
as_user() {
	if [ "$root" = yes ]; then
		runuser -u nobody -g nogroup -- env HOME="$tmp/home" "$@"
	else
		"$@"
	fi
}
mkdir -p "$tmp/home"
[ "$root" = no ] || chown nobody:nogroup "$tmp/home"

printf 'From: poster@example.org\nTo: pkgtest@lists.example.org\nSubject: packaging\nMessage-Id: <pkgtest@example.org>\n\nhello\n' \
    > "$tmp/post.eml"
chmod 0644 "$tmp/post.eml"

deb_settings="LISTQ_USER=list LISTQ_UID=38 LISTQ_GID=38
    SPOOLDIR=/var/spool/listq LISTDIR=/var/lib/listq/lists"

# ---------------------------------------------------------------------
section "unit and generated files"

score=$(systemd-analyze security --offline=true --no-pager \
    packaging/systemd/listqd.service 2>&1 |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p')
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
	pass "listqd.service exposure $score (limit 2.0)"
else
	fail "listqd.service exposure '${score:-?}' (limit 2.0)"
fi
for u in packaging/systemd/*.service packaging/systemd/*.timer; do
	grep -q '^\[Service\]' "$u" || continue
	case $(basename "$u") in listqd.service) continue ;; esac
	s=$(systemd-analyze security --offline=true --no-pager "$u" 2>&1 |
	    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p')
	if [ -n "$s" ] && awk -v s="$s" 'BEGIN { exit !(s <= 2.0) }'; then
		pass "$(basename "$u") exposure $s"
	else
		fail "$(basename "$u") exposure '${s:-?}'"
	fi
done
for f in tmpfiles sysusers; do
	env $deb_settings sh packaging/install.sh $f > "$tmp/$f.conf" || true
	check "packaging/$f.d/listq.conf is what install.sh writes for Debian" \
	    cmp -s "$tmp/$f.conf" "packaging/$f.d/listq.conf"
done
missing=
for l in Type=notify User=list Group=list Restart=on-failure \
    'ExecReload=/bin/kill -HUP $MAINPID'; do
	grep -qxF "$l" packaging/systemd/listqd.service || missing="$missing $l"
done
same "listqd.service: Type=notify, User/Group=list, HUP reload, restart" \
    "" "$missing"

# ---------------------------------------------------------------------
section "make install DESTDIR as an ordinary user"

# A copy of the tree the ordinary user can build in.
src=$tmp/src
mkdir -p "$src"
tar -cf - --exclude='*.o' --exclude='*.d' Makefile README.md SECURITY.md \
    common wrapper worker doc packaging | tar -C "$src" -xf -
[ "$root" = no ] || chown -R nobody:nogroup "$src"
dest=$tmp/dest
mkdir -p "$dest"
[ "$root" = no ] || chown nobody:nogroup "$dest"
ivars="BUILD=build PREFIX=/usr SYSCONFDIR=/etc LISTQ_USER=list
    LISTQ_UID=38 LISTQ_GID=38 MAIL_GIDS=65534"
if as_user $MAKE -s -C "$src" $ivars DESTDIR="$dest" install \
    > "$tmp/install.out" 2>&1; then
	pass "make install DESTDIR=... as $(as_user id -un)"
else
	fail "make install DESTDIR=... as $(as_user id -un):"
	sed 's/^/        /' "$tmp/install.out" | tail -n 15
fi
same "wrapper installed 0750 without privilege" "750" \
    "$(stat -c %a "$dest/usr/lib/listq/listq-wrapper" 2>/dev/null)"
same "wrapper has no file capabilities" "" \
    "$(getcap "$dest/usr/lib/listq/listq-wrapper" 2>/dev/null)"
same "listqd installed 0755" "755" \
    "$(stat -c %a "$dest/usr/sbin/listqd" 2>/dev/null)"
check "configuration, unit, tmpfiles.d and sysusers.d installed" \
    test -f "$dest/etc/listq/listq.conf" -a \
    -f "$dest/usr/lib/systemd/system/listqd.service" -a \
    -f "$dest/usr/lib/tmpfiles.d/listq.conf" -a \
    -f "$dest/usr/lib/sysusers.d/listq.conf"
check "no spool created without root" test ! -e "$dest/var/spool/listq"
check "it says what a root install would add" \
    grep -q "A root install would also" "$tmp/install.out"
check "  ... the setcap" grep -q "setcap cap_setuid,cap_setgid=ep" \
    "$tmp/install.out"
if as_user $MAKE -s -C "$src" $ivars DESTDIR="$dest" uninstall \
    > "$tmp/uninstall.out" 2>&1 &&
    [ -z "$(find "$dest" -type f 2>/dev/null)" ]; then
	pass "make uninstall removes every file"
else
	fail "make uninstall left: $(find "$dest" -type f | head -n 3)"
fi

if [ "$root" = yes ]; then
	section "make install DESTDIR as root"
	for mode in caps setuid; do
		d=$tmp/root-$mode
		$MAKE -s -C "$src" $ivars DESTDIR="$d" WRAPPER_MODE=$mode \
		    install > "$tmp/install-$mode.out" 2>&1 ||
		    sed 's/^/        /' "$tmp/install-$mode.out" | tail -n 15
		w=$d/usr/lib/listq/listq-wrapper
		want=root:nogroup:750 cap="$w cap_setgid,cap_setuid=ep"
		[ $mode = caps ] || want=root:nogroup:4750 cap=
		same "WRAPPER_MODE=$mode: owner, group, mode" "$want" \
		    "$(stat -c %U:%G:%a "$w" 2>/dev/null)"
		same "WRAPPER_MODE=$mode: capabilities" "$cap" \
		    "$(getcap "$w" 2>/dev/null)"
	done
	n=$(find "$tmp/root-caps/var/spool/listq" -type d -user 38 -group 38 \
	    -perm 0700 2>/dev/null | wc -l)
	same "spool layout: 262 directories 38:38 0700" 262 "$n"
	same "list directory 38:38 0700" "38:38:700" \
	    "$(stat -c %u:%g:%a "$tmp/root-caps/var/lib/listq/lists" 2>/dev/null)"
fi

# ---------------------------------------------------------------------
section "Debian package"

deb=
if $MAKE -s --no-print-directory BUILD="$BUILD" deb > "$tmp/deb.out" 2>&1
then
	deb=$(tail -n 1 "$tmp/deb.out")
	pass "make deb: $(basename "$deb")"
else
	fail "make deb:"
	sed 's/^/        /' "$tmp/deb.out" | tail -n 15
fi
if [ -n "$deb" ]; then
	changes=${deb%.deb}.changes
	lrc=0
	as_user lintian --pedantic --fail-on error "$changes" \
	    > "$tmp/lintian.out" 2>&1 || lrc=$?
	e=$(grep -c '^E:' "$tmp/lintian.out" || true)
	w=$(grep -c '^W:' "$tmp/lintian.out" || true)
	case $lrc in
	0) pass "lintian: no error ($w warnings)" ;;
	1) fail "lintian: $e errors" ;;
	*) fail "lintian did not run (exit $lrc):"
	   sed 's/^/        /' "$tmp/lintian.out" | head -n 5 ;;
	esac
	grep '^[EW]:' "$tmp/lintian.out" | sed 's/^/        /' || true
	# The machine-readable copyright file names the ISC license, and its
	# stand-alone License paragraph holds LICENSE's text, word for word.
	dpkg-deb --fsys-tarfile "$deb" |
	    tar -xOf - ./usr/share/doc/listq/copyright > "$tmp/copyright" ||
	    true
	same "copyright: machine-readable (DEP-5)" \
	    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" \
	    "$(head -n 1 "$tmp/copyright")"
	awk 'p && /^ / { sub(/^ /, ""); if ($0 == ".") $0 = ""; print; next }
	    { p = 0 } prev == "" && $0 == "License: ISC" { p = 1 }
	    { prev = $0 }' "$tmp/copyright" > "$tmp/copyright.text"
	sed '1,2d' "$top/LICENSE" > "$tmp/license.text"
	check "copyright: License: ISC, with the text of LICENSE" \
	    cmp -s "$tmp/license.text" "$tmp/copyright.text"
fi

# One install at a time on this machine, whatever BUILD: wait for any
# other run of this test before looking at what is installed.
if [ "$root" = yes ]; then
	exec 9> /run/lock/listq-packaging.lock
	flock -w 600 9 || true
fi
if [ "$root" = no ]; then
	skip "installing the .deb into this machine needs root (dpkg -i)"
elif [ -z "$deb" ]; then
	skip "installing the .deb: it was not built"
elif dpkg-query -W -f='${Status}' listq 2>/dev/null | grep -q installed ||
    [ -e /var/spool/listq ] || [ -e /var/lib/listq ]; then
	skip "installing the .deb: listq is already installed here" \
	    "(or /var/spool/listq, /var/lib/listq exist); not touching it"
else
	section "Debian package installed (dpkg -i)"
	# What is there before: others' files named *listq* are not ours.
	listq_paths() {
		find /etc /usr /lib /var /run -name '*listq*' 2>/dev/null |
		    grep -v '^/run/lock/listq-packaging.lock$' | sort
	}
	listq_paths > "$tmp/paths.before"
	installed=yes
	if dpkg -i "$deb" > "$tmp/dpkg-i.out" 2>&1; then
		pass "dpkg -i"
	else
		fail "dpkg -i:"; sed 's/^/        /' "$tmp/dpkg-i.out"
	fi
	w=/usr/lib/listq/listq-wrapper
	same "wrapper owner, group, mode" "root:nogroup:750" \
	    "$(stat -c %U:%G:%a $w 2>/dev/null)"
	same "wrapper capabilities (getcap)" "$w cap_setgid,cap_setuid=ep" \
	    "$(getcap $w 2>/dev/null)"
	same "listqd owner, group, mode" "root:root:755" \
	    "$(stat -c %U:%G:%a /usr/sbin/listqd 2>/dev/null)"
	n=$(find /var/spool/listq -type d -user list -group list -perm 0700 |
	    wc -l)
	same "spool: tmp, queue/00..ff, hold, corrupt, moderation, list:list 0700" 262 "$n"
	same "list directory list:list 0700" "list:list:700" \
	    "$(stat -c %U:%G:%a /var/lib/listq/lists 2>/dev/null)"
	# As nobody: verify runs man for Documentation=, and man run by root
	# would leave formatted pages in /var/cache/man.
	unit=/lib/systemd/system/listqd.service
	units=$(ls /lib/systemd/system/listqd.service \
	    /lib/systemd/system/listq-metrics.* 2>/dev/null)
	if out=$(as_user systemd-analyze verify $units 2>&1) &&
	    [ -z "$out" ]; then
		pass "systemd-analyze verify:" $(basename -a $units) "clean"
	else
		fail "systemd-analyze verify: $out"
	fi
	s=$(systemd-analyze security --offline=true --no-pager $unit 2>&1 |
	    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p')
	if [ -n "$s" ] && awk -v s="$s" 'BEGIN { exit !(s <= 2.0) }'; then
		pass "installed unit exposure $s (limit 2.0)"
	else
		fail "installed unit exposure '${s:-?}' (limit 2.0)"
	fi

	# A list, then a post through the wrapper as Postfix's default_privs.
	l=/var/lib/listq/lists/pkgtest
	install -d -o list -g list -m 0700 $l
	printf 'address = pkgtest@lists.example.org\npost_policy = open\n' > $l/config
	printf 'owner@example.org\n' > $l/owners
	printf 'member@example.net\n' > $l/members
	chown list:list $l/config $l/owners $l/members
	chmod 0600 $l/config $l/owners $l/members
	if runuser -u nobody -g nogroup -- $w post pkgtest \
	    < "$tmp/post.eml" > "$tmp/wrapper.out" 2>&1; then
		pass "wrapper run as nobody:nogroup exits 0"
	else
		fail "wrapper run as nobody:nogroup: $(cat "$tmp/wrapper.out")"
	fi
	same "the entry lands list:list 0600" "list:list:600" \
	    "$(find /var/spool/listq/queue -type f -exec stat -c %U:%G:%a {} + |
	    sort -u | tr '\n' ' ' | sed 's/ $//')"
	if runuser -u list -- $w post pkgtest < "$tmp/post.eml" \
	    > "$tmp/wrapper2.out" 2>&1; then
		fail "a user outside nogroup could run the wrapper"
	else
		pass "a user outside nogroup cannot execute the wrapper"
	fi

	# The installed listqd delivers it to a sink on loopback.
	sink=$BUILD/tests/listq-sink
	[ -x "$sink" ] || $MAKE -s BUILD="$BUILD" "$sink" >/dev/null 2>&1 || true
	if [ -x "$sink" ]; then
		"$sink" -P "$tmp/port" -L "$tmp/rcpts" -t 120 \
		    > "$tmp/sink.out" 2>&1 &
		sink_pid=$!
		for _ in $(seq 1 50); do
			[ -s "$tmp/port" ] && break; sleep 0.1
		done
		port=$(cat "$tmp/port" 2>/dev/null || echo 0)
		printf 'smarthost = 127.0.0.1:%s\nworkers = 2\n' "$port" \
		    >> /etc/listq/listq.conf
		if /usr/sbin/listqd > "$tmp/listqd.out" 2>&1; then
			for _ in $(seq 1 50); do
				[ -s /var/spool/listq/pid ] && break
				sleep 0.1
			done
			listqd_pid=$(cat /var/spool/listq/pid 2>/dev/null || true)
		fi
		if [ -n "$listqd_pid" ]; then
			pass "the installed listqd starts (pid $listqd_pid," \
			    "user $(ps -o user= -p "$listqd_pid" 2>/dev/null))"
		else
			fail "the installed listqd did not start:" \
			    "$(cat "$tmp/listqd.out")"
		fi
		for _ in $(seq 1 100); do
			grep -q 'member@example.net' "$tmp/rcpts" 2>/dev/null &&
			    [ -z "$(find /var/spool/listq/queue -type f)" ] &&
			    break
			sleep 0.1
		done
		check "listqd delivered the post to the member" \
		    grep -q 'member@example.net' "$tmp/rcpts"
		check "  ... and the spool is empty again" \
		    test -z "$(find /var/spool/listq/queue -type f)"

		if [ -x /usr/sbin/listq ]; then
			if /usr/sbin/listq check > "$tmp/check.out" 2>&1; then
				pass "listq check"
			else
				fail "listq check:"
				sed 's/^/        /' "$tmp/check.out"
			fi
		else
			skip "listq check: listq is not built yet"
		fi
		[ -z "$listqd_pid" ] || stop_pid "$listqd_pid"
		listqd_pid=
		stop_pid "$sink_pid"; sink_pid=
	else
		skip "delivery by the installed listqd: no $sink"
		skip "listq check: no sink to relay to"
	fi

	if dpkg --purge listq > "$tmp/purge.out" 2>&1; then
		pass "dpkg --purge"
	else
		fail "dpkg --purge:"; sed 's/^/        /' "$tmp/purge.out"
	fi
	installed=
	listq_paths > "$tmp/paths.after"
	left=$(comm -13 "$tmp/paths.before" "$tmp/paths.after")
	if [ -z "$left" ] && ! dpkg-query -W listq >/dev/null 2>&1; then
		pass "nothing left after the purge"
	else
		fail "left after the purge: $(echo $left | cut -c 1-300)"
	fi
fi
[ "$root" = no ] || flock -u 9 || true

# ---------------------------------------------------------------------
# listqd.service under a real systemd, which this machine does not run as
# init: a container (systemd-nspawn) booted to basic.target from an
# overlay of this machine's root on tmpfs, with a network of its own.
# There the package is installed and the hardened unit started, reloaded
# and stopped, and it delivers a post to a sink inside the container.

in_ct() { timeout 60 nsenter -t "$ct_init" -a -- "$@"; }

container_test() {
	ovl=$tmp/ovl r=$tmp/ovl/root
	mkdir -p "$ovl"
	mount -t tmpfs -o size=1g listq-test "$ovl" || return 1
	ct_mounts=$ovl
	mkdir -p "$ovl/upper" "$ovl/work" "$r"
	mount -t overlay listq-test \
	    -o "lowerdir=/,upperdir=$ovl/upper,workdir=$ovl/work" "$r" ||
	    return 1
	ct_mounts="$r $ovl"
	# Nothing of this machine's services: no MTA, no database.
	ln -sf /lib/systemd/system/basic.target \
	    "$r/etc/systemd/system/default.target"
	rm -f "$r/usr/sbin/policy-rc.d"
	cp "$deb" "$r/root/listq.deb"
	cp "$sink" "$r/root/listq-sink"
	systemd-nspawn -q -D "$r" --private-network --link-journal=no \
	    --register=no --keep-unit --console=passive -b \
	    > "$tmp/nspawn.log" 2>&1 < /dev/null &
	nspawn_pid=$!
	# Booted ("running", or "degraded" if some unit of this machine's
	# image failed) within 90 s, or not at all.
	deadline=$(($(date +%s) + 90))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		alive "$nspawn_pid" || return 1
		ct_init=$(pgrep -P "$nspawn_pid" | head -n 1)
		if [ -n "$ct_init" ]; then
			case $(timeout $((deadline - $(date +%s) + 1)) \
			    nsenter -t "$ct_init" -a -- \
			    systemctl is-system-running --wait 2>/dev/null) in
			running|degraded) return 0 ;;
			esac
		fi
		sleep 0.2
	done
	return 1
}

if [ "$root" = no ]; then
	skip "listqd.service under systemd: needs root (a container)"
elif [ -z "$deb" ]; then
	skip "listqd.service under systemd: the .deb was not built"
elif ! command -v systemd-nspawn >/dev/null; then
	skip "listqd.service under systemd: no systemd-nspawn" \
	    "(systemd-container)"
elif [ ! -x "$BUILD/tests/listq-sink" ]; then
	skip "listqd.service under systemd: no $BUILD/tests/listq-sink"
else
	section "listqd.service under systemd (a container)"
	sink=$BUILD/tests/listq-sink
	if container_test; then
		pass "a container booted with systemd ($(in_ct systemctl \
		    is-system-running 2>/dev/null))"
		in_ct dpkg -i /root/listq.deb > "$tmp/ct-dpkg.out" 2>&1 ||
		    sed 's/^/        /' "$tmp/ct-dpkg.out"
		same "dpkg -i enabled listqd.service" enabled \
		    "$(in_ct systemctl is-enabled listqd 2>&1)"
		in_ct systemctl start listqd > "$tmp/ct.out" 2>&1 || true
		same "systemctl start listqd (Type=notify)" active \
		    "$(in_ct systemctl is-active listqd 2>&1)"
		mainpid=$(in_ct systemctl show -p MainPID --value listqd) ||
		    mainpid=0
		same "listqd runs as list:list" "list list" \
		    "$(in_ct ps -o user=,group= -p "$mainpid" 2>/dev/null |
		    tr -s ' ' | sed 's/^ //; s/ $//')"
		same "  ... with no capability" "0000000000000000" \
		    "$(in_ct sed -n 's/^CapEff:\t//p' "/proc/$mainpid/status" \
		    2>/dev/null)"
		in_ct sh -c '/root/listq-sink -p 2525 -L /root/rcpts -t 120 \
		    > /root/sink.out 2>&1 &
		    printf "smarthost = 127.0.0.1:2525\nworkers = 2\n" \
		        >> /etc/listq/listq.conf
		    l=/var/lib/listq/lists/pkgtest
		    install -d -o list -g list -m 0700 $l
		    printf "address = pkgtest@lists.example.org\npost_policy = open\n" > $l/config
		    echo owner@example.org > $l/owners
		    echo member@example.net > $l/members
		    chown list:list $l/config $l/owners $l/members' \
		    > "$tmp/ct.out" 2>&1 || true
		in_ct systemctl reload listqd > "$tmp/ct.out" 2>&1 || true
		sleep 0.5
		if in_ct journalctl -u listqd --no-pager 2>/dev/null |
		    grep -q 'configuration reloaded'; then
			pass "systemctl reload listqd: SIGHUP, configuration reloaded"
		else
			fail "systemctl reload listqd: $(cat "$tmp/ct.out")"
		fi
		in_ct runuser -u nobody -g nogroup -- \
		    /usr/lib/listq/listq-wrapper post pkgtest \
		    < "$tmp/post.eml" > "$tmp/ct.out" 2>&1 ||
		    fail "wrapper in the container: $(cat "$tmp/ct.out")"
		for _ in $(seq 1 100); do
			in_ct grep -q member@example.net /root/rcpts \
			    2>/dev/null && break
			sleep 0.1
		done
		if in_ct grep -q member@example.net /root/rcpts 2>/dev/null
		then
			pass "the sandboxed listqd delivered a post over TCP"
		else
			fail "the sandboxed listqd did not deliver:"
			in_ct journalctl -u listqd --no-pager 2>/dev/null |
			    tail -n 5 | sed 's/^/        /'
		fi
		if in_ct test -x /usr/sbin/listq; then
			prom=/var/lib/prometheus/node-exporter/listq.prom
			in_ct mkdir -p "${prom%/*}" || true
			in_ct systemctl start listq-metrics.service \
			    > "$tmp/ct.out" 2>&1 || true
			if in_ct grep -q '^listq_' "$prom" 2>/dev/null &&
			    [ "$(in_ct stat -c %a "$prom")" = 644 ]; then
				pass "listq-metrics.service wrote $prom"
			else
				fail "listq-metrics.service: $(cat "$tmp/ct.out")"
				in_ct journalctl -u listq-metrics --no-pager \
				    2>/dev/null | tail -n 5 | sed 's/^/        /'
			fi
		else
			skip "listq-metrics.service: listq is not built yet"
		fi
		in_ct systemctl stop listqd > "$tmp/ct.out" 2>&1 || true
		if [ "$(in_ct systemctl is-active listqd 2>&1)" = inactive ] &&
		    ! in_ct pgrep -x listqd >/dev/null 2>&1; then
			pass "systemctl stop listqd: every process gone"
		else
			fail "systemctl stop listqd: $(in_ct pgrep -a listqd)"
		fi

		# Purge with systemd running, then the fallback: no setcap
		# (libcap2-bin is only recommended) gives a setuid wrapper.
		in_ct systemctl start listqd > "$tmp/ct.out" 2>&1 || true
		in_ct dpkg --purge listq > "$tmp/ct.out" 2>&1 || true
		if ! in_ct pgrep -x listqd >/dev/null 2>&1 &&
		    ! in_ct test -e /var/spool/listq &&
		    ! in_ct test -e /etc/systemd/system/multi-user.target.wants/listqd.service
		then
			pass "dpkg --purge under systemd: stopped, nothing left"
		else
			fail "dpkg --purge under systemd: $(cat "$tmp/ct.out")"
		fi
		# This time postinst must not start listqd, which would take
		# the entry checked below (policy-rc.d 101: "not now").
		in_ct mv /usr/sbin/setcap /usr/sbin/setcap.away || true
		in_ct sh -c 'printf "#!/bin/sh\nexit 101\n" \
		    > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d' \
		    || true
		in_ct dpkg -i /root/listq.deb > "$tmp/ct-dpkg.out" 2>&1 || true
		w=/usr/lib/listq/listq-wrapper
		same "without setcap: the wrapper is setuid root, 4750" \
		    "root:nogroup:4750" \
		    "$(in_ct stat -c %U:%G:%a $w 2>/dev/null)"
		check "  ... and postinst says so" grep -q "setuid root" \
		    "$tmp/ct-dpkg.out"
		in_ct sh -c 'l=/var/lib/listq/lists/pkgtest
		    install -d -o list -g list -m 0700 $l
		    printf "address = pkgtest@lists.example.org\npost_policy = open\n" > $l/config' \
		    > "$tmp/ct.out" 2>&1 || true
		if in_ct systemctl -q is-active listqd; then
			fail "  ... postinst started listqd despite policy-rc.d"
			in_ct systemctl stop listqd > /dev/null 2>&1 || true
		fi
		if in_ct runuser -u nobody -g nogroup -- $w post pkgtest \
		    < "$tmp/post.eml" > "$tmp/ct.out" 2>&1; then
			same "  ... whose entry lands list:list 0600" \
			    "list:list:600" \
			    "$(in_ct find /var/spool/listq/queue -type f \
			    -exec stat -c %U:%G:%a {} + 2>/dev/null | sort -u)"
		else
			fail "  ... run as nobody:nogroup: $(cat "$tmp/ct.out")"
		fi
	else
		fail "the container did not boot:"
		tail -n 5 "$tmp/nspawn.log" | sed 's/^/        /'
	fi
	ct_down
fi

# ---------------------------------------------------------------------
section "RPM"

rpmfile=
if $MAKE -s --no-print-directory BUILD="$BUILD" rpm > "$tmp/rpm.out" 2>&1
then
	rpmfile=$(tail -n 1 "$tmp/rpm.out")
	pass "make rpm: $(basename "$rpmfile")"
else
	fail "make rpm:"
	sed 's/^/        /' "$tmp/rpm.out" | tail -n 15
fi
if [ -n "$rpmfile" ]; then
	rpm -qlvp "$rpmfile" 2>/dev/null > "$tmp/rpm-qlv" || true
	line() { awk -v f="$1" '$NF == f { print $1, $3, $4 }' "$tmp/rpm-qlv"; }
	same "wrapper -rwxr-x--- root nobody" "-rwxr-x--- root nobody" \
	    "$(line /usr/libexec/listq/listq-wrapper)"
	same "listqd -rwxr-xr-x root root" "-rwxr-xr-x root root" \
	    "$(line /usr/sbin/listqd)"
	same "spool drwx------ mailman mailman" "drwx------ mailman mailman" \
	    "$(line /var/spool/listq)"
	n=$(awk '$1 == "drwx------" && $3 == "mailman" && $4 == "mailman" &&
	    $NF ~ "^/var/spool/listq/queue/[0-9a-f][0-9a-f]$"' "$tmp/rpm-qlv" |
	    wc -l)
	same "queue/00..ff drwx------ mailman mailman" 256 "$n"
	same "wrapper %caps" "cap_setgid,cap_setuid=ep" \
	    "$(rpm -qp --queryformat '[%{FILENAMES} %{FILECAPS}\n]' \
	    "$rpmfile" 2>/dev/null |
	    awk '$1 == "/usr/libexec/listq/listq-wrapper" { print $2 }')"
	check "%pre creates mailman with uid and gid 41" \
	    sh -c "rpm -qp --scripts '$rpmfile' 2>/dev/null |
	    grep -q 'useradd -r -u 41 -g mailman'"
fi

printf 'packaging: %d passed, %d failed, %d skipped\n' "$npass" "$nfail" \
    "$nskip"
[ "$nfail" = 0 ]
