# Every target sets itself up: a fresh clone needs nothing but python3.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench aot faults fixtures clean

$(STAMP): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

# The demo is a CPU job; the venv's libtpu (for the AOT tests) would otherwise be probed.
demo: $(STAMP)
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m mpt_jax.pipeline --gin_file=pipelines/demo.gin

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# Every stage of T5 1.1 Base/XL/XXL compiled for TPU v5e-8, v5e-16 and v4-8 on this CPU
# (python -m mpt_jax.aot with libtpu; about an hour on 2 cores): one table of memory and fit.
aot: $(STAMP)
	$(PY) benchmarks/aot_table.py

# A kill/corrupt/resume soak: 20 random faults on a tiny model (about 6 minutes here).
faults: $(STAMP)
	$(PY) benchmarks/faults.py

# Regenerates tests/fixtures with PyTorch, transformers and PEFT (the `reference` extra).
fixtures:
	test -x $(VENV)-reference/bin/python || python3 -m venv $(VENV)-reference
	$(VENV)-reference/bin/python -m pip install --quiet -e '.[reference]'
	$(VENV)-reference/bin/python tests/make_reference.py

clean:
	rm -rf $(VENV) $(VENV)-reference .pytest_cache
