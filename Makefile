# make book  - set up .venv and build the rendered book (executes every chapter) into _build/html, and the
#              chapters' slide decks into _build/slides (make slides)
# make book-stored - the book from the stored notebook outputs (no execution, seconds) into _build/stored/_build/html
# make test  - set up .venv and run all tests: unit tests, doctests, nbval over every notebook, then
#              browser-test (the book built from the stored outputs, in headless Chromium) and colab-test
#              (the widget notebooks under ipywidgets 7.x, as in Colab, in a second venv .venv-colab), after
#              perturbed-test: every notebook again under a rounding-level perturbation (PINNKIT_PERTURB=1).
#              It runs on the CPU (PINNKIT_DEVICE=cpu) even on a GPU machine: the stored outputs are CPU numbers.
# make gpu-check - on a CUDA machine, a short paper-size smoke test of each chapter's main computation on the GPU
#              (tests/gpu; skipped without a GPU)
# On a GPU machine:  make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" book
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
PYTHON ?= python3
MATHJAX  ?= mathjax@3.2.2
MJ       := book/_vendor/mathjax
CHROMIUM ?= /usr/bin/chromium
# the perturbation of perturbed-test (any positive integer is another "machine"; see pinnkit.presets.perturbed)
PERTURB  ?= 1
# OpenMP wait policy of perturbed-test (ACTIVE spins: faster for one notebook at a time, NBJOBS=0, on an idle CPU)
PERTURB_WAIT ?= PASSIVE
COLAB    ?= .venv-colab
# how many notebooks the notebook tests run at once (one per core; NBJOBS=0 runs them in the test process)
NBJOBS   ?= 2
# nbval's options: compare with the stored outputs in this environment, sanitized; a kernel may take minutes to
# start on a loaded machine (nbval's default of 60 s once failed a whole notebook beside two long runs)
NBVAL    := --nbval --nbval-current-env --nbval-sanitize-with tools/nbval_sanitize.cfg --nbval-kernel-startup-timeout 300
XDIST    := $(if $(filter 0,$(NBJOBS)),,-n $(NBJOBS) --dist loadscope)
STORED   := _build/stored
# where make slides writes the chapters' reveal.js decks
SLIDES   ?= _build/slides
# browser-test builds the HTML from the stored outputs into $(STORED); BROWSER_HTML=_build/html tests the book
# that `make book` built instead
BROWSER_HTML ?=
# the notebooks that colab-test runs under ipywidgets 7.x
COLAB_NB ?= $(shell grep -l -E '(import|from) ipywidgets' notebooks/[0-9][0-9]_*.ipynb 2>/dev/null)
# OpenMP threads sleep instead of spinning while they wait: on a shared or oversubscribed CPU spinning costs many
# times the work (the outputs are identical)
export OMP_WAIT_POLICY ?= PASSIVE
# The stored outputs are computed with one torch thread (tools/notebooks.py): the tests and the book use the same
# count, so that reductions sum in the same order and nbval compares like with like
export PINNKIT_THREADS ?= 1
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT      := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: book book-stored slides test notebook-test perturbed-test lint gpu-check env notebooks clean mathjax browser-deps browser-test colab-env colab-test

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

book: env mathjax
	rm -rf _build/html
	PINNKIT_PROGRESS=0 $(VENV)/bin/jupyter-book build . --config book/_config.yml --toc book/_toc.yml -W -n --keep-going
	$(MAKE) --no-print-directory slides
	@echo "book: _build/html/index.html, slides: $(SLIDES)/"

# the same book from the STORED notebook outputs (nbval checks them), without executing anything
book-stored: env mathjax
	rm -rf $(STORED)
	$(PY) tools/book_stored.py $(STORED)/_config.yml
	PINNKIT_PROGRESS=0 $(VENV)/bin/jupyter-book build . --config $(STORED)/_config.yml --toc book/_toc.yml \
		--path-output $(STORED) -W -n --keep-going
	@echo "book: $(STORED)/_build/html/index.html"

# one reveal.js deck per chapter from the stored outputs, cut by each cell's metadata.slideshow.slide_type
# (`python tools/notebooks.py slides` writes it): $(SLIDES)/NN_name.slides.html. Cells the book hides are hidden
# (remove-cell, remove-input, remove-output); long slides scroll; 1280 px wide, so 88-character code fits.
# Nothing is fetched while building; the decks load reveal.js and MathJax from their CDNs when opened (a projector
# machine needs the internet). nbconvert belongs in pyproject's book extra; until it is there it is installed here.
slides: env
	$(PY) -c "import nbconvert" 2>/dev/null || $(PY) -m pip install -q "nbconvert>=7"
	rm -rf $(SLIDES)
	$(VENV)/bin/jupyter-nbconvert --to slides --output-dir $(SLIDES) --log-level=ERROR \
		--SlidesExporter.reveal_scroll=True --SlidesExporter.reveal_width=1280 --SlidesExporter.reveal_height=800 \
		--SlidesExporter.reveal_number=c/t --TagRemovePreprocessor.enabled=True \
		--TagRemovePreprocessor.remove_cell_tags='["remove-cell", "remove_cell"]' \
		--TagRemovePreprocessor.remove_input_tags='["remove-input", "remove_input"]' \
		--TagRemovePreprocessor.remove_all_outputs_tags='["remove-output", "remove_output"]' \
		notebooks/[0-9][0-9]_*.ipynb
	@echo "slides: $$(ls $(SLIDES)/*.slides.html | wc -l) decks in $(SLIDES)/"

