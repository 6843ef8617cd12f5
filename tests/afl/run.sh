#!/bin/sh
# SPDX-License-Identifier: ISC
# AFL++ on listq-wrapper's argv and stdin (tests/afl/README.md).
#
# Replays every input of tests/afl/corpus/ (seeds, and every input that
# ever crashed the wrapper: any crash or exit code outside 0, 64, 65, 67,
# 75, 77 fails the run), then runs afl-fuzz for AFL_SECONDS and replays
# what it found.  One summary line per step; afl-fuzz's log is
# $AFL_DIR/afl.log, its findings $AFL_DIR/out/default/.  Fails on a
# crash, and on a hang that still hangs when run again alone.
set -eu

BUILD=${BUILD:-build}
dir=${AFL_DIR:-$BUILD/afl}
seconds=${AFL_SECONDS:-30}
# afl-fuzz warns about AFL_ variables it does not know.
unset AFL_DIR AFL_SECONDS
bin=$dir/listq-wrapper
seeds=tests/afl/corpus
out=$dir/out
spool=$dir/run/spool
lists=$dir/lists

# Two cores shared with others: no CPU binding, no governor or core
# pattern demands, no status screen.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_NO_AFFINITY=1 AFL_NO_UI=1
export ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0
export UBSAN_OPTIONS=abort_on_error=1:halt_on_error=1:symbolize=0

. tests/lib.sh

if ! command -v afl-fuzz >/dev/null; then
	echo "afl: afl-fuzz not found (make deps installs afl++)"
	exit 1
fi

# The spool: on tmpfs when there is one (two fsyncs per accepted message
# cost nothing there), behind $AFL_DIR/run where the build looks for it.
shm=
cleanup() {
	[ -z "${jpid:-}" ] || kill "$jpid" 2>/dev/null || :
	[ -z "$shm" ] || rm -rf "$shm"
	rm -f "$dir/run"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
# What an interrupted run left.
case $(readlink "$dir/run" 2>/dev/null) in
/dev/shm/listq-afl.*) rm -rf "$(readlink "$dir/run")" ;;
esac
rm -rf "$dir/run" "$lists"
if [ -w /dev/shm ] && shm=$(mktemp -d /dev/shm/listq-afl.XXXXXX); then
	ln -s "$shm" "$dir/run"
else
	shm=
	mkdir "$dir/run"
fi
make_spool "$spool" "$(id -u)" "$(id -g)"
# Lists the corpus and dictionary name; a file and a symbolic link are
# not lists (67).
mkdir -p "$lists/mylist" "$lists/my.list-2" "$lists/a0"
: >"$lists/afile"
ln -s mylist "$lists/alink"

# replay DIR WHAT: runs every input of DIR; one line of exit codes.
replay() {
	codes= bad=0 n=0
	for f in "$1"/*; do
		[ -f "$f" ] || continue
		rc=0
		timeout 10 "$bin" <"$f" >/dev/null 2>&1 || rc=$?
		case $rc in
		0|64|65|67|75|77) ;;
		*) echo "afl $2: $f: exit $rc"; bad=1 ;;
		esac
		codes="$codes $rc"
		n=$((n + 1))
	done
	find "$spool/queue" -type f -delete
	echo "afl $2: $n inputs, exit codes:" $(printf '%s\n' $codes |
	    sort -n | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')
	return $bad
}

# The queue only grows while the fuzzer runs (each accepted input adds
# an entry of at most AFL_MAX_SIZE): emptied every few seconds.
janitor() {
	s=
	trap '[ -z "$s" ] || kill "$s" 2>/dev/null; exit 0' TERM
	end=$(($(date +%s) + seconds + 300))
	while [ "$(date +%s)" -lt "$end" ]; do
		find "$spool/queue" -type f -delete 2>/dev/null || :
		sleep 5 &
		s=$!
		wait "$s" || :
	done
}

replay "$seeds" replay || exit 1

rm -rf "$out"
janitor &
jpid=$!
if ! afl-fuzz -i "$seeds" -o "$out" -x tests/afl/wrapper.dict -m none \
    -t 2000 -V "$seconds" -- "$bin" >"$dir/afl.log" 2>&1; then
	echo "afl: afl-fuzz failed (see $dir/afl.log)"
	exit 1
fi
kill "$jpid" 2>/dev/null || :
wait "$jpid" 2>/dev/null || :
jpid=

afl_stat() { sed -n "s/^$1 *: *//p" "$out/default/fuzzer_stats"; }
crashes=$(afl_stat saved_crashes)
hangs=$(afl_stat saved_hangs)
echo "afl: ${seconds}s, $(afl_stat execs_done) execs ($(afl_stat execs_per_sec)/s)," \
    "corpus $(afl_stat corpus_count) ($(afl_stat corpus_found) new)," \
    "edges $(afl_stat edges_found)/$(afl_stat total_edges)," \
    "crashes $crashes, hangs $hangs"
replay "$out/default/queue" "corpus found" || exit 1

fail=0
for f in "$out"/default/crashes/id:*; do
	[ -f "$f" ] || continue
	echo "afl: crash: $f (fix it, then add it to $seeds/)"
	fail=1
done
# A hang under a loaded machine may be the load: each is run again alone.
for f in "$out"/default/hangs/id:*; do
	[ -f "$f" ] || continue
	rc=0
	timeout 10 "$bin" <"$f" >/dev/null 2>&1 || rc=$?
	if [ "$rc" = 124 ]; then
		echo "afl: hang: $f (still hangs alone)"
		fail=1
	else
		echo "afl: hang: $f ends alone (exit $rc): a loaded machine"
	fi
done
exit $fail
