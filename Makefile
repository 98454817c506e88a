# Every command a user runs. `make help` lists them.
# Week targets (weekNN-test, weekNN-notebook, weekNN-bench) come from the
# week folders through pattern rules: a new weekNN_topic/ gets them for free.
# The weeks today (tests/test_contract.py keeps this list in step with the folders):
#   week00-test week01-test week02-test week03-test week04-test week05-test week06-test week07-test week08-test week09-test week10-test week11-test week12-test
# Track targets (trackNAME-test, -notebook, -bench, -exercises) come the same way from tracks/track_NAME/:
#   trackcontinual-test trackhtm-test trackjepa-test trackmoe-test trackpapers-test   (track-htm-test works too)

SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch comes from the CPU wheel on local disk; GPU owners: make setup TORCH=torch
TORCH  ?= torch==2.13.0
PIP_FLAGS ?= --quiet --disable-pip-version-check

WEEK_DIRS := $(sort $(patsubst %/,%,$(dir $(wildcard week[0-9][0-9]_*/pyproject.toml))))
TRACKS := $(sort $(patsubst %/,%,$(dir $(wildcard tracks/*/pyproject.toml))))
PKGS   := shared $(WEEK_DIRS) $(TRACKS)
STAMP  := $(VENV)/.setup-stamp
wdir    = $(firstword $(filter week$(1)_%,$(WEEK_DIRS)))
need_wdir = $(if $(call wdir,$(1)),,$(error no folder week$(1)_* here; weeks are: $(WEEK_DIRS)))
# a track's folder from the stem of trackNAME-x (or track-NAME-x)
tdir    = $(firstword $(filter tracks/track_$(patsubst -%,%,$(1)),$(TRACKS)))
need_tdir = $(if $(call tdir,$(1)),,$(error no folder tracks/track_$(patsubst -%,%,$(1)) here; tracks are: $(TRACKS)))

export PYTHONHASHSEED ?= 0
export MPLBACKEND ?= Agg

.DEFAULT_GOAL := help
.PHONY: help setup setup-sandbox setup-browser speedrun chat serve test test-fast lint format dashboard reflect path progress curriculum papers bench baseline clean

help: ## list every target
	@echo "nanochat curriculum: make <target>"
	@echo
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-18s %s\n", $$1, $$2}'
	@echo
	@echo "  per week (NN = $(patsubst week%,%,$(foreach w,$(WEEK_DIRS),$(firstword $(subst _, ,$(w))))))"
	@echo "  weekNN-test        that week's tests and its notebook in smoke mode"
	@echo "  weekNN-notebook    execute weekNN_*/weekNN_*.ipynb in place at full size (SMOKE=1: smoke size; OUT=path.ipynb: saved there, the lesson untouched)"
	@echo "  weekNN-bench       that week's benchmarks/ scripts (ratios against the peers)"
	@echo "  weekNN-exercises   your exercises/ against that week's reference tests (IMPL=solutions: the worked ones)"
	@echo "  (TIER=core|stretch|mega on test and weekNN-test: one tier only)"
	@echo
	@echo "  per track (NAME = $(patsubst tracks/track_%,%,$(TRACKS)))"
	@echo "  trackNAME-test, trackNAME-notebook, trackNAME-bench, trackNAME-exercises: as for a week"

setup: $(STAMP) ## create .venv and install every package editable (idempotent)

$(STAMP): $(addsuffix /pyproject.toml,$(PKGS)) requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# compat editables put each src/ folder on sys.path, so `python -m weekNN_x.cli` works from the
	@# repo root (where the folder weekNN_x/ would otherwise shadow the package weekNN_x)
	@printf '[install]\nconfig-settings = editable_mode=compat\n' > $(VENV)/pip.conf
	@# (the grep drops pip's notes about this machine's missing local package mirrors)
	set -o pipefail; $(PY) -m pip install $(PIP_FLAGS) "$(TORCH)" $(foreach p,$(PKGS),-e "./$(p)[dev]") \
	  -r requirements-dev.txt 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
	@touch $@

setup-sandbox: ## bubblewrap + libseccomp for the REPL sandbox (apt-get, as root; optional layer)
	@if command -v bwrap >/dev/null && ldconfig -p | grep -q libseccomp.so.2; then \
	  echo "sandbox: $$(bwrap --version), libseccomp present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 >/dev/null \
	  && echo "sandbox: installed $$(bwrap --version)"; \
	else echo "sandbox: bubblewrap missing (optional; the REPL then runs on Landlock + seccomp): sudo apt-get install bubblewrap"; fi

setup-browser: ## Chromium + chromedriver from Debian for week12's browser test (apt-get, as root; optional)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "browser: $$(chromium --version 2>/dev/null | head -1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	  && echo "browser: installed $$(chromium --version 2>/dev/null | head -1)"; \
	else echo "browser: chromium missing (optional; the browser test skips): sudo apt-get install chromium chromium-driver"; fi

PRESET ?= cpu
speedrun: setup ## train nanochat end to end: tokenizer -> base -> SFT -> RL -> eval -> report card (PRESET=cpu: ~15 min here; FROM=stage redoes one stage and the later ones)
	$(PY) -m week12_nanochat.speedrun --preset $(PRESET) $(if $(FROM),--from $(FROM)) $(SPEEDRUN_ARGS)

chat: setup ## talk to the latest speedrun model in the terminal (MODEL=folder, MEMORY=folder)
	$(PY) -m week12_nanochat.chat $(if $(MODEL),--model $(MODEL)) --memory $(or $(MEMORY),runs/memory)

serve: setup ## the chat page and the OpenAI-compatible API on http://127.0.0.1:8000 (MODEL=folder, PORT=8000)
	$(PY) -m week12_nanochat.serve $(if $(MODEL),--model $(MODEL)) --port $(or $(PORT),8000)

test: setup ## every package's tests + every notebook in smoke mode (TIER=core|stretch|mega: one tier)
	$(PY) -m pytest tests shared/tests $(addsuffix /tests,$(WEEK_DIRS) $(TRACKS)) $(tier_opt)

test-fast: setup ## the tests without the notebooks
	$(PY) -m pytest tests shared/tests $(addsuffix /tests,$(WEEK_DIRS) $(TRACKS)) --deselect tests/test_notebooks.py $(tier_opt)

TIERS := core stretch mega
tier_opt = $(if $(TIER),$(if $(filter $(TIER),$(TIERS)),-m "$(TIER)",$(error TIER must be one of: $(TIERS); got '$(TIER)')))

week%-test: setup
	$(call need_wdir,$*)
	$(PY) -m pytest $(call wdir,$*)/tests tests/test_notebooks.py -k "$(call wdir,$*) or not test_notebook" $(tier_opt)

IMPL ?= mine
# your own state (plan, exercise reports, weekly log) lives here, outside git
LEARNER := $(or $(NANOCHAT_LEARNER),.learner)
week%-exercises: setup
	$(call need_wdir,$*)
	@test -f $(call wdir,$*)/exercises/exercises.toml || { echo "$(call wdir,$*) has no exercises yet; weeks with exercises: $(patsubst %/exercises/exercises.toml,%,$(wildcard week*/exercises/exercises.toml))"; exit 2; }
	$(PY) -m pytest -p shared.exercises --exercises $(call wdir,$*) --exercise-impl $(IMPL) -q --tb=short -rN \
	  $(if $(filter mine,$(IMPL)),--exercise-report $(LEARNER)/exercises/$(call wdir,$*).json) $(call wdir,$*)/tests

week%-notebook: setup
	$(call need_wdir,$*)
	$(PY) -m shared.notebook $(call wdir,$*)/$(call wdir,$*).ipynb $(if $(OUT),--out "$(OUT)",--inplace) $(if $(filter 1,$(SMOKE)),--smoke)

week%-bench: setup
	$(call need_wdir,$*)
	@set -e; for s in $(sort $(wildcard $(call wdir,$*)/benchmarks/[!_]*.py)); do \
	  echo "== $$s"; $(PY) $$s; done

bench: setup ## every week's and track's benchmarks
	@set -e; for w in $(WEEK_DIRS); do n=$${w:4:2}; $(MAKE) --no-print-directory week$$n-bench; done
	@set -e; for t in $(TRACKS); do $(MAKE) --no-print-directory track$${t#tracks/track_}-bench; done

# ---------------------------------------------------------------- tracks (tracks/track_NAME)

track%-test: setup
	$(call need_tdir,$*)
	$(PY) -m pytest $(call tdir,$*)/tests tests/test_notebooks.py -k "$(notdir $(call tdir,$*)) or not test_notebook" $(tier_opt)

track%-exercises: setup
	$(call need_tdir,$*)
	@test -f $(call tdir,$*)/exercises/exercises.toml || { echo "$(call tdir,$*) has no exercises yet"; exit 2; }
	$(PY) -m pytest -p shared.exercises --exercises $(call tdir,$*) --exercise-impl $(IMPL) -q --tb=short -rN \
	  $(if $(filter mine,$(IMPL)),--exercise-report $(LEARNER)/exercises/$(notdir $(call tdir,$*)).json) $(call tdir,$*)/tests

track%-notebook: setup
	$(call need_tdir,$*)
	$(PY) -m shared.notebook $(call tdir,$*)/$(notdir $(call tdir,$*)).ipynb $(if $(OUT),--out "$(OUT)",--inplace) $(if $(filter 1,$(SMOKE)),--smoke)

track%-bench: setup
	$(call need_tdir,$*)
	@set -e; for s in $(sort $(wildcard $(call tdir,$*)/benchmarks/[!_]*.py)); do \
	  echo "== $$s"; $(PY) $$s; done

lint: setup ## ruff on the whole repo
	$(VENV)/bin/ruff check .

format: setup ## ruff format + import sorting
	$(VENV)/bin/ruff check --fix --select I .
	$(VENV)/bin/ruff format .

dashboard: setup ## plot every run under runs/ into runs/index.html
	$(PY) -m shared.dashboard runs

path: setup ## choose a study path: WEEKS=8 (fast, Core) | 12 (balanced) | 16 (deep); START=YYYY-MM-DD (default today)
	@test -n "$(WEEKS)" || { echo "usage: make path WEEKS=8|12|16 [START=YYYY-MM-DD]  (make path SHOW=1 prints the saved one)"; \
	  [ "$(SHOW)" = 1 ] || exit 2; }
	$(PY) -m shared.plan $(if $(WEEKS),--weeks "$(WEEKS)",--show) $(if $(START),--start "$(START)")

progress: setup ## your exercises, notebook runs, benchmarks and reflections against your path (RUN=1: re-run the exercises)
	$(PY) -m shared.progress $(if $(filter 1,$(RUN)),--run)

papers: setup ## the paper map (tracks/track_papers) as a static site, offline MkDocs, in runs/papers (OUT=DIR)
	$(PY) -m track_papers.site --out $(or $(OUT),runs/papers)

curriculum: setup ## regenerate the README tables from curriculum.toml
	$(PY) -m shared.curriculum --write

reflect: setup ## append a Sunday entry to weekNN/REFLECTION.md (WEEK=NN, or a track's key: WEEK=htm)
	@test -n "$(WEEK)" || { echo "usage: make reflect WEEK=NN|KEY (weeks: $(WEEK_DIRS); tracks: $(patsubst tracks/track_%,%,$(TRACKS)))"; exit 2; }
	$(PY) -m shared.reflection --week $(WEEK)

baseline: setup ## week05 baseline: tokenizer + CPU model + full offline eval + report card (~10 min)
	$(PY) -m week05_eval.baseline $(BASELINE_ARGS)

clean: ## remove caches (keeps .venv and runs/)
	find . -name __pycache__ -prune -exec rm -rf {} + ; rm -rf .pytest_cache .ruff_cache
