# make book  - set up .venv and build the rendered book (executes every chapter) into _build/html
# make test  - set up .venv and run all tests: unit tests, doctests, and nbval over every notebook
# On a GPU machine:  make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" book
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
PYTHON ?= python3

.PHONY: book test env notebooks clean

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

book: env
	rm -rf _build/html
	PINNKIT_PROGRESS=0 $(VENV)/bin/jupyter-book build . --config book/_config.yml --toc book/_toc.yml -W -n --keep-going
	@echo "book: _build/html/index.html"

test: env
	PINNKIT_PRESET=classroom PINNKIT_PROGRESS=0 $(PY) -m pytest -q -p no:cacheprovider tests pinnkit --doctest-modules \
		notebooks --nbval --nbval-current-env --nbval-sanitize-with tools/nbval_sanitize.cfg

# re-execute the stored notebooks in place (classroom preset, fresh kernel, top to bottom)
notebooks: env
	$(PY) tools/notebooks.py header
	$(PY) tools/notebooks.py execute

clean:
	rm -rf _build $(VENV)
