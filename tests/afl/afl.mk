# SPDX-License-Identifier: ISC
# AFL++ on listq-wrapper's argv and stdin (tests/afl/), included by the
# Makefile.
#
#   make afl [AFL_SECONDS=600]   fuzz the wrapper that long (default 600)
#   make afl-smoke               what make check runs: every input of
#                                tests/afl/corpus/ replayed, then
#                                AFL_SMOKE_SECONDS (default 30) of fuzzing
#
# The wrapper is built again with afl-clang-fast, ASan and UBSan under
# $(AFL_DIR), as a development build: the service identity is the
# builder's own and the spool and the lists live under $(AFL_DIR), so it
# needs no privilege (these settings override any given on the command
# line: the fuzzer never writes into a real spool).  tests/afl/afl_main.c
# is its main(): it reads the arguments from the head of the input.

AFL_CC		?= afl-clang-fast
AFL_SECONDS	?= 600
AFL_SMOKE_SECONDS ?= 30
AFL_MAX_SIZE	?= 8192
AFL_DIR		= $(BUILD)/afl
AFL_ROOT	= $(abspath $(AFL_DIR))
AFL_SAN		= -fsanitize=address,undefined -fno-sanitize-recover=all
AFL_CFLAGS	= $(WARN) -g -O2 -fno-omit-frame-pointer $(AFL_SAN) -MMD -MP
AFL_OBJ		= $(WRAPPER_SRC:%.c=$(AFL_DIR)/obj/%.o) \
		  $(AFL_DIR)/obj/tests/afl/afl_main.o
AFL_LIB_OBJ	= $(COMMON_SRC:%.c=$(AFL_DIR)/obj/%.o)

# run.sh makes $(AFL_DIR)/run a directory on tmpfs when it can: the spool
# is fsync'd twice per accepted message, which costs nothing there.
$(AFL_DIR)/%: override SPOOLDIR = $(AFL_ROOT)/run/spool
$(AFL_DIR)/%: override LISTDIR = $(AFL_ROOT)/lists
$(AFL_DIR)/%: override MAX_MESSAGE_SIZE = $(AFL_MAX_SIZE)
$(AFL_DIR)/%: override LISTQ_UID = $(shell id -u)
$(AFL_DIR)/%: override LISTQ_GID = $(shell id -g)
$(AFL_DIR)/%: override MAIL_GIDS = $(shell id -g)

.PHONY: afl afl-build afl-smoke

afl-build: $(AFL_DIR)/listq-wrapper

$(AFL_DIR)/settings: FORCE
	@mkdir -p $(@D)
	@echo '$(SETTINGS)' | cmp -s - $@ || echo '$(SETTINGS)' > $@

$(AFL_DIR)/obj/%.o: %.c $(AFL_DIR)/settings
	@mkdir -p $(@D)
	$(AFL_CC) $(CPPFLAGS) $(SETTINGS) $(AFL_CFLAGS) -c -o $@ $<

# The wrapper's main() becomes a function that afl_main.c calls.
$(AFL_DIR)/obj/wrapper/wrapper.o: wrapper/wrapper.c $(AFL_DIR)/settings
	@mkdir -p $(@D)
	$(AFL_CC) $(CPPFLAGS) $(SETTINGS) -Dmain=listq_wrapper_main \
	    $(AFL_CFLAGS) -c -o $@ $<

$(AFL_DIR)/libcommon.a: $(AFL_LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(AFL_DIR)/listq-wrapper: $(AFL_OBJ) $(AFL_DIR)/libcommon.a
	$(AFL_CC) $(AFL_SAN) -o $@ $^ $(WRAPPER_LIBS)

afl: afl-build
	@BUILD=$(BUILD) AFL_DIR=$(AFL_DIR) AFL_SECONDS=$(AFL_SECONDS) \
	    sh tests/afl/run.sh

afl-smoke: afl-build
	@BUILD=$(BUILD) AFL_DIR=$(AFL_DIR) AFL_SECONDS=$(AFL_SMOKE_SECONDS) \
	    sh tests/afl/run.sh

-include $(shell find $(AFL_DIR)/obj -name '*.d' 2>/dev/null)
