# The two commands a newcomer needs:
#   make run    - run ksr with scripts/default.lua on 127.0.0.1:5060 (UDP and TCP)
#   make test   - install everything the tests need (venv, sipp) and run the whole suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test sipp lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

sipp:
	@command -v sipp >/dev/null 2>&1 || { \
	  echo "installing sip-tester (sipp)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq sip-tester; }

run: $(VENV)/.installed
	$(PY) -m ksr run $(ARGS)

test: $(VENV)/.installed sipp
	$(PY) -m pytest -q $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ksr modules tests bench
	$(VENV)/bin/mypy ksr

bench: $(VENV)/.installed sipp
	$(PY) -m bench.run $(ARGS)
