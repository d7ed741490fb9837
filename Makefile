# Course companion: every target sets up .venv on first use.
#   make lab     JupyterLab on notebooks/          make test       unit tests + FAST notebooks
#   make book    executed notebooks + HTML in build/ (make book FAST=1 for the quick version)
#   make test-full  notebooks in full mode (GPU runner)   make lint   ruff
#   make weights FAST=1   retrain and ship the models the notebooks load (cnn_utils/shipped)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL_NAME := cnn-course
FAST ?= 0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/[0-9][0-9]_*_solutions.ipynb))
MATHJAX_URL := mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,local/book
# The book's HTML: JupyterLab's template plus figure alt text (tools/nbconvert/book), local math.
TEMPLATES := --TemplateExporter.extra_template_basedirs=tools/nbconvert \
	--TemplateExporter.extra_template_paths=tools/nbconvert
HTML_OPTS := --template book $(TEMPLATES) --HTMLExporter.mathjax_url="$(MATHJAX_URL)"
# The slides: reveal.js plus figure alt text (tools/nbconvert/slides); every script local
# (tools/vendor, copied next to them by book_tools.py assets).
# 1280x720, a projector's screen: tools/slides.py fit cuts each section into sub-slides that fit.
SLIDES_OPTS := --template slides $(TEMPLATES) --SlidesExporter.reveal_url_prefix=reveal.js --SlidesExporter.reveal_theme=white \
	--SlidesExporter.reveal_width=1280 --SlidesExporter.reveal_height=720 --SlidesExporter.mathjax_url="$(MATHJAX_URL)" \
	--SlidesExporter.require_js_url=requirejs/require.js --SlidesExporter.jquery_url=jquery/jquery.min.js
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 -p no:cacheprovider

.PHONY: setup lock setup-gpu lab book slides claims test test-unit test-notebooks test-full weights lint format strip clean

# The Pythons the pinned set installs on: MIN_PYTHON is pyproject's requires-python, and CI
# runs both ends (numpy 2.4 and pandas 3.1 have no 3.10 wheels, TensorFlow 2.21 no 3.14 ones).
MIN_PYTHON := 3.11
MAX_PYTHON := 3.13
PY_CHECK := import sys; lo, hi = ([int(n) for n in v.split(".")] for v in ("$(MIN_PYTHON)", "$(MAX_PYTHON)")); \
	sys.exit(not lo <= list(sys.version_info[:2]) <= hi)

# The environment comes from requirements.lock: every package, pinned with its sha256.
setup: $(STAMP)

