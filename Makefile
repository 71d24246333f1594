# Two commands on a fresh machine: `make run` (the app on the built-in demo) and `make test`.
# Each creates the virtual environment it needs (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint screenshots env clean-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, exactly this build: pip takes it from this machine's disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

run: $(STAMP)
	$(PY) -m auditor --demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check engine auditor tests bench
	$(VENV)/bin/mypy

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) packaging/screenshots.py docs/screenshots

clean-env:
	rm -rf $(VENV)
