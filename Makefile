# Thin wrapper over CMake. `make serve` and `make test` work on a fresh
# Debian 12 machine: they install what is missing first.
BUILD ?= build
JOBS ?= 2
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: all deps model build test test-unit test-e2e serve clean

all: build

deps:
	@tools/install_deps.sh

model:
	@tools/setup_model.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

test: deps model build
	@tools/run_tests.sh $(BUILD)

serve: deps model build
	@echo "tidal: serving $(MODEL) at http://$(HOST):$(PORT)/v1"
	$(BUILD)/bin/tidal serve --model $(MODEL) --host $(HOST) --port $(PORT)

clean:
	rm -rf $(BUILD)
