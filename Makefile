# Course companion: every target sets up .venv on first use.
#   make lab     JupyterLab on notebooks/          make test       unit tests + FAST notebooks
#   make book    executed notebooks + HTML in build/ (make book FAST=1 for the quick version)
#   make test-full  notebooks in full mode (GPU runner)   make lint   ruff
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL_NAME := cnn-course
FAST ?= 0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/[0-9][0-9]_*_solutions.ipynb))
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 -p no:cacheprovider

.PHONY: setup setup-gpu lab book test test-unit test-notebooks test-full lint format strip clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --user --name $(KERNEL_NAME) \
		--display-name "Python (cnn-course)" >/dev/null
	touch $(STAMP)

# Linux + NVIDIA driver: TensorFlow's CUDA libraries from pip (the GPU runner uses this).
setup-gpu: setup
	$(BIN)/python -m pip install --quiet "tensorflow[and-cuda]==$$($(BIN)/python -c 'import tensorflow as tf; print(tf.__version__)')"

lab: setup
	$(BIN)/jupyter lab notebooks/

# Unit tests, every notebook and every solutions notebook (nbval) in FAST mode, in one run.
test: setup
	CNN_UTILS_FAST=1 $(BIN)/python -m pytest tests $(NOTEBOOKS) $(SOLUTIONS) $(NBVAL)

test-unit: setup
	CNN_UTILS_FAST=1 $(BIN)/python -m pytest tests

test-notebooks: setup
	CNN_UTILS_FAST=1 $(BIN)/python -m pytest $(NOTEBOOKS) $(SOLUTIONS) $(NBVAL)

# Full mode: full datasets and epochs. Meant for the GPU runner (hours on a laptop CPU).
test-full: setup
	CNN_UTILS_FAST=0 $(BIN)/python -m pytest tests $(NOTEBOOKS) $(SOLUTIONS) $(NBVAL)

# Execute every notebook into build/ (executed .ipynb + HTML) and write build/index.html.
book: setup
	mkdir -p build
	set -e; for nb in $(NOTEBOOKS); do \
		echo "== $$nb (CNN_UTILS_FAST=$(FAST))"; \
		CNN_UTILS_FAST=$(FAST) $(BIN)/jupyter nbconvert --to notebook --execute \
			--ExecutePreprocessor.timeout=-1 --output-dir build "$$nb"; \
		$(BIN)/jupyter nbconvert --to html --output-dir build "build/$$(basename $$nb)"; \
	done
	$(BIN)/python tools/book_index.py build $(NOTEBOOKS)

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format cnn_utils tests benchmarks tools

# Remove outputs and execution counts before committing a notebook.
strip: setup
	$(BIN)/jupyter nbconvert --clear-output --inplace $(NOTEBOOKS) $(SOLUTIONS)

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
