# The README's two commands: `make demo` and `make test`. Both set up .venv first (idempotent).
PY := .venv/bin/python

.PHONY: setup demo test bench clean
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m droplab demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/dropout_kernel.py

clean:
	rm -rf .venv build *.egg-info src/*.egg-info
