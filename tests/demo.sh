#!/bin/bash
# SPDX-License-Identifier: ISC
# tests/demo.sh: what `make demo` runs.  listq end to end on loopback.
#
# Builds a development wrapper and listqd with a spool and lists under
# ./demo/ compiled in (the service identity is whoever runs this), makes a
# list "demo" of 1,000 members, starts the test SMTP sink (listq-sink) and
# listqd, posts 200 messages through the wrapper and watches the 200,000
# copies go out.  It passes only if the sink received every (message,
# member) copy exactly once.  Everything it starts is stopped by pid at the
# end, also on failure or Ctrl-C.  Nothing leaves 127.0.0.1.
#
#	tests/demo.sh		(from the repository root; or `make demo`)
#
# Environment: DEMO_MESSAGES (200), DEMO_MEMBERS (1000), DEMO_TIMEOUT (300 s).
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
demo=$top/demo
bld=build/demo
nmsg=${DEMO_MESSAGES:-200}
nmem=${DEMO_MEMBERS:-1000}
timeout=${DEMO_TIMEOUT:-300}
total=$((nmsg * nmem))
uid=$(id -u) gid=$(id -g)

. tests/lib.sh

sink_pid= listqd_pid= poster_pid= result=FAIL summary=

say() { printf '%s\n' "$*"; }
fail() { say "demo: $*" >&2; exit 1; }

# stop PID: SIGTERM, up to 20 s for it to end, then SIGKILL; reaps it.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -z "$poster_pid" ] || stop "$poster_pid"
	[ -z "$listqd_pid" ] || stop "$listqd_pid"
	[ -z "$sink_pid" ] || stop "$sink_pid"
	if [ "$result" != PASS ]; then
		# After the summary its last line already says FAIL.
		if [ -z "$summary" ]; then
			if [ -s "$demo/listqd.log" ]; then
				say "the end of listqd's log (demo/listqd.log):"
				tail -n 5 "$demo/listqd.log" | sed 's/^/  /'
			fi
			say "FAIL"
		fi
		[ "$rc" != 0 ] || rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say; say "demo: interrupted"; exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
# calc EXPR: floating-point arithmetic (awk, so that bc is not needed).
calc() { awk "BEGIN { print ($1) }"; }
# delivered: copies the sink has accepted (one line per recipient in -L).
delivered() { [ -f "$demo/sink.log" ] && wc -l < "$demo/sink.log" || echo 0; }

say "== listq demo: $nmsg posts to a list of $nmem members, on loopback"

# 1. A development build with the demo's spool and lists compiled in.
say "building into $bld/ (spool $demo/spool, service uid:gid $uid:$gid)"
${MAKE:-make} -s --no-print-directory BUILD="$bld" LISTQ_UID="$uid" \
    LISTQ_GID="$gid" MAIL_GIDS="$gid" SPOOLDIR="$demo/spool" \
    LISTDIR="$demo/lists" wrapper daemon
${MAKE:-make} -s --no-print-directory build/tests/listq-sink

# 2. A fresh ./demo/: spool, one list, listqd's configuration.
rm -rf "$demo"
mkdir -p "$demo/lists/demo" "$demo/msg"
make_spool "$demo/spool" "$uid" "$gid"
chmod 0700 "$demo/lists/demo"
printf 'address = demo@example.org\npost_policy = open\n' > "$demo/lists/demo/config"
printf '# the owners\nowner@example.org\n' > "$demo/lists/demo/owners"
{
	printf '# members of demo\n'
	seq -f 'm%g@members.example' 0 $((nmem - 1))
} > "$demo/lists/demo/members"
# The messages to post, distinct Subject and Message-ID each.
for i in $(seq 1 "$nmsg"); do
	{
		printf 'From: Demo Poster <poster@example.net>\n'
		printf 'To: demo@example.org\n'
		printf 'Subject: demo message %d\n' "$i"
		printf 'Message-ID: <demo-%d.%s@example.net>\n' "$i" "$$"
		printf 'Date: %s\n' "$(LC_ALL=C date -R)"
		printf 'MIME-Version: 1.0\nContent-Type: text/plain\n\n'
		printf 'Hello members, this is demo message %d of %d.\n' \
		    "$i" "$nmsg"
	} > "$demo/msg/$i"
