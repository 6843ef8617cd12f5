# SPDX-License-Identifier: ISC
# libFuzzer harnesses (tests/fuzz/fuzz_*.c), included by the Makefile.
#
#   make fuzz FUZZ_SECONDS=600   fuzz each target that long, one after the
#                                other (FUZZ_JOBS=2: two at a time); new
#                                inputs go to $(BUILD)/fuzz/corpus/<target>,
#                                crashes to $(BUILD)/fuzz/crash-<target>-*
#   make fuzz-smoke              what make check runs: every seed and
#                                regression input in tests/fuzz/corpus/,
#                                then FUZZ_SMOKE_SECONDS of fuzzing each
#
# The parsers are built again with clang, -fsanitize=fuzzer-no-link,
# address and undefined, under $(BUILD)/fuzz/; the settings are the
# development ones (the parsers do not use them).

FUZZ_CC		?= clang
FUZZ_SECONDS	?= 30
FUZZ_SMOKE_SECONDS ?= 30
FUZZ_JOBS	?= 1
FUZZ_TARGETS	= entry state config list address bounce
FUZZ_SAN	= -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS	= -std=gnu11 -Wall -Wextra -g -O1 -fno-omit-frame-pointer \
		  $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_LIB_SRC	= $(COMMON_SRC) worker/bounce.c worker/dsn.c worker/msghead.c \
		  worker/probe.c
FUZZ_LIB_OBJ	= $(FUZZ_LIB_SRC:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_BIN	= $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

.PHONY: fuzz fuzz-build fuzz-smoke

fuzz-build: $(FUZZ_BIN)

$(BUILD)/fuzz/obj/%.o: %.c $(BUILD)/settings
	@mkdir -p $(@D)
	$(FUZZ_CC) -D_GNU_SOURCE -Icommon -Iworker \
	    $(call pc_cflags,libbsd-overlay) $(SETTINGS) $(FUZZ_CFLAGS) \
	    -MMD -MP -c -o $@ $<

$(BUILD)/fuzz/libfuzzcommon.a: $(FUZZ_LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/obj/tests/fuzz/fuzz_%.o \
    $(BUILD)/fuzz/libfuzzcommon.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ \
	    $(call pc_libs,libbsd-overlay)

fuzz: fuzz-build
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) \
	    sh tests/fuzz/run.sh $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) FUZZ_JOBS=2 \
	    sh tests/fuzz/run.sh $(FUZZ_TARGETS)

-include $(shell find $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)
