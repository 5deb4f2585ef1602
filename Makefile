# The two commands of the README, and the tools around them.
#
#   make run     install what is missing, build, start sluice
#   make test    install what is missing, build with ASan+UBSan, run every test, then
#                the ThreadSanitizer build (make tsan)
#   make tsan    the C++ tests and the multi-worker integration tests under TSan
#   make build   the optimised build of sluice
#   make fuzz    run the libFuzzer targets (FUZZ_SECONDS each, default 60)
#   make bench   build and run the micro-benchmarks
#   make format  clang-format every C++ file

JOBS ?= 2
FUZZ_SECONDS ?= 60
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo Ninja || echo "Unix Makefiles")

RELEASE_DIR := build/release
TEST_DIR := build/asan
TSAN_DIR := build/tsan
FUZZ_DIR := build/fuzz

.PHONY: all deps build run test tsan fuzz bench bench-tools compare format clean

all: build

deps:
	@scripts/install-deps

$(RELEASE_DIR)/CMakeCache.txt:
	cmake -S . -B $(RELEASE_DIR) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF

build: deps $(RELEASE_DIR)/CMakeCache.txt
	cmake --build $(RELEASE_DIR) -j $(JOBS) --target sluice

# State is kept in ./data (DATA_DIR) so that `make run` keeps what it acknowledged.
DATA_DIR ?= data
run: build
	$(RELEASE_DIR)/src/app/sluice --storage-dir $(DATA_DIR) $(ARGS)

$(TEST_DIR)/CMakeCache.txt:
	cmake -S . -B $(TEST_DIR) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON \
	  -DSLUICE_BENCH=OFF

test: deps $(TEST_DIR)/CMakeCache.txt
	cmake --build $(TEST_DIR) -j $(JOBS)
	cd $(TEST_DIR) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) tsan

# Optimised a little (TSan is slow enough) and with debug information for its reports.
$(TSAN_DIR)/CMakeCache.txt:
	cmake -S . -B $(TSAN_DIR) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_TSAN=ON \
	  -DSLUICE_BENCH=OFF

tsan: deps $(TSAN_DIR)/CMakeCache.txt
	cmake --build $(TSAN_DIR) -j $(JOBS)
	cd $(TSAN_DIR) && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j $(JOBS)

$(FUZZ_DIR)/CMakeCache.txt:
	CXX=clang++ cmake -S . -B $(FUZZ_DIR) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSLUICE_FUZZ=ON

# Seeds come from the sample packets of the normal build; findings that once
# broke something are kept in fuzz/corpus/ and replayed by `make test`.
fuzz: deps $(FUZZ_DIR)/CMakeCache.txt $(TEST_DIR)/CMakeCache.txt
	cmake --build $(TEST_DIR) -j $(JOBS) --target make_fuzz_seeds
	cmake --build $(FUZZ_DIR) -j $(JOBS)
	$(TEST_DIR)/fuzz/make_fuzz_seeds $(FUZZ_DIR)/seeds/frame_decoder
	mkdir -p $(FUZZ_DIR)/corpus/frame_decoder fuzz/artifacts
	$(FUZZ_DIR)/fuzz/frame_decoder_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=fuzz/artifacts/ -print_final_stats=1 \
	  $(FUZZ_DIR)/corpus/frame_decoder $(FUZZ_DIR)/seeds/frame_decoder fuzz/corpus/frame_decoder
	mkdir -p $(FUZZ_DIR)/corpus/config
	$(FUZZ_DIR)/fuzz/config_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=2048 \
	  -artifact_prefix=fuzz/artifacts/config- -print_final_stats=1 \
	  $(FUZZ_DIR)/corpus/config fuzz/corpus/config examples
	mkdir -p $(FUZZ_DIR)/corpus/websocket
	$(FUZZ_DIR)/fuzz/websocket_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=fuzz/artifacts/websocket- -print_final_stats=1 \
	  $(FUZZ_DIR)/corpus/websocket fuzz/corpus/websocket

# The load generator, the relay and the broker, optimised: what bench/compare runs.
bench-tools: deps $(RELEASE_DIR)/CMakeCache.txt
	cmake --build $(RELEASE_DIR) -j $(JOBS) --target sluice sluice-bench sluice-relay

compare: bench-tools
	bench/compare $(COMPARE_ARGS)

bench: deps
	cmake -S . -B $(RELEASE_DIR) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=Release
	cmake --build $(RELEASE_DIR) -j $(JOBS) --target codec_bench subscription_index_bench \
	  publish_path_bench durability_bench
	$(RELEASE_DIR)/bench/codec_bench
	$(RELEASE_DIR)/bench/subscription_index_bench
	$(RELEASE_DIR)/bench/publish_path_bench
	$(RELEASE_DIR)/bench/durability_bench

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf build
