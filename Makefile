# Two commands set up a fresh machine: `make run` (the bot on the embedded SQLite default)
# and `make test` (the whole test suite). Both create their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test bench heavy chromium demo clean bundle bundle-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	$(BIN)/qunzhi serve

# Debian's nginx serves the deployment topology test (tests/deploy, run as its own nginx, never the
# system service). Debian's Chromium drives the dashboard's browser tests (Playwright never downloads a browser);
# a CJK font makes the saved screenshot readable (the pages themselves load no fonts).
chromium:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi wqy; } || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
	    || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "not root: install Debian's chromium and fonts-wqy-microhei packages for the browser tests"; fi; }
	@{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || { \
	  if [ "$$(id -u)" = 0 ]; then (export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq nginx-light >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }) \
	    || echo "nginx could not be installed: the deployment topology tests will be skipped"; \
	  else echo "not root: install Debian's nginx for the deployment topology tests (tests/deploy)"; fi; }

test: $(STAMP) chromium
	$(BIN)/pytest -q

# The simulated county, kept in the configured database (refused when it holds real data); then
# `make run` and the printed one-time link open it in the dashboard.
demo: $(STAMP)
	$(BIN)/qunzhi demo --keep

# Speed and memory figures (not run in CI): see README.
bench: $(STAMP)
	$(BIN)/python benchmarks/scan.py
	$(BIN)/python benchmarks/outbox.py
	$(BIN)/python benchmarks/nlu.py

# Heavy load, fault and scale runs (issue 6); they need PostgreSQL for the PostgreSQL figures.
# Offline bundle for a county intranet: make bundle TARGET=py311-aarch64 (default: this machine's Python, x86_64)
TARGET ?= py$(shell $(PYTHON) -c 'import sys; print("%d%d" % sys.version_info[:2])')-x86_64
bundle: $(STAMP)
	$(BIN)/python deploy/bundle.py --target $(TARGET)

# Builds the bundle and installs it into a fresh venv with pip --no-index (slow the first time; wheels cached)
bundle-check: $(STAMP)
	$(BIN)/python deploy/bundle.py --target $(TARGET) --check

heavy: $(STAMP)
	$(BIN)/python benchmarks/run_heavy.py

clean:
	rm -rf $(VENV) .pytest_cache qunzhi.db*
