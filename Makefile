# Two commands on a fresh machine: `make test` (the suite) and `make demo` (the main job).
# Both create and reuse .venv; torch is pinned so the local CPU build is used.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/llamaforge demo

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_hf.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_pretrain.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_data.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_rollout.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_ppo.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
