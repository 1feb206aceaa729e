# The front door: `make demo` (install, then verify real photos through the real service) and
# `make test` (install, then the whole test suite). Works in a `uv venv` or creates .venv itself.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev

.PHONY: install install-baseline redis demo test lint protos clean

$(PY):
	@if command -v uv >/dev/null 2>&1; then uv venv $(VENV); else python3 -m venv $(VENV); fi

# Re-installs only when the project's metadata or the .proto files changed (a stamp file).
comma := ,
STAMP := $(VENV)/.siamatch-installed-$(subst $(comma),-,$(EXTRAS))
install: $(STAMP)

$(STAMP): $(PY) pyproject.toml setup.py $(wildcard protos/siamatch/v1/*.proto)
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade
	$(PY) -m pip install -e '.[$(EXTRAS)]'
	@touch $@

# dlib's face model: the peer baseline of `siamatch evaluate` and bench/ (about 100 MB).
install-baseline:
	$(MAKE) install EXTRAS=dev,baseline

# redis-server: the tests and `siamatch serve` start private ones when none answers. Installed
# from Debian/Ubuntu packages when missing (as root, or through sudo); elsewhere, say so.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    echo "redis-server is missing: installing it with apt-get"; \
	    $$sudo apt-get update -qq && $$sudo apt-get install -y -qq redis-server; \
	  else \
	    echo "redis-server is missing: install Redis (e.g. brew install redis), then re-run"; exit 1; \
	  fi; }

demo: install redis
	$(PY) -m siamatch.demo

test: install redis
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

protos: install
	$(PY) -m protos.generate

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find protos -name '*_pb2*.py*' -delete
