# Set-up and the two entry points: `make demo` (a short real C-GaP training on Fashion-MNIST)
# and `make test` (lint + test suite). Both work on a fresh machine: they create the virtual
# environment, pin the CPU build of torch, install the package and the Debian dataset package.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# The translation and language-modelling corpora: diatheke reads the Bible modules (see growprune/data/bible.py).
BIBLE_PACKAGES := diatheke sword-text-web sword-text-sparv

.PHONY: setup data partseg-data demo test test-kernels test-llm bench-llm test-bench-llm test-slow lint clean

setup: $(VENV)/.installed

# Every virtual environment here is made the same way: the pinned CPU torch first (so that no extra
# pulls another build), then the package with what that environment is for (INSTALL_<folder>).
INSTALL_$(VENV) := -e ".[test,bench]"
%/.installed: pyproject.toml Makefile
	python3 -m venv $*
	$*/bin/pip install -q --upgrade pip
	$*/bin/pip install -q "$(TORCH)"
	$*/bin/pip install -q $(INSTALL_$*)
	touch $@

data:
	@# The generated COCO-format detection set (growprune/tasks/detection/shapes.py), once, into the cache.
	@if [ -x "$(PY)" ]; then $(PY) -c "from growprune.tasks.detection.shapes import generated_root; print('detection data:', generated_root())"; fi
	@missing=""; \
	if [ ! -f "$(FMNIST)" ] && [ -z "$$GROWPRUNE_DATA" ]; then missing="dataset-fashion-mnist"; fi; \
	if ! command -v diatheke >/dev/null 2>&1 || ! diatheke -b system -k modulelist 2>/dev/null | grep -q spaRV1909eb \
		|| ! diatheke -b system -k modulelist 2>/dev/null | grep -q engWEB2015eb; then \
		missing="$$missing $(BIBLE_PACKAGES)"; fi; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	else \
		echo "missing data packages:$$missing (Debian); Fashion-MNIST can also be placed in a directory named by GROWPRUNE_DATA"; exit 1; \
	fi

# The generated ShapeNet-Part stand-in (the first part-segmentation run also writes it).
partseg-data: setup
	$(PY) -m growprune.tasks.partseg.generator

demo: setup data
	$(VENV)/bin/growprune train fmnist/cgap-quick

lint: setup
	$(VENV)/bin/ruff check growprune tests benchmarks examples

test: setup data lint
	$(PY) -m pytest -q -p no:cacheprovider

# The compressed-tensors export (extra `llm`) needs transformers 4.55 with compressed-tensors 0.14,
# older than the transformers the rest of the suite runs on: its tests run in a virtual environment
# of their own. GROWPRUNE_REQUIRE_LLM=1: they fail, not skip, if that pair is not what is installed.
LLM_VENV ?= .venv-llm
INSTALL_$(LLM_VENV) := -e ".[llm,lm]" "accelerate>=1.0" "pytest>=7" "hypothesis>=6"

test-llm: $(LLM_VENV)/.installed data
	GROWPRUNE_REQUIRE_LLM=1 $(LLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/export/test_compressed_tensors.py

# The language-modelling benchmark's one-shot rows (benchmarks/lm.py): SparseGPT and Wanda by
# llm-compressor, which pins an older transformers than the suite's, in an environment of its own.
# GROWPRUNE_REQUIRE_LLMCOMPRESSOR=1: its test fails, not skips, without that environment.
BENCH_LLM_VENV ?= .venv-bench-llm
INSTALL_$(BENCH_LLM_VENV) := -e ".[bench-llm]"

bench-llm: $(BENCH_LLM_VENV)/.installed

test-bench-llm: setup data bench-llm
	GROWPRUNE_REQUIRE_LLMCOMPRESSOR=1 $(PY) -m pytest -q -p no:cacheprovider -m slow tests/benchmarks/test_lm_oneshot.py

# The tests whose result depends on floating-point round-off (marker `trajectory`), again under
# other CPU kernels than the machine's own: AVX-512 and AVX2 machines round differently, and
# `default` (torch's unvectorized kernels) rounds differently from both on any x86 CPU. CI runs
# it after `make test`; `make test-kernels KERNELS=avx2` picks another set.
KERNELS ?= default
test-kernels: setup data
	ATEN_CPU_CAPABILITY=$(KERNELS) $(PY) -m pytest -q -p no:cacheprovider -m "trajectory and not slow"

test-slow: setup data
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(LLM_VENV) $(BENCH_LLM_VENV) runs .pytest_cache
