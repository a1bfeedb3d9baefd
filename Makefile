# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: venv demo test lint clean

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

clean:
	rm -rf $(VENV) outputs saved log log_tensorboard