$(STAMP): requirements.lock requirements.txt pyproject.toml
	@py=$(BIN)/python; test -x $$py || py=$(PYTHON); $$py -c '$(PY_CHECK)' || { echo "make setup: \
	$$py is Python $$($$py -c 'import platform; print(platform.python_version())'); the course installs \
	on Python $(MIN_PYTHON) to $(MAX_PYTHON): run make setup PYTHON=python$(MIN_PYTHON) (rm -rf $(VENV) first if it exists)" >&2; exit 1; }
	@stale=$$(grep -v '^ *#' requirements.txt | while read -r req; do test -z "$$req" \
		|| grep -qi "^$$req[ ;]" requirements.lock || echo "$$req"; done); test -z "$$stale" \
		|| { echo "make setup: requirements.lock lacks" $$stale "(from requirements.txt): run make lock" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python tools/kernelspec.py >/dev/null
	touch $(STAMP)

# Refresh requirements.lock from requirements.txt (run it after editing requirements.txt, then
# commit both): uv resolves for every platform and every Python >= MIN_PYTHON, and
# records the sha256 of every file of each pinned version. Packages that requirements.txt does
# not pin keep their locked versions; `make lock UPGRADE=1` moves them to the newest.
UV_VERSION := 0.13.9
UV := build/uv/bin/uv
lock:
	test -x $(UV) || { $(PYTHON) -m venv build/uv && build/uv/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(UV) pip compile requirements.txt --output-file requirements.lock --universal --generate-hashes \
		--python-version $(MIN_PYTHON) --custom-compile-command "make lock" --quiet $(if $(filter 1,$(UPGRADE)),--upgrade)
	@echo "requirements.lock: $$(grep -c '^[a-z0-9]' requirements.lock) package versions; git diff requirements.lock shows what changed"

# Linux + NVIDIA driver: TensorFlow's CUDA libraries from pip (the GPU runner uses this).
setup-gpu: setup
	$(BIN)/python -m pip install --quiet "tensorflow[and-cuda]==$$($(BIN)/python -c 'import tensorflow as tf; print(tf.__version__)')"

# --allow-root when run as root (containers, cloud VMs), where Jupyter refuses to start otherwise.
# The venv's own jupyter, so it finds this clone's kernel (installed into the venv by setup, not
# per user: two clones never share it); TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's C++ start-up
# lines out of the first cells (the kernel spec sets it too).
lab: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/jupyter lab notebooks/ $$(test "$$(id -u)" = 0 && echo --allow-root)

# Unit tests, every notebook and every solutions notebook (nbval) in FAST mode, in one run.
test: setup
	CNN_UTILS_FAST=1 CNN_UTILS_STANDIN_WEIGHTS=1 $(BIN)/python -m pytest tests $(NOTEBOOKS) $(SOLUTIONS) $(NBVAL)

# The notebooks' thin margins re-measured over seeds and other test subsets (minutes).
claims: setup
	CNN_UTILS_CLAIMS=1 CNN_UTILS_FAST=1 $(BIN)/python -m pytest -s tests/test_nb0103_claims.py \
		tests/test_nb04_claims.py tests/test_nb05_claims.py tests/test_nb06_claims.py

# Retrain the models the notebooks load and ship them (cnn_utils/shipped/, hash-pinned):
# every notebook runs with an empty cache and the shipped weights off, then the cache is
# collected. `make weights FAST=1` rewrites the FAST set (minutes); without FAST, the full set
# (hours on a CPU: meant for the GPU runner).
WEIGHTS_CACHE := build/weights-cache
weights: setup
	rm -rf $(WEIGHTS_CACHE)
	CNN_UTILS_CACHE=$(WEIGHTS_CACHE) CNN_UTILS_SHIPPED=0 CNN_UTILS_FAST=$(FAST) \
		CNN_UTILS_STANDIN_WEIGHTS=1 $(BIN)/python -m pytest $(NOTEBOOKS) $(NBVAL)
	$(BIN)/python tools/weights.py collect $(WEIGHTS_CACHE) --mode $$(test "$(FAST)" = 1 && echo fast || echo full)

test-unit: setup
	CNN_UTILS_FAST=1 $(BIN)/python -m pytest tests

test-notebooks: setup
	CNN_UTILS_FAST=1 CNN_UTILS_STANDIN_WEIGHTS=1 $(BIN)/python -m pytest $(NOTEBOOKS) $(SOLUTIONS) $(NBVAL)

# Full mode: full datasets and epochs. Meant for the GPU runner (hours on a laptop CPU).
test-full: setup
	CNN_UTILS_FAST=0 CNN_UTILS_STANDIN_WEIGHTS=1 $(BIN)/python -m pytest tests $(NOTEBOOKS) $(SOLUTIONS) $(NBVAL)

# Execute every notebook into build/ (executed .ipynb + HTML) and write build/index.html.
# Progress bars are stored as one line per epoch; math (MathJax) is copied next to the pages,
# so the book reads offline. CNN_UTILS_WIDGETS=0: a static page shows each widget's static twin.
book: setup
	mkdir -p build
	set -e; for nb in $(NOTEBOOKS); do \
		echo "== $$nb (CNN_UTILS_FAST=$(FAST))"; \
		CNN_UTILS_FAST=$(FAST) CNN_UTILS_WIDGETS=0 $(BIN)/jupyter nbconvert --to notebook --execute \
			--ExecutePreprocessor.timeout=-1 --output-dir build "$$nb"; \
		$(BIN)/python tools/book_tools.py clean-progress "build/$$(basename $$nb)"; \
		$(BIN)/jupyter nbconvert --to html $(HTML_OPTS) --output-dir build "build/$$(basename $$nb)"; \
	done
	$(BIN)/python tools/book_tools.py check-progress $(addprefix build/,$(notdir $(NOTEBOOKS)))
	$(BIN)/python tools/book_tools.py check-alt $(addprefix build/,$(notdir $(NOTEBOOKS:.ipynb=.html)))
	$(BIN)/python tools/book_tools.py check-offline $(addprefix build/,$(notdir $(NOTEBOOKS:.ipynb=.html)))
	$(BIN)/python tools/book_tools.py assets build
	$(BIN)/python tools/book_index.py build $(NOTEBOOKS) --mode $$(test "$(FAST)" = 1 && echo FAST || echo default)

# reveal.js slides of the executed notebooks (run `make book` first, or this executes them),
# offline: reveal.js and MathJax are copied next to them. Present live with RISE in JupyterLab.
slides: setup
	mkdir -p build/slides
	set -e; for nb in $(NOTEBOOKS); do \
		test -f "build/$$(basename $$nb)" || { CNN_UTILS_FAST=$(FAST) CNN_UTILS_WIDGETS=0 $(BIN)/jupyter nbconvert \
			--to notebook --execute --ExecutePreprocessor.timeout=-1 --output-dir build "$$nb" \
			&& $(BIN)/python tools/book_tools.py clean-progress "build/$$(basename $$nb)"; }; \
		$(BIN)/python tools/slides.py fit "build/$$(basename $$nb)" "build/slides/$$(basename $$nb)"; \
		$(BIN)/jupyter nbconvert --to slides $(SLIDES_OPTS) \
			--output-dir build/slides "build/slides/$$(basename $$nb)"; \
		rm "build/slides/$$(basename $$nb)"; \
	done
	$(BIN)/python tools/book_tools.py check-alt $(addprefix build/slides/,$(notdir $(NOTEBOOKS:.ipynb=.slides.html)))
	$(BIN)/python tools/book_tools.py check-offline $(addprefix build/slides/,$(notdir $(NOTEBOOKS:.ipynb=.slides.html)))
	$(BIN)/python tools/book_tools.py assets build/slides

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format cnn_utils tests benchmarks tools

# Remove outputs and execution counts before committing a notebook; set its slide metadata and
# its Colab install cell and link (tools/colab.py; the link needs [project.urls] Repository).
strip: setup
	$(BIN)/jupyter nbconvert --clear-output --inplace $(NOTEBOOKS) $(SOLUTIONS)
	$(BIN)/python tools/colab.py write
	$(BIN)/python tools/slides.py $(NOTEBOOKS)
	$(BIN)/python tools/solutions.py write
	$(BIN)/python tools/grade.py synthesize 01 tests/grade_fixtures >/dev/null

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis

# Grade a folder of submitted notebooks (tools/grade.py): each runs alone in its own kernel,
# with time limits, on a copy; build/grades/grades.csv and grades.html, one row per student.
# Grade in the mode the students used (FAST=1 only for FAST submissions). Try it on six
# synthetic submissions of notebook 01: make grade SUBMISSIONS=tests/grade_fixtures/ FAST=1
.PHONY: grade
grade: setup
	test -n "$(SUBMISSIONS)" || { echo "make grade SUBMISSIONS=folder/" >&2; exit 2; }
	$(BIN)/python tools/grade.py "$(SUBMISSIONS)" --out build/grades $(if $(filter 1,$(FAST)),--fast)
