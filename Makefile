# Candor build. `make run` and `make test` are the two commands the README promises;
# `make install` puts the release binary, the rule packs and the manual pages under PREFIX.
#
# Layout: every src/<module>/*.c is compiled; src/cli/main.c holds main(). Three flavours:
#   build/            release (-O2, hardening)            -> build/candor
#   build/asan/       tests (ASan+UBSan, fault injection) -> build/asan/candor, unit tests
#   build/fuzz/       clang libFuzzer drivers             -> build/fuzz/fuzz_<name>
# plus build/gen/build_info.h (version, commit, compiled-in share directory) and build/man/
# (the manual pages, written by the release binary from its option tables).

VERSION  := 0.1.0
# Installation directories (GNU conventions); DESTDIR stages an install for packaging.
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
DATADIR  ?= $(PREFIX)/share
SHAREDIR ?= $(DATADIR)/candor
MANDIR   ?= $(DATADIR)/man
DOCDIR   ?= $(DATADIR)/doc/candor
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

CC       ?= cc
PKGS     := sqlite3 libsodium libcrypto libpq libhs yaml-0.1 libutf8proc libmicrohttpd jansson \
            icu-uc icu-i18n libcurl zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -fstack-clash-protection
BASEFLAGS := -std=c17 -D_GNU_SOURCE -Isrc -Ibuild/gen $(WARN) $(PKG_CFLAGS) -MMD -MP
CFLAGS_REL  := $(BASEFLAGS) -O2 -g $(HARDEN)
LDFLAGS_REL := -pie -Wl,-z,relro,-z,now
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
CFLAGS_ASAN := $(BASEFLAGS) -O1 -g $(SAN) -DCD_FAULT_INJECTION
FUZZ_CC  := clang
CFLAGS_FUZZ := -std=c17 -D_GNU_SOURCE -Isrc -Ibuild/gen $(PKG_CFLAGS) -O1 -g -DCD_FUZZING \
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all

SRCS     := $(sort $(wildcard src/*/*.c))
LIB_SRCS := $(filter-out src/cli/main.c,$(SRCS))
# Test-only entry points (src/<module>/testing.c, declared in <module>_testing.h): linked into
# the unit tests, the fuzz drivers and the benchmarks, never into a candor binary.
TEST_ONLY_SRCS := $(wildcard src/*/testing.c)
OBJS_REL := $(SRCS:%.c=build/%.o)
OBJS_ASAN := $(SRCS:%.c=build/asan/%.o)
BIN_OBJS_REL := $(filter-out $(TEST_ONLY_SRCS:%.c=build/%.o),$(OBJS_REL))
BIN_OBJS_ASAN := $(filter-out $(TEST_ONLY_SRCS:%.c=build/asan/%.o),$(OBJS_ASAN))
LIBOBJS_ASAN := $(LIB_SRCS:%.c=build/asan/%.o)
LIBOBJS_FUZZ := $(LIB_SRCS:%.c=build/fuzz/%.o)

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/asan/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=build/bench/%)

DATA ?= data
LISTEN ?= 127.0.0.1:8080

.PHONY: all run test unit e2e fuzz-replay fuzz lint bench bench-build quality deps clean asan \
        man install uninstall FORCE
all: build/candor man

deps:
	@bash scripts/install-deps.sh

build/candor: $(BIN_OBJS_REL)
	$(CC) $(CFLAGS_REL) $(LDFLAGS_REL) -o $@ $^ $(PKG_LIBS)

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_REL) -c -o $@ $<

asan: build/asan/candor
build/asan/candor: $(BIN_OBJS_ASAN)
	$(CC) $(CFLAGS_ASAN) -o $@ $^ $(PKG_LIBS)

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) -c -o $@ $<

build/asan/libcandor.a: $(LIBOBJS_ASAN)
	@rm -f $@
	ar rcs $@ $^

# A unit test links base, its own module and the modules named in UNIT_DEPS_<module>, so a
# module can be tested while another one is half-written.
UNIT_DEPS_store  :=
UNIT_DEPS_calendar :=
UNIT_DEPS_core   := store crypto audit policy outbox
UNIT_DEPS_http   := store crypto core audit policy consent guard auth calendar outbox retention \
                    dsar staff portal
UNIT_DEPS_audit  := store crypto
UNIT_DEPS_merkle := audit store crypto
UNIT_DEPS_consent := store crypto audit policy outbox
UNIT_DEPS_auth   := store crypto audit policy
UNIT_DEPS_staff  := store crypto audit policy
UNIT_DEPS_portal := store crypto audit policy core outbox
UNIT_DEPS_outbox := store crypto audit policy
UNIT_DEPS_retention := store crypto audit policy core outbox calendar
UNIT_DEPS_dsar   := store crypto core audit policy calendar consent outbox retention guard
unit_objs = $(filter $(foreach m,base $(1) $(UNIT_DEPS_$(1)),build/asan/src/$(m)/%),$(LIBOBJS_ASAN))

.SECONDEXPANSION:
build/asan/test_%: tests/unit/test_%.c tests/unit/unit.h $$(call unit_objs,$$*)
	$(CC) $(CFLAGS_ASAN) -Wno-missing-prototypes -Itests/unit -o $@ $< $(call unit_objs,$*) \
	    $(PKG_LIBS) $(shell pkg-config --libs cmocka)

# -MMD here only: the drivers' own link step would leave a .d beside each binary.
build/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_FUZZ) -MMD -MP -c -o $@ $<

build/fuzz/libcandor.a: $(LIBOBJS_FUZZ)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libcandor.a
	$(FUZZ_CC) $(CFLAGS_FUZZ) -fsanitize=fuzzer -o $@ $< build/fuzz/libcandor.a $(PKG_LIBS)

