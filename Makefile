# Two commands set up a fresh machine: `make demo` (train on the built-in demo data) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hcp-cam-installed

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first: the CPU wheel pinned here, so the project's torch range installs nothing more
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

demo: install
	$(PY) -m monai.bundle run training --config_file bundles/cam_dmri/train.json
	$(PY) -m monai.bundle run evaluating --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/evaluate.json']"
	$(PY) -m monai.bundle run inference --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/inference.json']"

test: install
	# pytest exits 5 when it collects no test; that is not a failure of the project
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
