# `make run` and `make test` need only python3 and make: each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Quiet TensorFlow's start-up chatter in our own commands (users' environments are theirs).
export TF_CPP_MIN_LOG_LEVEL ?= 2
# CI runs the derandomized hypothesis profile; elsewhere HYPOTHESIS_PROFILE picks one (dev default).
ifdef CI
export HYPOTHESIS_PROFILE ?= ci
endif
# pytest-xdist: the suite spread over the cores (-n auto); worksteal lets an idle worker take
# tests queued for a busy one, so the slow plugin and property tests do not end on one core.
PYTEST_ARGS ?= -n auto --dist worksteal

.PHONY: run test lint mutants corpus numpy course examples bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,lint]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gradcheck

examples: $(STAMP)
	$(PY) examples/run_all.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff: the linter and the format check CI runs before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Bugs planted in the harness itself, one at a time; each must make some test fail.
mutants: $(STAMP)
	$(PY) tools/mutation.py

# Catch rate and false alarms on the corpus of user-style models (tests/corpus.py), both modes.
corpus: $(STAMP)
	$(PY) tools/corpus_rates.py --markdown tools/corpus_results.md

# False alarms and the smallest planted error caught where finite differences judge alone
# (the NumPy corpus, tests/numpy_corpus.py), by dtype.
numpy: $(STAMP)
	$(PY) tools/numpy_rates.py --markdown tools/numpy_results.md

# The harness side by side with a course's own checker on course-assignment code
# (tests/course_corpus.py): catch rate, false alarms and time, per kind, both modes.
course: $(STAMP)
	$(PY) tools/course_rates.py --markdown tools/course_results.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/bench.py