test: env lint
	PINNKIT_PRESET=classroom PINNKIT_DEVICE=cpu PINNKIT_PROGRESS=0 PINNKIT_REQUIRE_RAY=1 $(PY) -m pytest -q -p no:cacheprovider tests pinnkit --doctest-modules
	$(MAKE) --no-print-directory notebook-test perturbed-test browser-test colab-test

# every chapter compared with its stored outputs, NBJOBS notebooks at a time (pytest-xdist; --dist loadscope keeps
# a notebook's cells in order on one worker). Each runs with one torch thread, as the stored outputs were made.
notebook-test: env
	PINNKIT_PRESET=classroom PINNKIT_DEVICE=cpu PINNKIT_PROGRESS=0 $(PY) -m pytest -q -p no:cacheprovider $(XDIST) \
		notebooks $(NBVAL)

# every chapter again as if on another CPU (PINNKIT_PERTURB=1: two torch threads and the initial parameters one
# ulp off, see pinnkit.presets.perturbed): every assert must pass and every compared output match the stored one.
# It runs NBJOBS notebooks at a time with two OpenMP threads each, so the threads sleep while they wait (PASSIVE):
# spinning threads of two notebooks would fight for the cores. The wait policy does not change any number
perturbed-test: env
	OMP_WAIT_POLICY=$(PERTURB_WAIT) PINNKIT_PERTURB=$(PERTURB) PINNKIT_PRESET=classroom PINNKIT_DEVICE=cpu PINNKIT_PROGRESS=0 $(PY) -m pytest -q \
		-p no:cacheprovider $(XDIST) notebooks $(NBVAL)

# ruff (pyflakes, pycodestyle, import order, bugbear, docstrings) and mypy over the package
lint: env
	$(PY) -m ruff check pinnkit tests benchmarks tools
	$(PY) -m ruff format --check notebooks
	$(PY) -m ruff check --select E501 notebooks
	$(PY) -m mypy pinnkit && $(PY) -m mypy --strict pinnkit --exclude 'pinnkit/(plots|book|exercises)/'

# each chapter's main computation for a few steps at paper sizes on CUDA (skipped, not failed, without a GPU)
gpu-check: env
	PINNKIT_PRESET=paper PINNKIT_PROGRESS=0 $(PY) -m pytest -q -p no:cacheprovider -rs tests/gpu

# MathJax 3 for the offline book, from the npm registry (npm pack checks the tarball's integrity)
mathjax: $(MJ)/.$(MATHJAX)

$(MJ)/.$(MATHJAX):
	command -v npm >/dev/null || ($(APT) update -qq && $(APT) install -y -qq npm >/dev/null)
	rm -rf $(MJ) _build/npm && mkdir -p _build/npm $(MJ)/output/chtml/fonts
	cd _build/npm && npm pack --silent $(MATHJAX) >/dev/null && tar xzf mathjax-*.tgz
	cp _build/npm/package/es5/tex-chtml-full.js _build/npm/package/LICENSE $(MJ)/
	cp -r _build/npm/package/es5/output/chtml/fonts/woff-v2 $(MJ)/output/chtml/fonts/
	rm -rf _build/npm
	touch $@

# Debian's Chromium and Playwright's Python client (never `playwright install`: it downloads a browser)
browser-deps: $(VENV)/.browser
	command -v $(CHROMIUM) >/dev/null || ($(APT) update -qq && $(APT) install -y -qq chromium >/dev/null)

$(VENV)/.browser: requirements-browser.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-browser.txt
	touch $@

# the book from the STORED notebook outputs (nbval has checked them), then every TOC page in headless Chromium
browser-test: env mathjax browser-deps
ifeq ($(strip $(BROWSER_HTML)),)
	$(MAKE) --no-print-directory book-stored
endif
	PINNKIT_BOOK_HTML=$(or $(strip $(BROWSER_HTML)),$(STORED)/_build/html) CHROMIUM=$(CHROMIUM) \
		$(PY) -m pytest -q -p no:cacheprovider tests/browser

# Colab's ipywidgets 7.x in a second venv; nbval over the notebooks that use widgets
colab-env: $(COLAB)/.installed

$(COLAB)/.installed: requirements-colab.txt pyproject.toml
	test -x $(COLAB)/bin/python || $(PYTHON) -m venv $(COLAB)
	$(COLAB)/bin/python -m pip install -q --upgrade pip
	$(COLAB)/bin/python -c "import torch" 2>/dev/null || $(COLAB)/bin/python -m pip install -q $(TORCH)
	$(COLAB)/bin/python -m pip install -q -r requirements-colab.txt
	touch $@

colab-test: colab-env
	$(COLAB)/bin/python -c "import ipywidgets as w; assert w.__version__.startswith('7.'), w.__version__; print('ipywidgets', w.__version__)"
	@if [ -z "$(strip $(COLAB_NB))" ]; then echo "colab-test: no notebook uses ipywidgets yet"; else \
		echo "PINNKIT_PRESET=classroom $(COLAB)/bin/python -m pytest --nbval $(COLAB_NB)"; \
		PINNKIT_PRESET=classroom PINNKIT_DEVICE=cpu PINNKIT_PROGRESS=0 $(COLAB)/bin/python -m pytest -q -p no:cacheprovider $(COLAB_NB) \
			$(NBVAL); fi

# re-execute the stored notebooks in place (classroom preset, fresh kernel, top to bottom)
notebooks: env
	$(PY) tools/notebooks.py header
	$(PY) tools/notebooks.py execute

clean:
	rm -rf _build $(VENV) $(COLAB) book/_vendor