done

# 3. The sink, then listqd.
build/tests/listq-sink -d "$demo/sink" -L "$demo/sink.log" \
    -P "$demo/sink.port" -t 600 > "$demo/sink.out" 2>&1 &
sink_pid=$!
for i in $(seq 1 100); do
	[ -s "$demo/sink.port" ] && break
	kill -0 "$sink_pid" 2>/dev/null || fail "the sink did not start"
	sleep 0.1
done
[ -s "$demo/sink.port" ] || fail "the sink wrote no port in 10 s"
port=$(cat "$demo/sink.port")
say "sink listening on 127.0.0.1:$port (pid $sink_pid), recording to demo/sink/"

cat > "$demo/listq.conf" <<EOF
# listqd configuration of the demo; every other key has its default.
smarthost = 127.0.0.1:$port
EOF
"$bld/listqd" -F -f "$demo/listq.conf" 2>>"$demo/listqd.log" >/dev/null &
listqd_pid=$!
for i in $(seq 1 100); do
	grep -q 'started:' "$demo/listqd.log" 2>/dev/null && break
	kill -0 "$listqd_pid" 2>/dev/null || fail "listqd exited at start"
	sleep 0.1
done
grep -q 'started:' "$demo/listqd.log" || fail "listqd did not start in 10 s"
say "listqd running (pid $listqd_pid, $(grep -o 'started: [0-9]* workers' \
    "$demo/listqd.log" | cut -d' ' -f2) workers), logging to demo/listqd.log"

# 4. Post through the wrapper, as the MTA's alias pipe would, in the
# background; one line in demo/posted per accepted message.
: > "$demo/posted"
t0=$(now)
(
	# Stopped by the cleanup: end after the wrapper in progress.
	trap 'exit 143' TERM
	for i in $(seq 1 "$nmsg"); do
		st=0
		"$bld/listq-wrapper" post demo < "$demo/msg/$i" || st=$?
		if [ "$st" != 0 ]; then
			say "demo: the wrapper refused message $i (exit $st)" >&2
			exit 1
		fi
		echo "$i" >> "$demo/posted"
	done
) &
poster_pid=$!
say "posting $nmsg messages through build/demo/listq-wrapper;" \
    "$total copies to deliver:"

# 5. Progress, once a second, bounded.
last=0 lastt=$t0 shown=$t0 done=0
while :; do
	sleep 0.2
	n=$(delivered) t=$(now)
	if [ "$n" -ge "$total" ] || [ "$(calc "$t - $shown >= 1")" = 1 ]; then
		printf '  %5.1f s  posted %4d / %d   delivered %7d / %d  %7.0f/s\n' \
		    "$(calc "$t - $t0")" "$(wc -l < "$demo/posted")" "$nmsg" \
		    "$n" "$total" "$(calc "($n - $last) / ($t - $lastt)")"
		last=$n lastt=$t shown=$t
	fi
	if [ "$n" -ge "$total" ]; then
		done=1
		break
	fi
	if [ -n "$poster_pid" ] && ! kill -0 "$poster_pid" 2>/dev/null; then
		st=0; wait "$poster_pid" || st=$?
		poster_pid=
		[ "$st" = 0 ] || fail "posting failed"
	fi
	kill -0 "$listqd_pid" 2>/dev/null || fail "listqd died"
	kill -0 "$sink_pid" 2>/dev/null || fail "the sink died"
	[ "$(calc "$t - $t0 < $timeout")" = 1 ] || break
done
[ "$done" = 1 ] || say "demo: not every copy delivered after $timeout s"
[ -z "$poster_pid" ] || wait "$poster_pid" || fail "posting failed"
poster_pid=
# The time of the last copy: when the sink last wrote its recipient log.
t2=$t
[ "$done" = 0 ] || t2=$(stat -c %.9Y "$demo/sink.log" 2>/dev/null || now)
# listqd logs each copy just after its 250: let the log catch up, and let
# a duplicate still in flight show up, then stop listqd and the sink.
for i in $(seq 1 50); do
	[ "$(grep -c 'status=sent' "$demo/listqd.log" || true)" -ge "$total" ] &&
	    break
	sleep 0.1
