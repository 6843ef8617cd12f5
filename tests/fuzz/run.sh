#!/bin/sh
# SPDX-License-Identifier: ISC
# Runs libFuzzer targets: first over every input in tests/fuzz/corpus/<t>
# (seeds and regression inputs of crashes once found; any failure fails
# the run), then FUZZ_SECONDS of fuzzing each, FUZZ_JOBS targets at a
# time.  One line per target; the fuzzer's log is $BUILD/fuzz/<t>.log.
set -eu

BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_JOBS=${FUZZ_JOBS:-1}
out=$BUILD/fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
# state_save() fsyncs: on tmpfs that costs nothing.
[ -w /dev/shm ] && export TMPDIR=/dev/shm
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

one() {
	t=$1
	bin=$out/fuzz_$t seeds=tests/fuzz/corpus/$t work=$out/corpus/$t
	log=$out/$t.log
	mkdir -p "$work"
	# Replay: every checked-in input, no mutation.
	if ! "$bin" -runs=0 "$seeds" >"$log.replay" 2>&1; then
		echo "fuzz $t: FAILED on a checked-in input (see $log.replay)"
		return 1
	fi
	if ! "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
	    -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix="$out/crash-$t-" "$work" "$seeds" \
	    >"$log" 2>&1; then
		echo "fuzz $t: FAILED (see $log;" \
		    "input $(ls "$out"/crash-"$t"-* 2>/dev/null | head -1))"
		return 1
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	echo "fuzz $t: ${FUZZ_SECONDS}s, ${runs:-?} execs, $cov," \
	    "corpus $(ls "$work" | wc -l), no crash"
}

fail=0
set -- "$@"
while [ $# -gt 0 ]; do
	pids=
	i=0
	while [ $# -gt 0 ] && [ $i -lt "$FUZZ_JOBS" ]; do
		( one "$1" ) &
		pids="$pids $!"
		shift
		i=$((i + 1))
	done
	for p in $pids; do
		wait "$p" || fail=1
	done
done
exit $fail
