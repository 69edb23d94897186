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
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread -lm
LDFLAGS  += $(SAN)

# ferry_build_info's version label: the commit the binaries are built from.
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)

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
CONTROLLER_SRC := $(wildcard controller/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB         := $(BUILD)/libferry.a
BINS        := $(BUILD)/ferry-ingress $(BUILD)/ferry-deliver \
               $(BUILD)/ferryctl $(BUILD)/ferry-controller

.PHONY: all deps test test-unit test-e2e demo check style asan bench \
        bench-ingress clean fuzz test-fuzz test-ops install test-deploy \
        test-integration
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

# Rewritten only when the version changes, so a commit rebuilds metrics.o.
.PHONY: FORCE
$(BUILD)/gen/version.h: FORCE
	@mkdir -p $(@D)
	$(Q)line='#define FERRY_VERSION "$(VERSION)"'; \
	    [ "$$(cat $@ 2>/dev/null)" = "$$line" ] || echo "$$line" > $@

$(BUILD)/common/metrics.o: $(BUILD)/gen/version.h

$(LIB): $(COMMON_OBJ)
	@echo "  AR      $@"
	$(Q)$(AR) rcs $@ $^

$(BUILD)/ferry-ingress: $(INGRESS_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/ferry-deliver: $(DELIVER_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ferryctl's DNS lookups use libresolv, which is part of libc6-dev.
$(BUILD)/ferryctl: $(CTL_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lresolv

$(BUILD)/ferry-controller: $(CONTROLLER_SRC:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# librdkafka's mock cluster behind a command line, for tests/integration.
$(BUILD)/ferry-mock-kafka: tests/integration/mock_kafka.c
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

# A unit test links the library and, for a program's modules, the objects
# of that program except the one holding main().
PROGRAM_OBJ := $(filter-out %/main.o,$(INGRESS_SRC:%.c=$(BUILD)/%.o) \
                                    $(DELIVER_SRC:%.c=$(BUILD)/%.o))

$(BUILD)/tests/%: tests/unit/%.c $(PROGRAM_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -Iproducer -Iconsumer $(CFLAGS) -o $@ $^ \
	    $(LDLIBS) -lcmocka

# The controller's unit tests link the controller's objects. A static
# pattern rule, so make never falls back to the rule above for them.
CONTROLLER_OBJ   := $(filter-out %/main.o,$(CONTROLLER_SRC:%.c=$(BUILD)/%.o))
CONTROLLER_TESTS := $(filter $(BUILD)/tests/test_controller_%,$(UNIT_BIN))

$(CONTROLLER_TESTS): $(BUILD)/tests/%: tests/unit/%.c $(CONTROLLER_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -Icontroller $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# ferryctl's unit tests link ctl's objects instead of the daemons'.
CTL_OBJ := $(filter-out %/main.o,$(CTL_SRC:%.c=$(BUILD)/%.o))

$(BUILD)/tests/test_ctl_%: tests/unit/test_ctl_%.c $(CTL_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -Ictl $(CFLAGS) -o $@ $^ $(LDLIBS) -lresolv \
	    -lcmocka

deps:
	$(Q)scripts/install-deps

# The two commands of the README. Both install what is missing first, then
# build in a second make, so pkg-config sees the freshly installed packages.
test: deps
	$(Q)$(MAKE) --no-print-directory test-unit test-integration test-fuzz \
	    test-ops test-deploy test-e2e
	$(Q)$(MAKE) --no-print-directory test-asan-e2e \
	    ASAN_E2E="$(ASAN_E2E_QUICK)"

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo

test-unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "  UNIT    $$t"; $$t; done

# The daemons against librdkafka's mock cluster, with injected broker faults.
test-integration: all $(BUILD)/ferry-mock-kafka
	$(Q)python3 -m pytest -q tests/integration

test-e2e: all
	$(Q)python3 -m pytest -q tests/e2e

# The alert rules and the dashboard under deploy/: promtool checks and
# unit tests, and their metric names against docs/metrics.md.
test-ops:
	$(Q)python3 -m pytest -q tests/ops

# The Helm chart, the systemd units and `make install`: helm lint and
# helm template per region, each daemon's --check-config on the rendered
# configuration, and an install into a temporary DESTDIR. HELM is the
# binary scripts/install-deps builds (keep the version in step).
HELM ?= $(CURDIR)/.cache/helm-v4.3.2/bin/helm

test-deploy: all
	$(Q)FERRY_HELM=$(HELM) python3 -m pytest -q tests/deploy

# Installs the programs, the example configuration, the systemd units and
# the deployment guide under DESTDIR/PREFIX. With PREFIX=/usr the
# configuration directory is /etc, otherwise PREFIX/etc.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/ferry
UNITS_IN   := $(wildcard deploy/systemd/*.service.in)

install: all
	@echo "  INSTALL $(DESTDIR)$(PREFIX)"
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/ferry \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	$(Q)install -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	$(Q)install -m 644 deploy/config/ferry.example.yaml \
	    $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.example.yaml
	$(Q)install -m 644 docs/deploy.md $(DESTDIR)$(DOCDIR)/deploy.md
	$(Q)for unit in $(UNITS_IN); do \
	    name=$$(basename $$unit .in); \
	    sed -e 's|@bindir@|$(BINDIR)|g' -e 's|@sysconfdir@|$(SYSCONFDIR)|g' \
	        -e 's|@docdir@|$(DOCDIR)|g' $$unit >$(DESTDIR)$(UNITDIR)/$$name.tmp && \
	    chmod 644 $(DESTDIR)$(UNITDIR)/$$name.tmp && \
	    mv $(DESTDIR)$(UNITDIR)/$$name.tmp $(DESTDIR)$(UNITDIR)/$$name || exit 1; \
	done

# A libFuzzer target over the SMTP session, built with clang and
# AddressSanitizer. `make fuzz` runs it for FUZZ_TIME seconds and keeps
# what it finds in build/fuzz/corpus; `make test` runs FUZZ_RUNS inputs
# from the seeds, which are made from the dialogues in tests/smtp.
FUZZ_CC   ?= clang
FUZZ_DIR  := $(BUILD)/fuzz
FUZZ_BIN  := $(FUZZ_DIR)/fuzz_smtp_session
FUZZ_SRC  := tests/fuzz/fuzz_smtp_session.c producer/smtp_session.c \
             producer/smtp_data.c producer/smtp_address.c \
             producer/smtp_auth.c producer/ingress_metrics.c $(COMMON_SRC)
FUZZ_TIME ?= 600
FUZZ_RUNS ?= 50000
FUZZ_LEN  ?= 16384

$(FUZZ_BIN): $(FUZZ_SRC) $(PROTO_C) $(PROTO_H) common/*.h producer/*.h \
             $(BUILD)/gen/version.h
	@mkdir -p $(@D)
	@echo "  FUZZCC  $@"
	$(Q)$(FUZZ_CC) $(CPPFLAGS) -Iproducer -std=c11 -D_GNU_SOURCE -g -O1 \
	    -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	    -o $@ $(FUZZ_SRC) $(PROTO_C) $(LDLIBS)

$(FUZZ_DIR)/seeds: tests/fuzz/make_seeds.py $(wildcard tests/smtp/*.txt)
	$(Q)rm -rf $@ && python3 tests/fuzz/make_seeds.py $@ \
	    $(wildcard tests/smtp/*.txt)

fuzz: $(FUZZ_BIN) $(FUZZ_DIR)/seeds
	@mkdir -p $(FUZZ_DIR)/corpus
	$(Q)$(FUZZ_BIN) -max_total_time=$(FUZZ_TIME) -max_len=$(FUZZ_LEN) \
	    -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds

test-fuzz: $(FUZZ_BIN) $(FUZZ_DIR)/seeds
	@echo "  FUZZ    $(FUZZ_BIN) ($(FUZZ_RUNS) runs)"
	$(Q)rm -rf $(FUZZ_DIR)/smoke && mkdir -p $(FUZZ_DIR)/smoke
	$(Q)$(FUZZ_BIN) -runs=$(FUZZ_RUNS) -max_len=$(FUZZ_LEN) -seed=1 \
	    -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/smoke $(FUZZ_DIR)/seeds \
	    2>$(FUZZ_DIR)/smoke.log || \
	    { tail -40 $(FUZZ_DIR)/smoke.log; exit 1; }
	@tail -1 $(FUZZ_DIR)/smoke.log

# Benchmarks print tables; they are never part of `make test`.
bench: bench-ingress

bench-ingress: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench-ingress

# ferry-deliver's throughput against ses-local; scripts/bench-deliver
# describes the runs and the columns of its table.
.PHONY: bench-deliver
bench-deliver: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench-deliver

# Time from an SES outage in us-east-1 to the first delivery through US
# West, and back; scripts/bench-failover describes the runs.
.PHONY: bench-failover
bench-failover: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench-failover

check:
	$(Q)shellcheck scripts/install-deps scripts/kafka-local .ci/run

style:
	$(Q)command -v clang-format >/dev/null || \
	    { echo "make style: clang-format not found (apt-get install clang-format)"; exit 1; }
	$(Q)clang-format -i common/*.[ch] producer/*.[ch] consumer/*.[ch] \
	    ctl/*.[ch] tests/unit/*.c

ASAN_BUILD := build/asan
ASAN_MAKE  := $(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
              OPT="-O1 -g" \
              SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"

asan:
	$(Q)$(ASAN_MAKE) all test-unit

# The ingress end-to-end tests against the AddressSanitizer and UBSan
# daemons of build/asan (scripts/ferrystack.py takes its binaries from
# $BUILD). Every sanitizer report, leaks at exit included, is written to
# ASAN_LOGS, and any report fails the target, since a daemon keeps
# running after a UBSan report and a leak shows only at exit.
# `make test` runs only ASAN_E2E_QUICK, which takes about 3 minutes with
# the sanitizer build on a loaded 2-CPU machine.
ASAN_LOGS      ?= $(ASAN_BUILD)/sanitizer-logs
# test_ingress_chunking.py is left out: it checks the daemon's memory
# use, which ASan's shadow memory and quarantine inflate several times.
ASAN_E2E       ?= $(filter-out %/test_ingress_chunking.py, \
                      $(wildcard tests/e2e/test_ingress_*.py)) \
                  tests/e2e/test_pipeline.py
ASAN_E2E_QUICK ?= tests/e2e/test_ingress_proxy.py \
                  tests/e2e/test_ingress_threads.py

.PHONY: test-asan-e2e
test-asan-e2e:
	$(Q)$(ASAN_MAKE) all
	$(Q)rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	$(Q)BUILD=$(ASAN_BUILD) \
	    ASAN_OPTIONS="log_path=$(CURDIR)/$(ASAN_LOGS)/asan:detect_leaks=1" \
	    UBSAN_OPTIONS="log_path=$(CURDIR)/$(ASAN_LOGS)/ubsan:print_stacktrace=1" \
	    python3 -m pytest -q $(ASAN_E2E)
	$(Q)if [ -n "$$(ls -A $(ASAN_LOGS))" ]; then \
	    echo "sanitizer reports in $(ASAN_LOGS):"; \
	    head -40 $(ASAN_LOGS)/*; exit 1; fi
	@echo "  ASAN    no sanitizer reports from $(ASAN_E2E)"

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
