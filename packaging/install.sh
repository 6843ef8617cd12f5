#!/bin/sh
# SPDX-License-Identifier: ISC
# `make install` and `make uninstall` of listq (run by the Makefile, which
# passes every setting in the environment), and the generators of the
# sysusers.d and tmpfiles.d files.
#
#   install.sh install      the programs, unit files, configuration, manuals
#   install.sh uninstall    removes what install put there (not the spool,
#                           the lists or a changed configuration)
#   install.sh sysusers     prints the sysusers.d file for the settings
#   install.sh tmpfiles     prints the tmpfiles.d file for the settings
#
# Ownership and privilege: with PRIVILEGED=auto (the default) they are set
# when run as root: the wrapper root:<first of MAIL_GIDS>, mode 0750 plus
# cap_setuid,cap_setgid=ep (WRAPPER_MODE=caps) or mode 4750
# (WRAPPER_MODE=setuid), and the spool and list directories created with
# the service uid:gid, mode 0700.  A package build passes PRIVILEGED=no and
# leaves those to its maintainer scripts and to tmpfiles.d; an ordinary
# user gets the same tree and a note of what root would add.
set -eu

: "${DESTDIR:=}" "${PREFIX:=/usr/local}" "${BUILD:=build}"
: "${SBINDIR:=$PREFIX/sbin}" "${LIBEXECDIR:=$PREFIX/lib/listq}"
: "${SYSCONFDIR:=$PREFIX/etc}" "${MANDIR:=$PREFIX/share/man}"
: "${DOCDIR:=$PREFIX/share/doc/listq}"
: "${UNITDIR:=$PREFIX/lib/systemd/system}"
: "${TMPFILESDIR:=$PREFIX/lib/tmpfiles.d}"
: "${SYSUSERSDIR:=$PREFIX/lib/sysusers.d}"
: "${SPOOLDIR:=/var/spool/listq}" "${LISTDIR:=/var/lib/listq/lists}"
: "${LISTQ_USER:=$(id -un)}" "${LISTQ_UID:=$(id -u)}" "${LISTQ_GID:=$(id -g)}"
: "${MAIL_GIDS:=65534}" "${WRAPPER_MODE:=caps}" "${PRIVILEGED:=auto}"

here=$(dirname "$0")
mail_gid=${MAIL_GIDS%%,*}
listparent=$(dirname "$LISTDIR")
d=$DESTDIR

say() { printf 'listq: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

case $WRAPPER_MODE in
caps|setuid) ;;
*) die "WRAPPER_MODE=$WRAPPER_MODE: caps or setuid" ;;
esac
case $PRIVILEGED in
auto) [ "$(id -u)" = 0 ] && PRIVILEGED=yes || PRIVILEGED=no ;;
yes|no) ;;
*) die "PRIVILEGED=$PRIVILEGED: auto, yes or no" ;;
esac

sysusers() {
	cat <<EOF
# listq's service user, whose uid and gid are compiled into the wrapper,
# listqd and listq: these ids must be the ones the programs were built with
# (LISTQ_USER, LISTQ_UID, LISTQ_GID).  Debian: "list" 38:38, reserved by
# base-passwd for mailing list managers; Fedora: "mailman" 41:41.
# Written by packaging/install.sh from the build settings.
g $LISTQ_USER $LISTQ_GID -
u $LISTQ_USER $LISTQ_UID:$LISTQ_GID "Mailing List Manager" - /usr/sbin/nologin
EOF
}

