# numatier: top-level build.  `make`, `make check`, `make install`, `make deps`.
VERSION    := 0.1.0
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
DESTDIR    ?=

BUILD      ?= build
CC         ?= cc
PKG_CONFIG ?= pkg-config

# Libraries with a .pc file come through pkg-config (libpfm4 ships none).
PC_LIBS    := libsystemd json-c inih numa sqlite3
PC_CFLAGS  := $(shell $(PKG_CONFIG) --cflags $(PC_LIBS) 2>/dev/null)
PC_LDLIBS  := $(shell $(PKG_CONFIG) --libs $(PC_LIBS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

WARNINGS   := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
              -Wformat=2 -Wpointer-arith -Wcast-align -Wwrite-strings \
              -Wundef -Wvla -Wnull-dereference -Wimplicit-fallthrough
ifeq ($(CI),true)
WARNINGS   += -Werror
endif
ifeq ($(WERROR),1)
WARNINGS   += -Werror
endif

OPT        ?= -O2 -g
CFLAGS     ?= $(OPT)
ALL_CFLAGS := -std=gnu11 $(WARNINGS) -D_GNU_SOURCE -DNT_VERSION=\"$(VERSION)\" \
              -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE \
              -Iinclude $(PC_CFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS := -pie -Wl,-z,relro,-z,now $(LDFLAGS)
LDLIBS_ALL := $(PC_LDLIBS) -lpfm -lm

# Everything but main.c goes into one static library that the daemon, the
# CLI and the unit tests link, so tests exercise the very same objects.
LIB_SRCS   := $(filter-out daemon/main.c,$(wildcard daemon/*.c)) $(wildcard policy/*.c)
CLI_SRCS   := $(wildcard cli/*.c)
TEST_SRCS  := $(wildcard tests/unit/test-*.c)
BENCH_SRCS := $(wildcard bench/bench-*.c)

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_BINS  := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
LIBNT      := $(BUILD)/libnumatier.a

.PHONY: all check check-all check-unit check-integration check-asan install deps clean bench bench-host demo run
all: $(BUILD)/numatierd $(BUILD)/numatierctl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBNT): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/numatierd: $(BUILD)/daemon/main.o $(LIBNT)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $^ $(LDLIBS_ALL) -o $@

$(BUILD)/numatierctl: $(CLI_OBJS) $(LIBNT)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $^ $(LDLIBS_ALL) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(LIBNT)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) $(ALL_LDFLAGS) $< $(LIBNT) $(LDLIBS_ALL) $(CMOCKA_LIBS) -o $@

# tests/unit/test-cli-X.c tests cli/X.c, which is not in libnumatier: link
# that one object too (make picks this rule over the one above: shorter stem).
$(BUILD)/tests/test-cli-%: tests/unit/test-cli-%.c $(BUILD)/cli/%.o $(LIBNT)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Icli $(CMOCKA_CFLAGS) $(ALL_LDFLAGS) $< $(BUILD)/cli/$*.o $(LIBNT) $(LDLIBS_ALL) $(CMOCKA_LIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIBNT)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $< $(LIBNT) $(LDLIBS_ALL) -o $@

# Benchmarks, not timed tests: each prints a Markdown table row; the table
# lands in $(BUILD)/bench-results.md for the README's performance section.
# Then the VM benchmarks (tests/vm/bench/: convergence against numad, NUMA
# balancing and nothing; numatierd's mover against migratepages) append
# their tables; they boot about ten QEMU/TCG guests, 10-15 minutes.
# `make bench-host` runs only the first part, `make bench-vm` the second.
bench: bench-host
	@$(MAKE) --no-print-directory bench-vm

bench-host: $(BENCH_BINS)
	@bench/run.sh $(BUILD)/bench-results.md $(BENCH_BINS)

# `make demo`: a newcomer's tour in the tiered guest (tests/vm/demo/).
demo:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory demo-run

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(BUILD)/daemon/main.d

# ---- tests -----------------------------------------------------------------
check-unit: $(TEST_BINS)
	@tests/run-unit.sh $(TEST_BINS)

check-integration: all
	@tests/integration/run.sh $(BUILD)

# Builds use every core; the tests themselves run one suite at a time (the
# VM scenarios time the daemon's answers, and a second guest or a compiler
# beside them skews that).
NPROC      := $(shell nproc 2>/dev/null || echo 1)
ASAN_VARS  := BUILD=build-asan LDFLAGS="-fsanitize=address,undefined" \
              OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# The same unit and host tests again under AddressSanitizer and UBSan.
check-asan:
	$(MAKE) $(ASAN_VARS) -j$(NPROC) all $(TEST_BINS:$(BUILD)/%=build-asan/%)
	$(MAKE) $(ASAN_VARS) check-unit check-integration

# `make check` first installs what the tests need, then runs them in a fresh
# make so pkg-config sees libraries that were just installed.
check:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory check-all

check-all:
	@$(MAKE) --no-print-directory -j$(NPROC) all $(TEST_BINS) $(VM_WORKLOADS)
	@$(MAKE) --no-print-directory check-unit
	@$(MAKE) --no-print-directory check-integration
	@$(MAKE) --no-print-directory check-asan
	@$(MAKE) --no-print-directory check-vm

# The main job for now: the daemon in the foreground with the shipped config.
run:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/numatierd --config etc/numatierd.conf

-include tests/vm/vm.mk

# ---- install ---------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/numatier/numatierd.conf.d \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BUILD)/numatierd $(DESTDIR)$(SBINDIR)/numatierd
	install -m 0755 $(BUILD)/numatierctl $(DESTDIR)$(BINDIR)/numatierctl
	install -m 0644 etc/numatierd.conf $(DESTDIR)$(SYSCONFDIR)/numatier/numatierd.conf
	sed 's|/usr/local/sbin/numatierd|$(SBINDIR)/numatierd|' contrib/systemd/numatierd.service \
	    > $(DESTDIR)$(UNITDIR)/numatierd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/numatierd.service
	install -m 0644 doc/numatierd.8 doc/numatierctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 doc/numatierd.conf.5 $(DESTDIR)$(MANDIR)/man5/

deps:
	@contrib/install-deps.sh
	@$(MAKE) --no-print-directory vm-deps

clean:
	rm -rf build build-asan
