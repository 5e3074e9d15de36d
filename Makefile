# Prefhub: `make run` sets up and runs the app; `make test` runs ruff and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The app with its training worker: requirements-train.txt pins torch (a CPU wheel here).
$(VENV)/.installed: requirements.txt requirements-train.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-train.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-train.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	./scripts/run.sh

test: $(VENV)/.installed-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var
