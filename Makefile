# ramole — build, test, bench.
#   make            library (build/libramole.a) and the `ramole` binary
#   make test       the default suite; ends with "N passed, N failed"
#   make asan       the suite under AddressSanitizer + UBSan (build-asan/)
#   make bench      benchmarks (see bench/README and docs/BENCH.md)
#   make test-pg    the registry's suite against a real PostgreSQL server
#                   (scripts/pg.sh starts one in build/pg and stops it after)
#   make slow       the slow suites (tests/slow/*.sh: toy training tasks, minutes)
#   make demo       the main job on the reference world (scripts/demo.sh;
#                   WORLD=DIR for another world folder, default world)
#   make fuzz       libFuzzer harnesses (fuzz/) with ASan + UBSan in build-fuzz/,
#                   each run FUZZ_SECONDS (60) in turn; needs clang-14 and
#                   libfuzzer-14-dev (bash scripts/deps.sh --fuzz)
#
# Files named *_avx2.c / *_avx512.c are built with those instruction sets;
# the code that calls them checks cpuid at run time, so the binary runs on
# any x86-64.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
CFLAGS   ?=
CFLAGS   += $(OPT) -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
            -Wshadow -Wpointer-arith -Wno-missing-field-initializers -fno-strict-aliasing \
            -Iinclude -Isrc -pthread $(SAN) \
            $(shell pkg-config --cflags jansson libpcre2-8 libpq 2>/dev/null)
LDLIBS   += -lmicrohttpd -lopenblas -ljansson -lpcre2-8 -lutf8proc -lsqlite3 -lpq -lcrypto -lm -lpthread
LDFLAGS  += $(SAN) -pthread

AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c

LIB_SRC   := $(sort $(wildcard src/*/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)

LIB   := $(BUILD)/libramole.a
BIN   := $(BUILD)/ramole
TESTS := $(BUILD)/ramole_tests
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test test-pg asan bench slow clean deps fuzz fuzz-build fuzz-bins world
all: $(BIN) $(LIB)

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The command line sees the public header only (include/ramole.h), as any
# outside program would: src/ is not on its include path.
$(BUILD)/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS)) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(TOOL_OBJ) $(LIB) $(LDLIBS) -o $@

$(TESTS): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

# The registry benchmark's FAISS peer (bench/faiss_shim.cpp): built only when
# libfaiss-dev and a C++ compiler are there (scripts/deps.sh --bench); then
# bench_registry links it, and it alone. Without them bench_registry is built
# by the rule above and prints "skipped: FAISS ...".
CXX      ?= c++
FAISS_OK := $(shell test -f /usr/include/faiss/IndexFlat.h && command -v $(CXX) >/dev/null && echo 1)
ifeq ($(FAISS_OK),1)
$(BUILD)/bench/faiss_shim.o: bench/faiss_shim.cpp bench/faiss_shim.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g -std=c++17 -Wall -Ibench -c $< -o $@

$(BUILD)/bench/bench_registry: bench/bench_registry.c bench/faiss_shim.h $(BUILD)/bench/faiss_shim.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DRM_BENCH_FAISS -Ibench $< $(BUILD)/bench/faiss_shim.o $(LIB) $(LDFLAGS) -lfaiss -fopenmp -lstdc++ \
	  $(LDLIBS) -o $@
endif

test: $(BIN) $(TESTS)
	@BUILD=$(BUILD) SAN="$(SAN)" bash tests/run.sh

test-pg: $(BIN) $(TESTS)
	@url=$$(bash scripts/pg.sh start) && \
	  RAMOLE_TEST_PG="$$url" RAMOLE_TEST_TMP=$(BUILD)/test-tmp-pg $(TESTS) registry; rc=$$?; \
	  bash scripts/pg.sh stop; exit $$rc

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" test

bench: $(BIN) $(BENCH_BINS)
	@BUILD=$(BUILD) bash bench/run.sh

slow: $(BIN)
	@for t in tests/slow/*.sh; do RAMOLE_BIN=$(BIN) bash $$t || exit 1; done

# The main job: serve WORLD's base, upload its adapters, a dozen requests at once.
.PHONY: demo
WORLD ?= world
demo: $(BIN)
	@RAMOLE_BIN=$(BIN) bash scripts/demo.sh $(WORLD)

deps:
	bash scripts/deps.sh

# The reference world (world/README.md): resumable stages, each skipped when
# its output is up to date. WORLD_STAGES picks some (data tokenizer base
# adapters retriever router).
world: $(BIN)
	@R=$(BIN) bash scripts/world/build.sh $(WORLD_STAGES)

# Fuzzing: the library rebuilt by clang with sanitizers and coverage
# (fuzzer-no-link) into build-fuzz/, one binary per fuzz/fuzz_*.c.
FUZZ_CC      ?= clang-14
FUZZ_SAN     := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 60
FUZZ_BINS     = $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard fuzz/fuzz_*.c)))

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN)" fuzz-bins

fuzz-bins: $(FUZZ_BINS)

$(BUILD)/fuzz/%: fuzz/%.c $(wildcard fuzz/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $< $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh $(FUZZ)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
