# The README's two commands: `make demo` and `make test`. Both set up .venv first (idempotent).
PY := .venv/bin/python

.PHONY: setup demo test bench docs clean
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m droplab demo

test:
	@DROPLAB_EXTRAS=test bash scripts/setup.sh
	$(PY) -m pytest -q

# The long ones run by hand: benchmarks/seeds_auto.py (two demo sweeps, 20 seeds) and
# benchmarks/uci_protocol.py (the published UCI protocol on bostonHousing, about 1 min of droplab
# and 30 s of timed plain runs on a quiet 2-core machine).
bench:
	@DROPLAB_EXTRAS=optuna bash scripts/setup.sh
	$(PY) benchmarks/dropout_kernel.py
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/sweep_throughput.py
	$(PY) benchmarks/mc_inference.py
	$(PY) benchmarks/ensemble.py
	$(PY) benchmarks/droppath_skip.py
	$(PY) benchmarks/user_model_sweep.py

# The documentation site, strictly (warnings are errors), offline, into docs/_build/html; the
# gallery's examples run during the build (an unchanged example is not rerun).
docs:
	@DROPLAB_EXTRAS=docs bash scripts/setup.sh
	$(PY) -m sphinx -b html -W --keep-going -n -q docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

clean:
	rm -rf .venv build *.egg-info src/*.egg-info
