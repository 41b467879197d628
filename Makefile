# ampcap: `make demo` and `make test` work on a fresh machine (Debian/Ubuntu, Python >= 3.10).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AMPCAP := $(VENV)/bin/ampcap
# The CPU wheel of exactly this torch is installed first; any other spec pulls CUDA packages.
TORCH_SPEC := torch==2.13.0
# chromium: the browser the report tests drive headless.
DEBIAN_PACKAGES := jackd2 libportaudio2 libsndfile1 chromium
# Only the benchmarks need third-party devices under test and the realistic DI they play.
BENCH_DEBIAN_PACKAGES := guitarix-lv2 lilv-utils fluidsynth fluid-soundfont-gm
# glibc keeps freed memory instead of returning it to the kernel on every training step.
export MALLOC_MMAP_THRESHOLD_ ?= 1073741824
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824
export MALLOC_TOP_PAD_ ?= 268435456

.PHONY: install system-deps bench-deps demo test lint bench clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=70.1"
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,midi]"
	touch $@

install: $(VENV)/.installed

# Debian packages the real-audio and browser tests need, installed without questions where missing.
system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

bench-deps: system-deps
	@missing=$$(for p in $(BENCH_DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

clean-demo:
	rm -rf captures/demo data/demo runs/demo

demo: install clean-demo
	$(AMPCAP) record --rig virtual --knob isf --steps 5 --out captures/demo --di-seconds 60 --yes
	$(AMPCAP) align captures/demo
	$(AMPCAP) split captures/demo --out data/demo --seed 0
	$(AMPCAP) train data/demo --out runs/demo --hidden 32 --minutes 8
	$(AMPCAP) report captures/demo
	$(AMPCAP) report runs/demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# system-deps installs JACK, PortAudio and Chromium, so the real-audio and browser tests must
# run, not skip.
test: install system-deps lint
	AMPCAP_REQUIRE_JACK=1 AMPCAP_REQUIRE_BROWSER=1 $(PY) -m pytest

bench: install bench-deps
	$(PY) benchmarks/alignment.py
	$(PY) benchmarks/split.py
	$(PY) benchmarks/capture.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/plan.py
