# SPDX-License-Identifier: ISC
# Shell functions shared by tests/run.sh and bench/enqueue: the test users
# and the root-installed wrapper builds.  Sourced, never run.

# ensure_user NAME GROUP: a system user whose primary group is GROUP.
ensure_user() {
	getent group "$2" >/dev/null || groupadd --system "$2"
	id -u "$1" >/dev/null 2>&1 || useradd --system -g "$2" \
	    -d /nonexistent -s /usr/sbin/nologin "$1"
}

gid_of() { getent group "$1" | cut -d: -f3; }

# make_test_users: the service user, an MTA user in the allowed group
# (with a supplementary group the wrapper must shed), a second MTA user
# whose real gid is another allowed group (MAIL_GIDS holds both), and a
# stranger that may execute the wrapper (the MTA group is among its
# supplementary groups) but whose real gid is not allowed.  Sets svc_uid
# svc_gid mta_uid mail_gid mta2_uid mail2_gid.
make_test_users() {
	ensure_user listq-tsvc listq-tsvc
	ensure_user listq-tmta listq-tmail
	ensure_user listq-tmta2 listq-tmail2
	ensure_user listq-tstranger listq-tother
	usermod -a -G listq-tother listq-tmta
	usermod -a -G listq-tmail listq-tmta2
	usermod -a -G listq-tmail listq-tstranger
	svc_uid=$(id -u listq-tsvc); svc_gid=$(gid_of listq-tsvc)
	mta_uid=$(id -u listq-tmta); mail_gid=$(gid_of listq-tmail)
	mta2_uid=$(id -u listq-tmta2); mail2_gid=$(gid_of listq-tmail2)
}

# build_wrapper BUILDDIR UID GID MAILGIDS SPOOL LISTS [TARGETS]: the
# wrapper, listqd and listq (or only the make TARGETS given), with these
# settings compiled in, and a spool reserve of 1 MiB (LISTQ_TEST_RESERVE)
# that the torture suite's small file systems can hold.
build_wrapper() {
	${MAKE:-make} -s --no-print-directory BUILD="$1" LISTQ_UID="$2" \
	    LISTQ_GID="$3" MAIL_GIDS="$4" SPOOLDIR="$5" LISTDIR="$6" \
	    MAX_MESSAGE_SIZE=${LISTQ_TEST_MAX_SIZE:-10485760} \
	    SPOOL_RESERVE=${LISTQ_TEST_RESERVE:-1048576} \
	    ${7:-wrapper daemon admin}
}

# install_wrapper BUILT DIR MODE: root-owned, group = the MTA group;
# MODE caps (0750 + cap_setuid,cap_setgid=ep) or setuid (4750).
install_wrapper() {
	install -d -o root -g root -m 0755 "$2"
	case $3 in
	caps)	install -o root -g "$mail_gid" -m 0750 "$1" "$2/listq-wrapper"
		setcap cap_setuid,cap_setgid=ep "$2/listq-wrapper" ;;
	setuid)	install -o root -g "$mail_gid" -m 4750 "$1" "$2/listq-wrapper" ;;
	esac
}

# make_spool DIR UID GID: the spool layout of the design, in shell.
make_spool() {
	install -d -o "$2" -g "$3" -m 0700 "$1" "$1/tmp" "$1/queue" \
	    "$1/hold" "$1/corrupt" "$1/moderation"
	for b in $(seq 0 255); do printf '%s/queue/%02x\n' "$1" "$b"; done |
	    xargs install -d -o "$2" -g "$3" -m 0700
}
