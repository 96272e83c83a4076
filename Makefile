# Vow — developer entry points. Everything runs inside .venv, built on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint chaos soak bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded,examples,metrics,console]'
	touch $(STAMP)

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/vow demo

# mypy cannot follow setuptools' editable finder (vow.coordinator is the folder coordinator/):
# it checks a view of the installed layout made of symlinks, rebuilt on every run.
lint: $(STAMP)
	$(BIN)/ruff check vow coordinator worker cli tests bench examples
	rm -rf $(VENV)/typecheck && mkdir -p $(VENV)/typecheck/vow
	for f in vow/* coordinator worker cli; do ln -s ../../../$$f $(VENV)/typecheck/vow/; done
	$(BIN)/mypy

chaos: $(STAMP)
	VOW_CHAOS_LONG=1 $(BIN)/python -m pytest -q -m slow tests

# The full-size soak: 1,000,000 calls and 10,000 workflows with a 1 s retention; memory sampled
# every 10 s, plotted to soak-results/memory.png (tests/soak.py; the suite runs a bounded one).
soak: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[soak]'
	$(BIN)/python -m tests.soak --out soak-results

# The README's pictures of the console (docs/console-*.png), taken by the browser test's seed story
# in headless Chromium (Debian: apt-get install chromium chromium-driver). A normal test run puts
# them in the test's temporary folder instead.
screenshots: $(STAMP)
	VOW_SCREENSHOTS=docs/ $(BIN)/python -m pytest -q tests/test_console_browser.py::test_the_seed_story_in_the_browser

# Vow and its peers on one embedded server (bench/README.md), then the same with AOF everysec, then
# what replicas=N / local_fsync cost. The peers are the bench extra; redis-py stays at the version
# Vow was installed with (pinned on the command line, so no peer can move it).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]' "redis==$$($(BIN)/python -c 'import redis; print(redis.__version__)')"
	$(BIN)/python -m bench --json bench-results/latest.json
	$(BIN)/python -m bench --aof everysec --json bench-results/aof-everysec.json
	$(BIN)/python bench/durability.py

clean:
	rm -rf $(VENV) .vow .pytest_cache .mypy_cache .ruff_cache soak-results
