# unif2ace-mini: every command sets itself up (fresh .venv, CPU torch, the package, a kernel).
#   make reproduce   install, execute every notebook on the quick profile, write runs/quick/report.md
#   make test        install, unit tests, notebook hygiene, then every notebook executed once by nbval
#   make notebooks   refresh the stored notebook outputs (NB=notebooks/XX.ipynb for one)
#   make lab         JupyterLab on the venv
# GPU users: see README ("GPU and conda"); TORCH_SPEC selects the torch build to install.

SHELL        := /bin/bash
PYTHON       ?= python3
VENV         ?= .venv
VPY          := $(VENV)/bin/python
TORCH_SPEC   ?= torch==2.13.0
EXTRAS       ?= dev
KERNEL       := unif2ace-mini
PROFILE      ?= quick
NB           ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL_DIR    := tests/nbval_run
TMP_DIR      := $(CURDIR)/.tmp

# One environment for every notebook run (reproduce, test, refresh): no hub access, no progress
# bars in outputs, per-run caches so nothing leaks in from the user's home.
export UNIF2ACE_CACHE              ?= $(CURDIR)/.cache
export UNIF2ACE_NO_PROGRESS        := 1
export UNIF2ACE_THREADS            ?= 2
# How long idle OpenMP threads spin before sleeping. libgomp's default (300k spins) is fastest on
# free cores but 30x slower when other jobs share them (a 4-prompt generation: 41 s vs 1.1 s at
# load 8); OMP_WAIT_POLICY=PASSIVE (no spinning) is robust but 2-3x slower on free cores
# (transformer step 0.37 s -> 0.7-1.0 s). 10k spins: 2.3 s at load 8.
export GOMP_SPINCOUNT              ?= 10000
export HF_HUB_OFFLINE              := 1
export HF_DATASETS_OFFLINE         := 1
export TRANSFORMERS_OFFLINE        := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export HF_DATASETS_DISABLE_PROGRESS_BARS := 1
export HF_HOME                     := $(TMP_DIR)/hf
export IPYTHONDIR                  := $(TMP_DIR)/ipython
export MPLCONFIGDIR                := $(TMP_DIR)/matplotlib
export JUPYTER_RUNTIME_DIR         := $(TMP_DIR)/jupyter-runtime
export TORCHINDUCTOR_CACHE_DIR     := $(TMP_DIR)/inductor
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export PYTHONWARNINGS              := ignore::DeprecationWarning

STAMP := $(VENV)/.unif2ace-installed

.PHONY: setup test unit nbval reproduce notebooks lab clean help

help:
	@sed -n '2,7p' Makefile

$(STAMP): pyproject.toml
	@mkdir -p $(TMP_DIR)
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet "$(TORCH_SPEC)"
	$(VPY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(VPY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "$(KERNEL)" >/dev/null
	@touch $@

setup: $(STAMP)
	@mkdir -p $(TMP_DIR)

test: setup unit nbval

unit: setup
	$(VPY) -m pytest tests -q

# papermill --prepare-only injects the profile without executing; nbval then executes each
# notebook exactly once and compares it with the stored outputs.
nbval: setup
	@rm -rf $(NBVAL_DIR) && mkdir -p $(NBVAL_DIR)
	@for nb in $(NB); do \
	  $(VENV)/bin/papermill "$$nb" "$(NBVAL_DIR)/$$(basename $$nb)" -p PROFILE $(PROFILE) \
	    --prepare-only -k $(KERNEL) --log-level WARNING || exit 1; \
	done
	$(VPY) -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 1200 \
	  --durations=25 $(NBVAL_DIR)

reproduce: setup
	$(VPY) -m unif2ace_mini reproduce --profile $(PROFILE) --out runs/$(PROFILE)

notebooks: setup
	$(VPY) -m unif2ace_mini refresh-notebooks $(NB)

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf $(NBVAL_DIR) $(TMP_DIR) runs .pytest_cache
