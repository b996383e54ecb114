# The two commands a newcomer needs:
#   make run    - run ksr with scripts/default.lua on 127.0.0.1:5060 (UDP and TCP)
#   make test   - install everything the tests need (venv, sipp, the PostgreSQL and Redis servers
#                 the tests start throwaway copies of when none is running) and run the whole suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test sipp testdeps lint bench native

# The install compiles the modules ksr/native.py lists with mypyc (setup.py, docs/build.md): a
# change to one of their sources makes the next make target compile them again.
NATIVE_SOURCES := $(wildcard ksr/sip/*.py) ksr/core/hashes.py ksr/core/context.py \
	ksr/core/core_stats.py ksr/core/pipeline.py ksr/core/scripts.py ksr/core/stats.py \
	ksr/core/stateless.py \
	ksr/kemi/bindings.py ksr/kemi/runs.py \
	ksr/core/timers.py ksr/core/sending.py ksr/core/hosts.py ksr/core/latency.py \
	ksr/core/myself.py ksr/core/resolve_now.py ksr/core/idle_loop.py ksr/transport/udp_read.py \
	modules/sanity/checks.py modules/maxfwd/process.py \
	modules/registrar/parse.py modules/registrar/save.py modules/registrar/lookup.py modules/registrar/methods.py modules/usrloc/contact.py modules/usrloc/api.py \
	modules/tm/api.py modules/tm/txn.py modules/tm/engine.py modules/tm/relay.py \
	modules/tm/replies.py modules/rr/route.py modules/dialog/clock.py modules/dialog/model.py modules/dialog/table.py \
	modules/dialog/requests.py modules/dialog/manager.py modules/dialog/tmglue.py \
	ksr/native.py setup.py

$(VENV)/.installed: pyproject.toml $(NATIVE_SOURCES)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Compile again now (the venv is there; `make test` would do it too).
native:
	$(PY) -m pip install -q --no-deps -e .
	touch $(VENV)/.installed

sipp:
	@command -v sipp >/dev/null 2>&1 || { \
	  echo "installing sip-tester (sipp)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq sip-tester; }

# The apt packages of the tests, when missing: sipp, and the PostgreSQL/Redis server binaries
# tests/services.py runs throwaway servers from (on private ports, when none answers on the
# usual ones). KSR_TEST_SERVICES=system: use only running servers, install no database.
# Outside software some tests run for real (each such test skips with its reason when missing):
# Kamailio 5.6 (database interop, HEP capture), rtpengine, sipvicious, Redis Sentinel, promtool,
# Chromium (status page), Node.js/npm (a HEP decoder). KSR_TEST_EXTRAS=no installs none of them.
# The services these packages start on a systemd machine (Kamailio on 5060, rtpengine, Sentinel)
# are stopped and disabled right after the install: the tests run their own on private ports.
TEST_EXTRA_DEBS := kamailio kamailio-lua-modules kamailio-postgres-modules kamailio-sqlite-modules \
	kamailio-python3-modules kamailio-extra-modules rtpengine-daemon sipvicious redis-sentinel \
	prometheus chromium nodejs

testdeps:
	@PKGS=""; \
	command -v sipp >/dev/null 2>&1 || PKGS="sip-tester"; \
	if [ "$${KSR_TEST_EXTRAS:-yes}" != no ]; then \
	  for p in $(TEST_EXTRA_DEBS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || PKGS="$$PKGS $$p"; \
	  done; \
	  command -v npm >/dev/null 2>&1 || PKGS="$$PKGS npm"; \
	fi; \
	if [ "$${KSR_TEST_SERVICES:-auto}" != system ]; then \
	  { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || PKGS="$$PKGS postgresql"; \
	  command -v redis-server >/dev/null 2>&1 || PKGS="$$PKGS redis-server"; \
	fi; \
	if [ -n "$$PKGS" ]; then \
	  echo "installing $$PKGS"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$PKGS; \
	  for svc in kamailio rtpengine-daemon redis-sentinel; do \
	    case " $$PKGS " in *" $$svc "*|*" $${svc%-daemon} "*) \
	      $$SUDO systemctl disable --now $$svc >/dev/null 2>&1 || true;; esac; done; fi

run: $(VENV)/.installed
	$(PY) -m ksr run $(ARGS)

# The compiled modules' tests once more on their pure-Python sources (the fallback).
PURE_TESTS := tests/sip tests/tm tests/dialog tests/test_rfc4475.py \
	tests/core/test_received_via.py tests/core/test_max_message_size.py \
	tests/core/test_hashes.py tests/test_sanity.py tests/registrar/test_rfc3261_register.py \
	tests/registrar/test_usrloc.py tests/core/test_overload_shed.py tests/transport/test_prom.py \
	tests/core/test_idle_wait.py tests/transport/test_udp_order.py \
	tests/test_maxfwd.py tests/kemi/test_bindings.py tests/kemi/test_via.py tests/kemi/test_reload.py \
	tests/kemi/test_event_callbacks.py tests/core/test_route_observe.py \
	tests/metrics/test_stats_merge.py tests/core/test_dns_resolution.py tests/modules/test_corex.py \
	tests/core/test_timers.py tests/security/test_malformed_input.py tests/core/test_myself.py

test: $(VENV)/.installed testdeps
	$(PY) -m pytest -q $(ARGS)
	KSR_PURE_PYTHON=1 $(PY) -m pytest -q $(PURE_TESTS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ksr modules tests bench setup.py
	$(VENV)/bin/ruff format --check ksr modules tests bench setup.py
	$(VENV)/bin/mypy ksr setup.py

bench: $(VENV)/.installed sipp
	$(PY) -m bench.run $(ARGS)
