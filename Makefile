# Two commands from the README: `make repro` (main job) and `make test` (test suite).
# Each creates or reuses .venv, installs the package (CPU torch pinned first so that no CUDA
# wheels are pulled), then runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
OUT    ?= runs/repro

.PHONY: repro test venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

repro: $(STAMP)
	$(PY) -m theory --json $(OUT)/theory.json
	$(PY) -m simulations.relu --preset quick --out $(OUT)/relu
	$(PY) -m figures relu $(OUT)/relu
	$(PY) -m simulations.relu.summary $(OUT)/relu --claims-only
	$(PY) -m simulations.code run --preset toy --out $(OUT)/code
	@echo
	@echo "== outputs =="
	@echo "theory checks:        $(OUT)/theory.json"
	@echo "ReLU simulation:      $(OUT)/relu/results.csv, figures in $(OUT)/relu/figures/"
	@echo "code pipeline (toy):  $(OUT)/code/results.csv, predictions in $(OUT)/code/predictions/"

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
