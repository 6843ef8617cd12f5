#!/bin/sh
# SPDX-License-Identifier: ISC
# `make deb` and `make rpm`: build a binary package from a copy of the
# source tree under $BUILD/pkg, so that the work tree keeps its layout
# (packaging/debian is copied to debian/ only in the copy).
#
#   packaging/build.sh deb    -> $BUILD/pkg/listq_VERSION_ARCH.deb
#   packaging/build.sh rpm    -> $BUILD/pkg/rpm/RPMS/ARCH/listq-VERSION-1.ARCH.rpm
#
# Prints the path of the package built on its last line.
set -eu

BUILD=${BUILD:-build}
top=$(pwd)
out=$top/$BUILD/pkg
version=$(sed -n 's/^#define LISTQ_VERSION[^"]*"\(.*\)"/\1/p' common/settings.h)
[ -n "$version" ] || { echo "listq: no LISTQ_VERSION in common/settings.h" >&2; exit 1; }

# The files a build needs, no build output.
copy_source() {
	rm -rf "$1"
	mkdir -p "$1"
	tar -C "$top" -cf - --exclude='*.o' --exclude='*.d' \
	    LICENSE Makefile README.md SECURITY.md common wrapper worker doc packaging |
	    tar -C "$1" -xf -
}

deb() {
	src=$out/listq-$version
	copy_source "$src"
	cp -r "$src/packaging/debian" "$src/debian"
	rm -f "$out"/listq_"$version"_*.deb "$out"/listq-dbgsym_"$version"_*.deb \
	    "$out"/listq_"$version"_*.changes "$out"/listq_"$version"_*.buildinfo
	# Rules-Requires-Root: no: no fakeroot needed, even for an ordinary
	# user; dpkg-deb owns every file by root.
	(cd "$src" && dpkg-buildpackage -b -us -uc --no-sign) \
	    > "$out/deb-build.log" 2>&1 || {
		tail -n 30 "$out/deb-build.log" >&2
		echo "listq: dpkg-buildpackage failed (log: $out/deb-build.log)" >&2
		exit 1
	}
	deb=$(ls "$out"/listq_"$version"_*.deb)
	echo "$deb"
}

rpm() {
	topdir=$out/rpm
	rm -rf "$topdir"
	mkdir -p "$topdir/SOURCES" "$topdir/SPECS"
	copy_source "$out/listq-$version"
	tar -C "$out" -czf "$topdir/SOURCES/listq-$version.tar.gz" \
	    "listq-$version"
	rm -rf "$out/listq-$version"
	sed "s/^Version:.*/Version:        $version/" packaging/rpm/listq.spec \
	    > "$topdir/SPECS/listq.spec"
	# --nodeps: the build dependencies are Debian packages here, unknown
	# to rpm's own database.
	rpmbuild -bb --nodeps --define "_topdir $topdir" \
	    "$topdir/SPECS/listq.spec" > "$out/rpm-build.log" 2>&1 || {
		tail -n 30 "$out/rpm-build.log" >&2
		echo "listq: rpmbuild failed (log: $out/rpm-build.log)" >&2
		exit 1
	}
	ls "$topdir"/RPMS/*/listq-"$version"-*.rpm
}

mkdir -p "$out"
case ${1:-} in
deb)	deb ;;
rpm)	rpm ;;
*)	echo "usage: packaging/build.sh deb|rpm" >&2; exit 64 ;;
esac
