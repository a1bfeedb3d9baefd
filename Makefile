# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test` (the pinned
# stack); `make test-current` runs the current-stack subset in a second venv (README, "Two stacks").
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CURRENT_PYTHON ?= python3.11
CURRENT_VENV ?= .venv-current
CBIN := $(CURRENT_VENV)/bin
ARGS ?=
MUTATION_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 JOBLIB_MULTIPROCESSING=0

.PHONY: venv venv-current demo test test-current lint mutation mutation-sample check-results clean

$(BIN)/activate: setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip<26"
	# torch first, pinned: a looser spec pulls a multi-GB CUDA build on CPU machines
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(BIN)/activate

venv: $(BIN)/activate

# The current stack: RecBole 1.2.1 declares ray<=2.6.3, so RecBole and this package go in without
# their declared dependencies, after the explicit list of their real ones; `pip check` may then
# report that one pin and nothing else.
$(CBIN)/activate: setup.cfg requirements-current.txt constraints-current.txt
	$(CURRENT_PYTHON) -m venv $(CURRENT_VENV)
	$(CBIN)/pip install -q --upgrade "pip<26"
	$(CBIN)/pip install -q torch==2.13.0
	$(CBIN)/pip install -q -c constraints-current.txt -r requirements-current.txt
	$(CBIN)/pip install -q --no-deps -c constraints-current.txt recbole==1.2.1 -e .
	$(CBIN)/pip check | grep -v "^recbole 1.2.1 has requirement ray<=2.6.3," | (! grep .)
	touch $(CBIN)/activate

venv-current: $(CBIN)/activate

demo: venv
	$(BIN)/python run_recbole_au.py --model BPR --dataset ml-100k --config_files configs/default.yaml \
		--unlearn attrcloak \
		--output_dir outputs/demo-bpr-ml-100k --export_embeddings $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q $(ARGS)

# every number the READMEs and docs quote from benchmarks/results against the committed CSVs
# (benchmarks/README.md, "Every quoted number from a results file"; no training)
check-results: venv
	$(BIN)/python benchmarks/check.py

# the tests marked `current` (pyproject.toml): shims, LightGCN/NGCF, AttrCloak, audit, a sweep
test-current: venv-current
	$(CBIN)/python -m pytest -q -m current $(ARGS)

# Mutation testing (docs/testing.md): mutmut mutates losses/, audit/ and engine/ ([tool.mutmut] in
# pyproject.toml), runs the fast unit tests on each mutant and lists the survivors. Not in CI.
mutation: venv
	$(BIN)/pip install -q -c constraints.txt -e ".[test,mutation]"
	rm -rf mutants
	# one BLAS/OpenMP thread: mutmut forks per mutant, and a forked torch thread pool deadlocks;
	# no joblib worker processes: a forked mutant waits forever on the parent's loky pool
	$(MUTATION_ENV) $(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results > mutation-results.txt
	@grep -c ": survived" mutation-results.txt | xargs echo "survivors (mutation-results.txt):"

# a seeded sample of the mutants, then every mutant of relabel.py and moo.py (minutes, not
# hours): benchmarks/results/mutation, docs/testing.md
mutation-sample: venv
	$(BIN)/pip install -q -c constraints.txt -e ".[test,mutation]"
	rm -rf mutants
	$(MUTATION_ENV) $(BIN)/python benchmarks/mutation_sample.py $(ARGS)
	$(MUTATION_ENV) $(BIN)/python benchmarks/mutation_sample.py --per-module 0 --focus-size 1000 \
		--out benchmarks/results/mutation/focus
	$(BIN)/python benchmarks/check.py --write

clean:
	rm -rf $(VENV) $(CURRENT_VENV) outputs saved log log_tensorboard mutants mutation-results.txt
