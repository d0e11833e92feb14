# ccprewarm: plain GNU make.  CC CFLAGS LDFLAGS PREFIX DESTDIR are yours to
# override.  SANITIZE=1 builds into build-san/ with ASan+UBSan,
# SANITIZE=thread into build-tsan/ with ThreadSanitizer.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS     = libevent libcurl lmdb jansson yaml-0.1 libcrypto

ifeq ($(SANITIZE),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer (several event loops): CCPREWARM_BIN=build-tsan/ccprewarm
BUILD   ?= build-tsan
SANFLAGS = -fsanitize=thread -fno-omit-frame-pointer
# (gcc sees a false maybe-uninitialized in recipe.c with TSan only)
TSANWARN = -Wno-error=maybe-uninitialized
else
BUILD   ?= build
SANFLAGS =
endif

WARN    = -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wpointer-arith \
          -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(TSANWARN) $(CFLAGS) $(SANFLAGS) \
          $(shell pkg-config --cflags $(PKGS)) -MMD -MP
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)
LIBS    = $(shell pkg-config --libs $(PKGS)) -lpthread

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

LIB_SRC  = $(wildcard common/*.c storage/*.c registry/*.c prewarm/*.c)
CMD_SRC  = $(wildcard cmd/*.c)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
CMD_OBJ  = $(CMD_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: FORCE all test unit bench fuzz format check-format check-deps install clean run deps

all: $(BUILD)/ccprewarm $(UNIT_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The version string goes into common/version.o alone, which is rebuilt
# whenever the string changes (the stamp is rewritten only then).
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(BUILD)/common/version.o: $(BUILD)/version.stamp
$(BUILD)/common/version.o: ALL_CFLAGS += -DCCPREWARM_VERSION='"$(VERSION)"'
FORCE:

$(BUILD)/libccprewarm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ccprewarm: $(CMD_OBJ) $(BUILD)/libccprewarm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(CMD_OBJ) $(BUILD)/libccprewarm.a $(LIBS)

# The configuration loader's test needs cmd/config.c besides the library.
$(BUILD)/tests/test_config: $(BUILD)/tests/unit/test_config.o $(BUILD)/cmd/config.o $(BUILD)/libccprewarm.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libccprewarm.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libccprewarm.a $(LIBS)

# Unit tests only, in this build flavour.
unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do $$t || exit 1; done

# Everything: both build flavours, unit tests under each, integration tests
# against real docker-registry, skopeo and dockerd.  Installs the missing
# test packages first (tests/deps.sh test: as root it installs them, else it
# names them and stops).  Ends with "N passed, N failed".
test:
	@tests/deps.sh test
	@tests/run.sh

# The benchmark, then the soak (SOAK_SECONDS, default 1800; 0 skips it).
bench: all
	@tests/bench/run.sh
	@[ "$${SOAK_SECONDS:-1800}" = 0 ] || tests/bench/soak.sh

# libFuzzer targets (clang); each runs for FUZZ_SECONDS.
FUZZ_SECONDS ?= 30
fuzz:
	@tests/fuzz/run.sh $(FUZZ_SECONDS)

# Installs what is missing (Debian), builds, starts the mirror with defaults.
run: deps all
	@mkdir -p $(or $(DATA),var/data)
	@echo 'ccprewarm: point dockerd at it: add {"registry-mirrors": ["http://127.0.0.1:5000"]}'
	@echo '  (or the --listen address of ARGS) to /etc/docker/daemon.json and restart dockerd;'
	@echo '  containerd and podman: see README.md.  `make install` puts ccprewarm on PATH'
	@echo '  (PREFIX=$(PREFIX)) for the CLI: ccprewarm stats, enroll, ...'
	exec $(BUILD)/ccprewarm serve --data $(or $(DATA),var/data) $(ARGS)

deps:
	@tests/deps.sh run

format:
	clang-format -i $(LIB_SRC) $(CMD_SRC) $(UNIT_SRC) $(FUZZ_SRC) $(wildcard */*.h tests/unit/*.h)

check-format:
	@clang-format --dry-run --Werror $(LIB_SRC) $(CMD_SRC) $(UNIT_SRC) $(FUZZ_SRC) $(wildcard */*.h tests/unit/*.h)

# The layers' one-way includes (common <- storage <- registry <- prewarm <-
# cmd) and private internal.h headers; tests/run.sh runs it too.
check-deps:
	@tests/check-deps.sh

install: $(BUILD)/ccprewarm
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/ccprewarm $(DESTDIR)$(PREFIX)/bin/ccprewarm

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.d)