# The tmpfiles.d file: the spool layout every program checks (tmp,
# queue/00..ff, hold, corrupt) and the list directory.
tmpfiles() {
	o=$LISTQ_USER
	cat <<EOF
# The spool and list directories of listq: service uid:gid, mode 0700,
# never aged (listqd removes stale tmp/ files itself; the rest is accepted
# mail).  The layout is the one the wrapper and listqd check at each start.
# Written by packaging/install.sh from SPOOLDIR, LISTDIR and LISTQ_USER.
d $listparent - - - -
d $LISTDIR 0700 $o $o -
d $SPOOLDIR 0700 $o $o -
d $SPOOLDIR/tmp 0700 $o $o -
d $SPOOLDIR/hold 0700 $o $o -
d $SPOOLDIR/corrupt 0700 $o $o -
d $SPOOLDIR/moderation 0700 $o $o -
d $SPOOLDIR/queue 0700 $o $o -
EOF
	for b in $(seq 0 255); do
		printf 'd %s/queue/%02x 0700 %s %s -\n' "$SPOOLDIR" "$b" "$o" "$o"
	done
}

# The unit with this install's paths and user (the file in packaging/ has
# Debian's).
unit() {
	sed -e "s|^User=.*|User=$LISTQ_USER|" \
	    -e "s|^Group=.*|Group=$LISTQ_USER|" \
	    -e "s|^ReadWritePaths=.*|ReadWritePaths=$SPOOLDIR $LISTDIR|" \
	    -e "s|/usr/sbin/|$SBINDIR/|g" \
	    -e "s|/usr/share/doc/listq|$DOCDIR|g" \
	    -e "s|/var/spool/listq|$SPOOLDIR|g" "$1"
}

# The programs built: listq (the admin tool) only where it was built.
programs() {
	for p in listqd listq; do
		[ -f "$BUILD/$p" ] && echo "$p"
	done
	return 0
}

