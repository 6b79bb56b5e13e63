# Two entry points do all the set-up on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   the main job on embedded defaults: local Kafka broker, ml-100k, bootstrap, worker, replay
#   make test   the whole test suite (starts and stops its own Kafka broker)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: venv test demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/difflsrec demo

clean:
	rm -rf $(VENV) .pytest_cache
