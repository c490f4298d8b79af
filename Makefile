# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUTPUT ?= demo-output
# Both cores (CI has 2); tests that share a module fixture stay on one worker (xdist_group).
PYTEST_ARGS ?= -n auto --dist loadgroup

.PHONY: demo test lint install clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lightnets demo --output $(OUTPUT)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check keras_lightnets tests tools

clean:
	rm -rf $(VENV) $(OUTPUT) .pytest_cache .hypothesis build *.egg-info