mans() {
	for m in "$here"/../doc/*.5 "$here"/../doc/*.8; do
		[ -f "$m" ] && echo "$m"
	done
	return 0
}

# The units: listq-metrics.* run `listq metrics`, so only where listq is.
units() {
	echo "$here/systemd/listqd.service"
	if [ -f "$BUILD/listq" ] || [ "${1:-}" = all ]; then
		echo "$here/systemd/listq-metrics.service"
		echo "$here/systemd/listq-metrics.timer"
	fi
}

# make_spool: the spool and list directories, as root only.
make_spool() {
	[ -d "$d$listparent" ] || install -d -m 0755 "$d$listparent"
	install -d -o "$LISTQ_UID" -g "$LISTQ_GID" -m 0700 "$d$LISTDIR" \
	    "$d$SPOOLDIR" "$d$SPOOLDIR/tmp" "$d$SPOOLDIR/hold" \
	    "$d$SPOOLDIR/corrupt" "$d$SPOOLDIR/moderation" "$d$SPOOLDIR/queue"
	for b in $(seq 0 255); do printf '%s/queue/%02x\n' "$d$SPOOLDIR" "$b"; done |
	    xargs install -d -o "$LISTQ_UID" -g "$LISTQ_GID" -m 0700
}

do_install() {
	[ -f "$BUILD/listq-wrapper" ] && [ -f "$BUILD/listqd" ] ||
	    die "$BUILD/listq-wrapper and $BUILD/listqd are not built"
	if [ "$PRIVILEGED" = yes ] && [ "$LISTQ_UID" = 0 ]; then
		say "warning: the service identity compiled in is root;" \
		    "a real install wants e.g. LISTQ_USER=list LISTQ_UID=38" \
		    "LISTQ_GID=38 (see packaging/README.md)" >&2
	fi
	install -d -m 0755 "$d$SBINDIR" "$d$LIBEXECDIR" "$d$SYSCONFDIR/listq" \
	    "$d$UNITDIR" "$d$TMPFILESDIR" "$d$SYSUSERSDIR" "$d$DOCDIR"
	for p in $(programs); do
		install -m 0755 "$BUILD/$p" "$d$SBINDIR/$p"
	done

	w=$d$LIBEXECDIR/listq-wrapper
	rm -f "$w"
	install -m 0700 "$BUILD/listq-wrapper" "$w"
	if [ "$PRIVILEGED" = yes ]; then
		# chown clears file capabilities: owner, then mode, then caps.
		chown "root:$mail_gid" "$w"
		if [ "$WRAPPER_MODE" = caps ]; then
			chmod 0750 "$w"
			setcap cap_setuid,cap_setgid=ep "$w" ||
			    die "setcap failed on $w (no xattrs on this file" \
			        "system?); WRAPPER_MODE=setuid installs it" \
			        "setuid root instead"
		else
			chmod 4750 "$w"
		fi
	else
		chmod 0750 "$w"
	fi

	# The configuration: the commented example, never over the admin's.
	if [ -e "$d$SYSCONFDIR/listq/listq.conf" ]; then
		say "kept $d$SYSCONFDIR/listq/listq.conf"
	else
		install -m 0644 "$here/listq.conf" "$d$SYSCONFDIR/listq/listq.conf"
	fi

	for u in $(units); do
		unit "$u" > "$d$UNITDIR/$(basename "$u")"
		chmod 0644 "$d$UNITDIR/$(basename "$u")"
	done
	tmpfiles > "$d$TMPFILESDIR/listq.conf"
	sysusers > "$d$SYSUSERSDIR/listq.conf"
	chmod 0644 "$d$TMPFILESDIR/listq.conf" "$d$SYSUSERSDIR/listq.conf"

	for m in $(mans); do
		s=${m##*.}
		install -d -m 0755 "$d$MANDIR/man$s"
		install -m 0644 "$m" "$d$MANDIR/man$s/$(basename "$m")"
	done
	for f in README.md SECURITY.md doc/*guide*.md; do
		[ -f "$here/../$f" ] &&
		    install -m 0644 "$here/../$f" "$d$DOCDIR/$(basename "$f")"
	done

	if [ "$PRIVILEGED" = yes ]; then
		make_spool
		say "installed; the wrapper is $w (root:$mail_gid," \
		    "$(stat -c %a "$w"), $WRAPPER_MODE)"
		[ -n "$d" ] || say "then: systemctl daemon-reload &&" \
		    "systemctl enable --now listqd"
	else
		say "installed without ownership and privilege (not root, or" \
		    "PRIVILEGED=no). A root install would also:"
		if [ "$WRAPPER_MODE" = caps ]; then
			say "  chown root:$mail_gid $w; chmod 0750;" \
			    "setcap cap_setuid,cap_setgid=ep"
		else
			say "  chown root:$mail_gid $w; chmod 4750"
		fi
		say "  create $d$SPOOLDIR (tmp, queue/00..ff, hold, corrupt)" \
		    "and $d$LISTDIR, owner $LISTQ_UID:$LISTQ_GID, mode 0700" \
		    "(systemd-tmpfiles --create listq.conf does the same)"
	fi
}

do_uninstall() {
	rm -f "$d$LIBEXECDIR/listq-wrapper" "$d$SBINDIR/listqd" \
	    "$d$SBINDIR/listq" "$d$TMPFILESDIR/listq.conf" \
	    "$d$SYSUSERSDIR/listq.conf"
	for u in $(units all); do
		rm -f "$d$UNITDIR/$(basename "$u")"
	done
	for m in $(mans); do
		rm -f "$d$MANDIR/man${m##*.}/$(basename "$m")"
	done
	rm -rf "$d$DOCDIR"
	# The configuration goes only if unchanged.
	if cmp -s "$here/listq.conf" "$d$SYSCONFDIR/listq/listq.conf"; then
		rm -f "$d$SYSCONFDIR/listq/listq.conf"
	fi
	rmdir "$d$SYSCONFDIR/listq" "$d$LIBEXECDIR" 2>/dev/null || true
	say "uninstalled; kept $d$SPOOLDIR and $d$LISTDIR (queued mail and" \
	    "lists) and any changed $d$SYSCONFDIR/listq/listq.conf"
}

case ${1:-} in
install)	do_install ;;
uninstall)	do_uninstall ;;
sysusers)	sysusers ;;
tmpfiles)	tmpfiles ;;
*)		die "usage: install.sh install|uninstall|sysusers|tmpfiles" ;;
esac
