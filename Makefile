# SPDX-License-Identifier: ISC
# listq — build, test and demo.
#
#   make                 build everything under build/ (a development build:
#                        the service identity is the builder's own)
#   make check           install missing packages (as root), build, lint, test
#   make LISTQ_UID=38 LISTQ_GID=38 MAIL_GIDS=65534 SPOOLDIR=/var/spool/listq
#                        a packager's build with fixed identities
#
# Every setting below is compiled into the programs; the wrapper reads no
# configuration at run time.

PREFIX		?= /usr/local
LIBEXECDIR	?= $(PREFIX)/lib/listq
SYSCONFDIR	?= $(PREFIX)/etc
SPOOLDIR	?= /var/spool/listq
LISTDIR		?= /var/lib/listq/lists
LISTQ_USER	?= $(shell id -un)
LISTQ_UID	?= $(shell id -u)
LISTQ_GID	?= $(shell id -g)
MAIL_GIDS	?= 65534
MAX_MESSAGE_SIZE ?= 10485760
# Free bytes the wrapper leaves on the spool's file system for listqd;
# by default the larger of 4 x MAX_MESSAGE_SIZE and 32 MiB.
ifeq ($(SPOOL_RESERVE),)
SPOOL_RESERVE	:= $(shell r=$$((4 * $(MAX_MESSAGE_SIZE))); \
		   echo $$((r > 33554432 ? r : 33554432)))
endif

BUILD		?= build
CC		?= cc
PKG_CONFIG	?= pkg-config

WARN		= -std=gnu11 -Wall -Wextra -Werror
HARDEN		= -O2 -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
LDHARDEN	= -pie -Wl,-z,relro,-z,now
SETTINGS	= -DPREFIX='"$(PREFIX)"' -DLIBEXECDIR='"$(LIBEXECDIR)"' \
		  -DSYSCONFDIR='"$(SYSCONFDIR)"' -DSPOOLDIR='"$(SPOOLDIR)"' \
		  -DLISTDIR='"$(LISTDIR)"' -DLISTQ_USER='"$(LISTQ_USER)"' \
		  -DLISTQ_UID=$(LISTQ_UID) -DLISTQ_GID=$(LISTQ_GID) \
		  -DMAIL_GIDS=$(MAIL_GIDS) -DMAX_MESSAGE_SIZE=$(MAX_MESSAGE_SIZE) \
		  -DSPOOL_RESERVE=$(SPOOL_RESERVE)

pc_cflags	= $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pc_libs		= $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

CPPFLAGS	+= -D_GNU_SOURCE -Icommon $(call pc_cflags,libbsd-overlay)
CFLAGS		+= $(WARN) $(HARDEN) -MMD -MP
LDFLAGS		+= $(LDHARDEN)

# make check SANITIZE=address,undefined: everything built with these
# sanitizers, under $(BUILD)-san so that no object is mixed with the
# normal build.  Errors abort the program that has them (and so fail the
# test that ran it).  Leak checking stays off: LeakSanitizer cannot stop
# the world in the set-id wrapper (no ptrace of a non-dumpable process),
# and the daemons exit by signal; make fuzz checks the parsers for leaks.
ifneq ($(SANITIZE),)
ifeq ($(findstring -san,$(BUILD)),)
override BUILD	:= $(BUILD)-san
endif
SAN_FLAGS	= -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
		  -fno-sanitize-recover=all
CFLAGS		+= $(SAN_FLAGS)
LDFLAGS		+= $(SAN_FLAGS)
# tests/preload.so goes before the runtime in LD_PRELOAD on purpose.
# SAN_LOGS (make sanitize-check): reports go to files there, not stderr.
export ASAN_OPTIONS ?= verify_asan_link_order=0:detect_leaks=0:abort_on_error=1$(if $(SAN_LOGS),:log_path=$(SAN_LOGS)/asan)
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1$(if $(SAN_LOGS),:log_path=$(SAN_LOGS)/ubsan)
endif

DMARC_PC	= libcares libpsl gmime-3.0

COMMON_SRC	= common/address.c common/config.c common/durable.c \
		  common/enqueue.c common/entry.c common/list.c common/log.c \
		  common/number.c common/qid.c common/spool.c common/state.c
WRAPPER_SRC	= wrapper/privilege.c wrapper/wrapper.c
# listqd's own SMTP client (worker/smtp_*.c).
SMTP_CLIENT_SRC	= worker/smtp_io.c worker/smtp_reply.c worker/smtp_session.c
LISTQD_SRC	= worker/bounce.c worker/deliver.c worker/dsn.c worker/listqd.c \
		  worker/incoming.c worker/master.c worker/msghead.c \
		  worker/notify.c worker/probe.c worker/relay.c worker/dmarc.c \
		  worker/mitigate.c worker/gate.c worker/schedule.c worker/smtp.c \
		  worker/subscribe.c \
		  worker/worker.c $(SMTP_CLIENT_SRC)
