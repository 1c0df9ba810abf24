# Two commands on a fresh machine:
#   make demo   set up .venv, then run the main job on the embedded synthetic sample (outputs in out/demo)
#   make test   set up .venv, check the library and README are in step with the notebooks, run every notebook and test
# and one to read the course:
#   make lab    add JupyterLab to .venv, register .venv as the notebooks' kernel, open nbs/ (LAB_ARGS=--no-browser: print the URL)
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
LAB      := $(VENV)/.lab-installed
OUT      ?= out/demo
KERNEL   ?= ich_nbdev
LAB_ARGS ?=
# pytest processes (pytest-xdist; each test file runs whole in one of them, so the notebooks run one after another and
# the two-process training tests never share torchrun's port); 0: everything in this process
TEST_WORKERS ?= 2

.PHONY: demo test venv sync browser lab lab-kernel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/ich-demo $(OUT)

# headless Chromium renders the triage report in a test; installed from Debian when missing and we are root
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium"; \
	    else echo "note: install Chromium (e.g. 'sudo apt-get install chromium') for the report test"; fi; }

test: $(STAMP) browser
	$(BIN)/python tools/sync.py --check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# after editing notebooks: regenerate ich_nbdev/ and README.md, strip notebook metadata
sync: $(STAMP)
	$(BIN)/nbdev-clean
	$(BIN)/python tools/sync.py

$(LAB): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,lab]'
	touch $(LAB)

# the kernel the notebooks open with: this environment's Python (installed inside .venv, so it names .venv's python)
lab-kernel: $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name 'Python (ich_nbdev, $(VENV))'

# as root (a container, a CI machine) Jupyter asks for --allow-root
lab: $(LAB) lab-kernel
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab --ServerApp.root_dir=nbs \
	  --MappingKernelManager.default_kernel_name=$(KERNEL) $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)
