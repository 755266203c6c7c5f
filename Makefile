# make train [ARGS="task=vision model=vit_tiny"]   set up (once) and train
# make test                                        set up (once) and run the test suite
# make list                                        print the registry
VENV ?= .venv
PY := $(VENV)/bin/python
# Tests and benchmarks read real datasets from ../shared/data when it is there.
export LABFORMER_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)

.PHONY: setup train test test-all list clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

train: setup
	$(PY) train.py $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

list: setup
	$(PY) -m labformer list $(ARGS)

clean:
	rm -rf logs outputs multirun .pytest_cache
