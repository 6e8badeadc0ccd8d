VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,dev]'
	bash scripts/install_fashion_mnist.sh
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup   # 2 workers, 1 thread each, in random order (pytest-randomly)

test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow"   # the loop between edits: no whole-process tests

demo: install
	bash scripts/demo.sh

lint: install
	$(PY) -m ruff check s3 tests bench *.py

bench: install
	$(PY) bench/supernet_overhead.py
	$(PY) bench/cost_model.py
	$(PY) bench/train_throughput.py
	$(PY) bench/search_overhead.py
	$(PY) bench/scoring_workers.py
	$(PY) bench/cpu_speed.py
	$(PY) bench/flow_cost.py
	$(PY) bench/roofline.py

clean:
	rm -rf $(VENV) outputs logs multirun wandb .pytest_cache
