# mooncake-c top-level Makefile: thin wrapper over CMake + Ninja.
#   make demo   install what is missing, build (release), run the demo
#   make test   install what is missing, build (clang, ASan+UBSan, -Werror, fuzzers), run every test
#   make build  release build only (build/release)
#   make asan   sanitizer build only (build/test)
#   make bench  transfer engine benchmark (release)
#   make format clang-format every C file

JOBS ?= $(shell nproc)
REL := build/release
TST := build/test
CLANG := $(shell command -v clang 2>/dev/null)

.PHONY: all deps build asan test demo bench format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(REL)/build.ninja:
	cmake -S . -B $(REL) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMC_TESTS=OFF

build: deps $(REL)/build.ninja
	cmake --build $(REL) -j $(JOBS)

$(TST)/build.ninja:
	CC=$(if $(CLANG),clang,cc) cmake -S . -B $(TST) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	    -DMC_SANITIZE=ON -DMC_WERROR=ON $(if $(CLANG),-DMC_FUZZ=ON,)

asan: deps $(TST)/build.ninja
	cmake --build $(TST) -j $(JOBS)

test: asan
	cd $(TST) && ctest --output-on-failure --timeout 300 -j 2

demo: build
	bash scripts/demo.sh $(REL)/bin

bench: build
	bash scripts/bench-te.sh $(REL)/bin

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
