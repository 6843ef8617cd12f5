#!/bin/sh
# The hardening of built binaries, read with readelf: PIE, full RELRO
# (a GNU_RELRO segment and BIND_NOW), the stack protector
# (__stack_chk_fail imported) and FORTIFY (some __*_chk imported).
# Usage: tests/hardening.sh BINARY...  One line per binary; exit 1 if
# any lacks any of them.
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
exit $fail