done
sleep 1
stop "$listqd_pid"; listqd_pid=
stop "$sink_pid"; sink_pid=

# 6. The summary.
secs=$(calc "$t2 - $t0")
sent=$(grep -c 'status=sent' "$demo/listqd.log" || true)
deferred=$(grep -c 'status=deferred' "$demo/listqd.log" || true)
failed=$(grep -c 'status=failed' "$demo/listqd.log" || true)
normal='status=sent|: list=demo, command=post, |: removed$|: session: |: started: |: stopping: |: stopped$'
grep -Ev "$normal" "$demo/listqd.log" > "$demo/listqd.other" || true
other=$(wc -l < "$demo/listqd.other")
grep 'status=sent' "$demo/listqd.log" | grep -o ' delay=[0-9.]*' |
    cut -d= -f2 | sort -n \
    > "$demo/delays"
pct() {	# pct P: the P-th percentile of the sorted delays
	awk -v p="$1" '{ v[NR] = $1 } END {
	    if (NR == 0) { print "-"; exit }
	    i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1
	    printf "%.2f s", v[i] }' "$demo/delays"
}

# Each (subject, recipient) pair the sink recorded, counted across files.
shopt -s nullglob
emls=("$demo"/sink/*.eml)
check=$(awk -v nmsg="$nmsg" -v nmem="$nmem" '
	FNR == 1 { n = 0; env = 1; subj = "" }
	env && /^X-Sink-Rcpt-To: / { r[++n] = substr($0, 17); next }
	env && /^$/ { env = 0; next }
	env { next }
	/^\r?$/ { nextfile }
	/^Subject: / {
		subj = substr($0, 10); sub(/\r$/, "", subj)
		for (i = 1; i <= n; i++) c[subj SUBSEP r[i]]++
		files++
		nextfile
	}
	END {
		for (m = 1; m <= nmsg; m++)
			for (k = 0; k < nmem; k++) {
				key = "demo message " m SUBSEP \
				    "<m" k "@members.example>"
				v = c[key] + 0
				if (v == 0) missing++
				else if (v > 1) dup += v - 1
				else ok++
				delete c[key]
			}
		for (key in c) extra += c[key]
		printf "%d %d %d %d %d\n", ok, missing, dup, extra, files
	}' "${emls[@]}" /dev/null)
set -- $check
ok=$1 missing=$2 dup=$3 extra=$4 files=$5

summary=1
say ""
say "== summary"
printf '  messages        %d posted, to %d members each\n' "$nmsg" "$nmem"
printf '  copies          %d expected, %d received once, %d missing,\n' \
    "$total" "$ok" "$missing"
printf '                  %d duplicates, %d unexpected (in %d SMTP transactions)\n' \
    "$dup" "$extra" "$files"
printf '  listqd log      %d sent, %d deferred, %d failed, %d other lines\n' \
    "$sent" "$deferred" "$failed" "$other"
[ "$other" -eq 0 ] || sed 's/^/                  /' "$demo/listqd.other" | head -n 5
if [ "$done" = 1 ]; then
	printf '  time            %.2f s from the first post to the last copy\n' \
	    "$secs"
else
	printf '  time            %.2f s, then gave up\n' "$secs"
fi
printf '  throughput      %.0f deliveries/s\n' "$(calc "$ok / $secs")"
printf '  latency         p50 %s, p99 %s (arrival in the spool to the 250)\n' \
    "$(pct 50)" "$(pct 99)"
if [ "$ok" -eq "$total" ] && [ "$missing" -eq 0 ] && [ "$dup" -eq 0 ] &&
    [ "$extra" -eq 0 ]; then
	result=PASS
	say "PASS: every one of the $total copies arrived exactly once"
else
	say "FAIL: $missing missing, $dup duplicate, $extra unexpected copies"
	exit 1
fi
