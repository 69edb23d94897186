# Ferry build. Quiet unless V=1; generated code and objects go to build/.

CC       ?= cc
BUILD    ?= build
PKGS     := rdkafka libssl libcrypto yaml-0.1 libprotobuf-c libevent \
            libevent_openssl libcurl jansson
WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
            -Wmissing-prototypes -Wstrict-prototypes -Wno-unused-parameter
OPT      ?= -O2 -g
SAN      ?=
CFLAGS   += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN)
CPPFLAGS += -Icommon -I$(BUILD)/gen $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
LDFLAGS  += $(SAN)

ifeq ($(V),1)
Q :=
else
Q := @
endif

PROTOS      := $(wildcard proto/*.proto)
PROTO_C     := $(PROTOS:proto/%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_H     := $(PROTO_C:.c=.h)
COMMON_SRC  := $(wildcard common/*.c)
COMMON_OBJ  := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(PROTO_C:.c=.o)
INGRESS_SRC := $(wildcard producer/*.c)
DELIVER_SRC := $(wildcard consumer/*.c)
CTL_SRC     := $(wildcard ctl/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB         := $(BUILD)/libferry.a
BINS        := $(BUILD)/ferry-ingress $(BUILD)/ferry-deliver \
               $(BUILD)/ferryctl

.PHONY: all deps test test-unit test-e2e demo check style asan bench \
        bench-ingress clean
.SECONDARY:

all: $(BINS)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -Werror,$(CFLAGS)) -c -o $@ $<

$(BUILD)/%.o: %.c $(PROTO_H)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(COMMON_OBJ)
	@echo "  AR      $@"
	$(Q)$(AR) rcs $@ $^

$(BUILD)/ferry-ingress: $(INGRESS_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/ferry-deliver: $(DELIVER_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/ferryctl: $(CTL_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A unit test links the library and, for a program's modules, the objects
# of that program except the one holding main().
PROGRAM_OBJ := $(filter-out %/main.o,$(INGRESS_SRC:%.c=$(BUILD)/%.o) \
                                    $(DELIVER_SRC:%.c=$(BUILD)/%.o))

$(BUILD)/tests/%: tests/unit/%.c $(PROGRAM_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -Iproducer -Iconsumer $(CFLAGS) -o $@ $^ \
	    $(LDLIBS) -lcmocka

# ferryctl's unit tests link ctl's objects instead of the daemons'.
CTL_OBJ := $(filter-out %/main.o,$(CTL_SRC:%.c=$(BUILD)/%.o))

$(BUILD)/tests/test_ctl_%: tests/unit/test_ctl_%.c $(CTL_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -Ictl $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

deps:
	$(Q)scripts/install-deps

# The two commands of the README. Both install what is missing first, then
# build in a second make, so pkg-config sees the freshly installed packages.
test: deps
	$(Q)$(MAKE) --no-print-directory test-unit test-e2e

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo

test-unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "  UNIT    $$t"; $$t; done

test-e2e: all
	$(Q)python3 -m pytest -q tests/e2e

# Benchmarks print tables; they are never part of `make test`.
bench: bench-ingress

bench-ingress: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench-ingress

check:
	$(Q)shellcheck scripts/install-deps scripts/kafka-local .ci/run

style:
	$(Q)command -v clang-format >/dev/null || \
	    { echo "make style: clang-format not found (apt-get install clang-format)"; exit 1; }
	$(Q)clang-format -i common/*.[ch] producer/*.[ch] consumer/*.[ch] \
	    ctl/*.[ch] tests/unit/*.c

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	    all test-unit

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