TEST_SRC	= $(wildcard tests/test_*.c) tests/harness.c tests/daemon.c
# The admin path (listq, and its end in listqd): shared by both programs.
ADMIN_CORE_SRC	= worker/admin_ops.c worker/control.c worker/service.c \
		  worker/stats.c worker/moderation.c worker/notice.c worker/token.c
LISTQD_SRC	+= $(ADMIN_CORE_SRC) worker/master_ctl.c worker/worker_ctl.c
LISTQ_SRC	= worker/listq.c worker/admin_check.c worker/admin_lists.c \
		  worker/admin_moderate.c \
		  worker/admin_members.c worker/admin_queue.c \
		  worker/admin_spool.c worker/admin_status.c worker/json.c \
		  $(ADMIN_CORE_SRC)
LISTQ_OBJ	= $(LISTQ_SRC:%.c=$(BUILD)/obj/%.o)
LISTQ_LIBS	= $(call pc_libs,libcap libbsd-overlay gmime-3.0 openssl)
TEST_SRC	+= tests/admin_run.c

COMMON_OBJ	= $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
WRAPPER_OBJ	= $(WRAPPER_SRC:%.c=$(BUILD)/obj/%.o)
LISTQD_OBJ	= $(LISTQD_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ	= $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

WRAPPER_LIBS	= $(call pc_libs,libcap libbsd-overlay)
LISTQD_LIBS	= $(call pc_libs,libsystemd libbsd-overlay openssl) \
		  $(call pc_libs,$(DMARC_PC)) -lresolv
TEST_LIBS	= $(call pc_libs,criterion libbsd-overlay openssl)
SMTP_CLIENT_OBJ	= $(SMTP_CLIENT_SRC:%.c=$(BUILD)/obj/%.o)

# Debian packages that building and testing need (make deps).
DEB_PKGS	= gcc make pkg-config libc6-dev libcap-dev libcap2-bin \
		  libbsd-dev libsystemd-dev libcriterion-dev \
		  libssl-dev openssl cppcheck util-linux passwd \
		  dpkg-dev debhelper lintian rpm fakeroot systemd \
		  systemd-container
# listq's tests parse JSON with python3; lint checks the manuals with man.
DEB_PKGS	+= python3 man-db groff-base
# make fuzz (libFuzzer) and make analyze (clang-tidy, scan-build).
DEB_PKGS	+= clang libclang-rt-14-dev clang-tidy clang-tools
DEB_PKGS	+= afl++
# tests/e2e runs a private Postfix instance (debconf: "No configuration",
# so the system's own instance is never set up or started).
DEB_PKGS	+= postfix
# ... and private Exim 4 and OpenSMTPD instances, unpacked from their
# .debs (they conflict with postfix); the libraries they need that a
# base system lacks.
DEB_PKGS	+= libidn12 libgnutls-dane0 libnsl2 libdb5.3 libevent-2.1-7
DEB_PKGS	+= valgrind	# make valgrind-check
# DMARC (worker/dmarc.c, mitigate.c): c-ares asks both _dmarc names at
# once under one deadline, libpsl finds the organizational domain, GMime
# composes wrapped posts (and the
# moderators' notices, worker/notice.c); tests/test_dmarc.c serves DNS with unbound.
DEB_PKGS	+= libc-ares-dev libpsl-dev publicsuffix libgmime-3.0-dev unbound
# tests/e2e signs list mail with OpenDKIM and verifies it with python3-dkim.
DEB_PKGS	+= opendkim opendkim-tools python3-dkim python3-dnspython

.PHONY: all wrapper daemon admin deps check lint test demo clean FORCE

all: $(BUILD)/listq-wrapper $(BUILD)/listqd $(BUILD)/listq $(BUILD)/tests/listq-tests \
     $(BUILD)/tests/listq-torture \
     $(BUILD)/tests/listq-sink \
     $(BUILD)/tests/preload.so $(BUILD)/tests/faultfs.so \
     $(BUILD)/bench/floor $(BUILD)/bench/spawn

wrapper: $(BUILD)/listq-wrapper
daemon: $(BUILD)/listqd
admin: $(BUILD)/listq

# Rebuild what embeds the settings whenever they change.
$(BUILD)/settings: FORCE
	@mkdir -p $(@D)
	@echo '$(SETTINGS)' | cmp -s - $@ || echo '$(SETTINGS)' > $@

$(BUILD)/obj/wrapper/%.o: wrapper/%.c $(BUILD)/settings
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(SETTINGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/worker/%.o: worker/%.c $(BUILD)/settings
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Iworker \
	    $(call pc_cflags,libsystemd openssl $(DMARC_PC)) \
	    $(SETTINGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/listq-wrapper: $(WRAPPER_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(WRAPPER_LIBS)

$(BUILD)/listqd: $(LISTQD_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LISTQD_LIBS)

$(BUILD)/listq: $(LISTQ_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LISTQ_LIBS)

$(BUILD)/tests/listq-sink: tests/sink/listq-sink.c
	@mkdir -p $(@D)
	$(CC) $(WARN) $(HARDEN) $(call pc_cflags,libbsd-overlay openssl) \
	    $(LDFLAGS) -o $@ $< $(call pc_libs,libbsd-overlay openssl) -lm

# The unit tests of worker/ parts that need no daemon.
TEST_WORKER_OBJ	= $(BUILD)/obj/worker/bounce.o $(BUILD)/obj/worker/dsn.o \
		  $(BUILD)/obj/worker/msghead.o $(BUILD)/obj/worker/probe.o \
		  $(SMTP_CLIENT_OBJ)

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Iworker -Itests $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/listq-tests: $(TEST_OBJ) $(TEST_WORKER_OBJ) $(BUILD)/libcommon.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIBS)

# The torture suite (tests/torture/): the same helpers, its own binary.
TORTURE_SRC	= $(filter-out tests/torture/faultfs.c, \
		  $(wildcard tests/torture/*.c)) tests/harness.c tests/daemon.c \
		  tests/admin_run.c
TORTURE_OBJ	= $(TORTURE_SRC:%.c=$(BUILD)/obj/%.o)

$(BUILD)/tests/listq-torture: $(TORTURE_OBJ) $(BUILD)/libcommon.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIBS)

$(BUILD)/tests/preload.so: tests/preload.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -fPIC -shared -o $@ $<

# The disk torture test's fault injector (tests/torture/faultfs.c).
$(BUILD)/tests/faultfs.so: tests/torture/faultfs.c
	@mkdir -p $(@D)
	$(CC) -D_GNU_SOURCE $(WARN) -O2 -fPIC -shared -o $@ $< -ldl

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pc_libs,libbsd-overlay)

deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q 'ok installed' || echo $$p; done); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then \
	    case " $$missing " in *" postfix "*) echo 'postfix' \
	        'postfix/main_mailer_type select No configuration' | \
	        debconf-set-selections ;; esac; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	    echo "listq: missing packages; run as root:" \
	        "apt-get install --no-install-recommends" $$missing; exit 1; \
	fi

# The wrapper must stay small enough to audit in one sitting.
lint:
	@n=$$(cat $(WRAPPER_SRC) | sed 's://.*$$::' | grep -v '^\s*$$' | \
	    grep -v '^\s*/\?\*' | wc -l); \
	echo "wrapper: $$n code lines (limit 400)"; [ $$n -lt 400 ]
	cppcheck -q --error-exitcode=1 --enable=warning,portability \
	    --inline-suppr -I common -I worker wrapper common worker
	@for p in doc/*.[1-9]; do \
	    w=$$(MANWIDTH=80 man --warnings -l "$$p" 2>&1 >/dev/null); \
	    [ -z "$$w" ] || { echo "$$p: $$w"; exit 1; }; \
	done; echo "manual pages: no warnings"

# PIE, full RELRO, BIND_NOW, stack protector and FORTIFY in what ships.
.PHONY: hardening-check analyze
hardening-check: $(BUILD)/listq-wrapper $(BUILD)/listqd $(BUILD)/listq
	@BUILD=$(BUILD) sh tests/hardening.sh $^

# Static analysis, zero findings: cppcheck (warning, portability,
# performance), clang-tidy (.clang-tidy), scan-build (tests/analyze.sh).
analyze:
	@BUILD=$(BUILD) sh tests/analyze.sh

test: all
	@BUILD=$(BUILD) tests/run.sh

# tests/torture/: crash, faults, disk and scale at full size (long; as
# root); make check runs the same tests at smoke size (torture-smoke).
.PHONY: torture torture-smoke
torture: all
	@BUILD=$(BUILD) LISTQ_TORTURE=full \
	    SUITE=$(BUILD)/tests/listq-torture tests/run.sh

torture-smoke: all
	@BUILD=$(BUILD) SUITE=$(BUILD)/tests/listq-torture tests/run.sh

# The Criterion suite goes last, so that its synthesis line closes the run.
check: deps
	@$(MAKE) --no-print-directory all lint
	@$(MAKE) --no-print-directory analyze
	@$(MAKE) --no-print-directory packaging-check
	@$(MAKE) --no-print-directory e2e-check
	@$(MAKE) --no-print-directory hardening-check fuzz-smoke afl-smoke
	@$(MAKE) --no-print-directory torture-smoke
	@$(MAKE) --no-print-directory sanitize-check
	@$(MAKE) --no-print-directory valgrind-check
	@$(MAKE) --no-print-directory test

# End to end on a loopback sink, with a spool under ./demo/.
demo: deps
	@tests/demo.sh

# listq against Postfix on this machine, side by side (as root; installs
# postfix "No configuration" and gnuplot when missing): bench/README.md.
.PHONY: bench
bench:
	@BUILD=$(BUILD) python3 bench/vs.py all

# Install, packages (packaging/install.sh and packaging/build.sh do the
# work; packaging/README.md explains the variables).
SBINDIR		?= $(PREFIX)/sbin
MANDIR		?= $(PREFIX)/share/man
DOCDIR		?= $(PREFIX)/share/doc/listq
UNITDIR		?= $(PREFIX)/lib/systemd/system
TMPFILESDIR	?= $(PREFIX)/lib/tmpfiles.d
SYSUSERSDIR	?= $(PREFIX)/lib/sysusers.d
WRAPPER_MODE	?= caps
PRIVILEGED	?= auto
INSTALL_ENV	= BUILD='$(BUILD)' DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' \
		  SBINDIR='$(SBINDIR)' LIBEXECDIR='$(LIBEXECDIR)' \
		  SYSCONFDIR='$(SYSCONFDIR)' MANDIR='$(MANDIR)' \
		  DOCDIR='$(DOCDIR)' UNITDIR='$(UNITDIR)' \
		  TMPFILESDIR='$(TMPFILESDIR)' SYSUSERSDIR='$(SYSUSERSDIR)' \
		  SPOOLDIR='$(SPOOLDIR)' LISTDIR='$(LISTDIR)' \
		  LISTQ_USER='$(LISTQ_USER)' LISTQ_UID='$(LISTQ_UID)' \
		  LISTQ_GID='$(LISTQ_GID)' MAIL_GIDS='$(MAIL_GIDS)' \
		  WRAPPER_MODE='$(WRAPPER_MODE)' PRIVILEGED='$(PRIVILEGED)'

.PHONY: programs install uninstall deb rpm packaging-check

# What install installs: the wrapper, listqd, and listq where the Makefile
# can build it.
programs: $(BUILD)/listq-wrapper $(BUILD)/listqd
	@if $(MAKE) -n --no-print-directory $(BUILD)/listq >/dev/null 2>&1; \
	then $(MAKE) --no-print-directory $(BUILD)/listq; fi

install: programs
	@$(INSTALL_ENV) sh packaging/install.sh install

uninstall:
	@$(INSTALL_ENV) sh packaging/install.sh uninstall

deb:
	@BUILD=$(BUILD) sh packaging/build.sh deb

rpm:
	@BUILD=$(BUILD) sh packaging/build.sh rpm

# tests/packaging.sh: the .deb (built, linted, installed, purged), the
# RPM, make install; what needs root is skipped, saying so, otherwise.
packaging-check:
	@BUILD=$(BUILD) sh tests/packaging.sh

# tests/e2e: end to end through private Postfix, Exim 4 and OpenSMTPD
# instances on loopback (as root; skipped, saying so, otherwise).  Each
# round ends with its counts: "e2e: N passed, N failed" (Postfix), "e2e
# exim: ...", "e2e opensmtpd: ...".
.PHONY: e2e-check
e2e-check:
	@BUILD=$(BUILD) sh tests/e2e/run.sh

clean:
	rm -rf $(BUILD) demo

FORCE:

# Keep objects that only a pattern rule names.
.SECONDARY:

# make fuzz, make fuzz-smoke: libFuzzer harnesses (tests/fuzz/).
-include tests/fuzz/fuzz.mk
# make afl, make afl-smoke: AFL++ on the wrapper (tests/afl/).
-include tests/afl/afl.mk

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# make sanitize-check: the Criterion suite again, with everything built
# with AddressSanitizer and UndefinedBehaviorSanitizer under $(BUILD)-san
# and run against a check root of its own, so that it may follow make
# test (tests/sanitize.sh); a report from any program fails it.
# make valgrind-check: listqd (its workers too), listq and the
# unprivileged wrapper runs of the integration tests under valgrind's
# memcheck (tests/valgrind.sh); any error or definite leak fails it.
.PHONY: sanitize-check valgrind-check
sanitize-check:
	@MAKE='$(MAKE)' sh tests/sanitize.sh

valgrind-check: all
	@BUILD=$(BUILD) sh tests/valgrind.sh
