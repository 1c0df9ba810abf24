# Two commands on a fresh machine:
#   make demo   set up .venv, then run the main job on the embedded synthetic sample (outputs in out/demo)
#   make test   set up .venv, check the library and README are in step with the notebooks, run every notebook and test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out/demo

.PHONY: demo test venv sync clean-nbs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/ich-demo $(OUT)

test: $(STAMP)
	$(BIN)/python tools/sync.py --check
	$(BIN)/python -m pytest

# after editing notebooks: regenerate ich_nbdev/ and README.md, strip notebook metadata
sync: $(STAMP)
	$(BIN)/nbdev-clean
	$(BIN)/python tools/sync.py
