# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: venv demo test lint mutation clean

$(BIN)/activate: setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip<26"
	# torch first, pinned: a looser spec pulls a multi-GB CUDA build on CPU machines
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(BIN)/activate

venv: $(BIN)/activate

demo: venv
	$(BIN)/python run_recbole_au.py --model BPR --dataset ml-100k --config_files configs/default.yaml \
		--unlearn attrcloak \
		--output_dir outputs/demo-bpr-ml-100k --export_embeddings $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q $(ARGS)

# Mutation testing (docs/testing.md): mutmut mutates losses/, audit/ and engine/ ([tool.mutmut] in
# pyproject.toml), runs the fast unit tests on each mutant and lists the survivors. Not in CI.
mutation: venv
	$(BIN)/pip install -q -c constraints.txt -e ".[test,mutation]"
	rm -rf mutants
	# one BLAS/OpenMP thread: mutmut forks per mutant, and a forked torch thread pool deadlocks
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results > mutation-results.txt
	@grep -c ": survived" mutation-results.txt | xargs echo "survivors (mutation-results.txt):"

clean:
	rm -rf $(VENV) outputs saved log log_tensorboard mutants mutation-results.txt