build/bench/%: bench/%.c bench/bench_util.h $(filter-out build/src/cli/main.o,$(OBJS_REL))
	@mkdir -p build/bench
	$(CC) $(CFLAGS_REL) -Wno-missing-prototypes $(LDFLAGS_REL) -o $@ $(filter-out %.h,$^) $(PKG_LIBS)

run: deps build/candor
	@bash scripts/run.sh "$(DATA)" "$(LISTEN)"

unit: build/asan/candor $(UNIT_BINS)

fuzz: $(FUZZ_BINS)

lint:
	@bash scripts/lint.sh

test: deps
	@bash tests/run.sh

# Built by `make test` too, so a benchmark that no longer compiles fails CI, not `make bench`.
bench-build: $(BENCH_BINS)

bench: deps build/candor $(BENCH_BINS)
	@bash bench/run.sh

quality: build/candor
	@bash tests/quality/run.sh

clean:
	rm -rf build

# Rewritten only when its text changes (a new commit, another PREFIX), so only build.o follows.
build/gen/build_info.h: FORCE
	@bash scripts/build-info.sh $@ $(VERSION) $(SHAREDIR)
build/src/cli/build.o build/asan/src/cli/build.o build/fuzz/src/cli/build.o: build/gen/build_info.h

# The manual pages come from the binary's own option tables (`candor help --man`), the source
# --help is printed from, so the two cannot disagree.
man: build/man/.done
build/man/.done: build/candor
	@rm -rf build/man.tmp && mkdir -p build/man.tmp
	./build/candor help --man >build/man.tmp/candor.1
	@for c in $$(./build/candor help --commands); do \
	  echo "./build/candor help --man $$c >build/man/candor-$$c.1"; \
	  ./build/candor help --man $$c >build/man.tmp/candor-$$c.1 || exit 1; \
	done
	@rm -rf build/man && mv build/man.tmp build/man && touch $@

# The unit names the binary and the shared files by their default places; an install under
# another PREFIX gets a unit that names its own.
UNIT_SED := -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/candor|$(SHAREDIR)|g'

install: build/candor build/man/.done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/rules/consent \
	    $(DESTDIR)$(SHAREDIR)/rules/calendars $(DESTDIR)$(SHAREDIR)/rules/dsar \
	    $(DESTDIR)$(SHAREDIR)/rules/retention \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 build/candor $(DESTDIR)$(BINDIR)/candor
	install -m 0644 rules/*.yaml $(DESTDIR)$(SHAREDIR)/rules/
	install -m 0644 rules/consent/*.yaml $(DESTDIR)$(SHAREDIR)/rules/consent/
	install -m 0644 rules/calendars/*.yaml $(DESTDIR)$(SHAREDIR)/rules/calendars/
	install -m 0644 rules/dsar/*.yaml $(DESTDIR)$(SHAREDIR)/rules/dsar/
	install -m 0644 rules/retention/*.yaml $(DESTDIR)$(SHAREDIR)/rules/retention/
	install -m 0644 config/policy.yaml $(DESTDIR)$(SHAREDIR)/policy.yaml
	install -m 0644 build/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	sed $(UNIT_SED) contrib/candor.service >$(DESTDIR)$(UNITDIR)/candor.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/candor.service
	install -m 0644 contrib/candor.sysusers $(DESTDIR)$(SYSUSERSDIR)/candor.conf

# Removes what install put there, file by file: anything else in those directories stays.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/candor $(DESTDIR)$(SHAREDIR)/policy.yaml \
	    $(addprefix $(DESTDIR)$(SHAREDIR)/,$(wildcard rules/*.yaml rules/consent/*.yaml rules/calendars/*.yaml rules/dsar/*.yaml rules/retention/*.yaml)) \
	    $(DESTDIR)$(MANDIR)/man1/candor.1 $(DESTDIR)$(MANDIR)/man1/candor-*.1 \
	    $(addprefix $(DESTDIR)$(DOCDIR)/,README.md $(notdir $(wildcard docs/*.md))) \
	    $(DESTDIR)$(UNITDIR)/candor.service $(DESTDIR)$(SYSUSERSDIR)/candor.conf
	-rmdir $(DESTDIR)$(SHAREDIR)/rules/consent $(DESTDIR)$(SHAREDIR)/rules/calendars \
	    $(DESTDIR)$(SHAREDIR)/rules/dsar \
	    $(DESTDIR)$(SHAREDIR)/rules/retention \
	    $(DESTDIR)$(SHAREDIR)/rules $(DESTDIR)$(SHAREDIR) \
	    $(DESTDIR)$(DOCDIR) 2>/dev/null

# The web console's files, as C arrays (src/http/web_assets.c includes them).
WEB_FILES := $(sort $(wildcard web/*.*))
build/gen/web_assets.inc: $(WEB_FILES) scripts/embed-web.py
	@mkdir -p build/gen
	@python3 scripts/embed-web.py $@ $(WEB_FILES)
build/src/http/web_assets.o build/asan/src/http/web_assets.o build/fuzz/src/http/web_assets.o: build/gen/web_assets.inc

# Embedded files (.incbin) are not seen by -MMD.
build/src/http/openapi.o build/asan/src/http/openapi.o build/fuzz/src/http/openapi.o: docs/openapi.yaml
build/src/policy/policy.o build/asan/src/policy/policy.o build/fuzz/src/policy/policy.o: config/policy.yaml

-include $(OBJS_REL:.o=.d) $(OBJS_ASAN:.o=.d) $(LIBOBJS_FUZZ:.o=.d)
