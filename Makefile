# Two commands do all the set-up on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= book
JOBS ?= 2
export HF_HUB_OFFLINE ?= 1
# the offline data mirror, when this checkout has one beside it (CI sets it explicitly)
export MCL_DATA_MIRROR ?= $(wildcard $(abspath ..)/shared/data)

.PHONY: setup book test data bench lint clean paper-check workshop workshop-pack

# The virtual environment with the pinned set (the library, its tests, the book's package); rebuilt when a
# pyproject.toml changes.
$(VENV)/.installed: pyproject.toml book/pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]" -e ./book
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

setup: $(VENV)/.installed

book: setup  ## execute every chapter with papermill at SCALE (smoke|book|paper), JOBS at a time, and build the HTML
	$(PY) -m mclbook.build --scale $(SCALE) --jobs $(JOBS)

test: setup  ## pytest (includes executing the chapters at smoke scale and building the book)
	$(PY) -m pytest

workshop: setup  ## student and solution notebooks of the workshop chapters, under _build/workshop/
	$(PY) -m mclbook.workshop notebooks

workshop-pack: setup  ## the offline workshop folder and zip for USB sticks, _build/workshop/mcl-workshop{,.zip}
	$(PY) -m mclbook.workshop pack --archive $(PACK_ARGS)

data: setup  ## prepare the data sets into data/
	$(PY) -m mcl data prepare

bench: setup  ## benchmarks: print ratios against peers measured in the same run
	$(PY) bench/run_all.py

paper-check: setup  ## on a GPU: the CUDA tests and a shortened paper-scale run of chapters 2 and 5 (results/paper/)
	bash bench/paper_check.sh

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf _build
