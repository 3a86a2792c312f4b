SHELL := /bin/bash

# PeerLab: `make demo` and `make test` set everything up themselves (virtual environment,
# pinned dependencies). See README.md.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock pyproject.toml | cksum | cut -d" " -f1)
RESULTS ?= results

.PHONY: help venv demo test unit fuzz fuzz-short scenarios examples examples-python examples-profiles examples-pytest suite-check installed-check docker images chromium lint lint-ci format bench bench-scale lock clean

help:
	@echo "make demo       three agents on this machine exchange every message type"
	@echo "make test       lint, unit + in-process tests, then every scenario against real"
	@echo "                containers (installs/starts Docker where missing, builds images)"
	@echo "make unit       lint-free fast part: unit and in-process integration tests"
	@echo "make scenarios  the built-in container scenarios (peerlab run all)"
	@echo "make examples   the example scenarios in examples/, run from outside the package:"
	@echo "                a Python and a YAML file (under three network profiles), and the"
	@echo "                pytest plugin example (under two)"
	@echo "make fuzz       seeded fuzz campaigns against the decoder, the signaling server and"
	@echo "                the control API, full budget (~3 min; make test runs a short one)"
	@echo "make installed-check  the built wheel in a fresh venv: images from the installed"
	@echo "                copy, the plugin example beside a user's own scenarios.py"
	@echo "make lint-ci    lint the CI recipes in examples/ci (actionlint, check-jsonschema)"
	@echo "make images     build the images (OFFLINE=1: no registry; auto-detected)"
	@echo "make bench      agent messaging path vs raw aiortc, same machine, same run"
	@echo "make bench-scale a full mesh of 16 agents through the real stack: connect time,"
	@echo "                delivery, memory and CPU per agent (SCALE_ARGS=\"--peers 32 ...\")"
	@echo "make lint | format | lock | clean"

# pip fetches uv (pinned in requirements-dev.lock), which installs the pinned dependencies:
# the venv is ready in 2.7 s instead of pip's 13.8 on this machine, at the start of every
# fresh clone's `make test` (README, "Measured").
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements-dev.lock)
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"PeerLab needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	@echo "==> creating $(VENV) and installing pinned dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: venv
	$(PY) -m peerlab.scenarios.demo

# `make test` in three rounds, the parts of each side by side (`make -j`, every line
# printed as it comes): first what runs on the host (lint, unit tests on three workers,
# fuzzing) while the images and Chromium are checked; then everything that runs
# containers, sharing TEST_STACKS lab stacks at a time (PEERLAB_MAX_STACKS,
# docs/stack.md); last, alone, the test that builds images from an installed wheel (in
# the second round it coincided with failed shaping proofs: with pip, and once in five
# runs with uv). The host round runs alone: every busy host process weighs
# as much as all of Docker's containers together (cgroup v1), so unit tests beside a
# stack starve it; even at idle priority (SCHED_IDLE) beside the stacks, the 4g profile
# partition's bystander moved up to +9.3 ms in passing runs and failed its proof twice
# in 13 (+22.9, +38.8 ms); with the host round apart it moved −1.6 to +5.3 ms and never
# failed. Within the container round, the containers that are the network (routers,
# coturn, Toxiproxy) get 8 times the CPU weight of the rest, so that a busy machine slows
# the agents under test, not the delay lines and the probes that prove each fault
# (README, "Suite speed"). Four stacks (TEST_STACKS=4 SUITE_CHECK_JOBS=4: with two
# workers the suite check's light labs queue one behind another) took 3 min 29 s here,
# twice, but the proofs' margins thinned (a +10 ms shaping measured +20.3, an untouched
# peer +10.1 ms of its 15): more cores, more stacks. TEST_JOBS=1: one part at a time.
TEST_JOBS ?= 8
TEST_STACKS ?= 3
test:
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=line UNIT_JOBS=3 \
		lint lint-ci unit fuzz-short images chromium
	@PEERLAB_MAX_STACKS=$(TEST_STACKS) $(MAKE) --no-print-directory -j$(TEST_JOBS) \
		--output-sync=line JOBS=$(TEST_STACKS) SUITE_CHECK_MARK="containers and not image_build" \
		scenarios examples suite-check
	@$(MAKE) --no-print-directory installed-check

# Unit and in-process tests; UNIT_JOBS > 0 spreads them over that many pytest workers.
UNIT_JOBS ?= 0
unit: venv
	@mkdir -p $(RESULTS)
	$(PY) -m pytest -m "not containers" -n $(UNIT_JOBS) --junitxml=$(RESULTS)/junit-unit.xml

# Seeded, bounded fuzz campaigns (docs/fuzz.md): the data-channel decoder, the signaling
# server and an agent's control API, in process on 127.0.0.1. A finding prints its replay.
FUZZ_SEED ?= 1
fuzz: venv
	$(PY) -m fuzz --budget full --seed $(FUZZ_SEED)

fuzz-short: venv
	$(PY) -m fuzz --budget short --seed $(FUZZ_SEED)

docker:
	@bash scripts/ensure-docker.sh

images: docker
	@bash scripts/build-images.sh

# Scenarios run side by side, each on a stack of its own; JOBS=1 runs one at a time.
JOBS ?= 3
scenarios: venv images
	docker compose config --quiet
	$(PY) -m peerlab.scenarios.cli run all --jobs $(JOBS) --junit $(RESULTS)/junit-scenarios.xml

# Scenarios users write, run the way they run them: files outside the package, one
# scenario under a matrix of network profiles (one JUnit test case per scenario x profile),
# and a user's pytest suite using the plugin, from its own folder.
EXAMPLE_PROFILES ?= lan,wifi,4g
examples: examples-python examples-profiles examples-pytest

# Run from a folder outside the checkout, as a user's own repository would: nothing
# found through the working directory.
OUTSIDE ?= $${TMPDIR:-/tmp}
examples-python: venv images
	cd $(OUTSIDE) && $(abspath $(PY)) -m peerlab.scenarios.cli run \
		$(abspath examples/scenarios/every_message_type.py) --results $(abspath $(RESULTS)) \
		--junit $(abspath $(RESULTS))/junit-examples-python.xml

examples-profiles: venv images
	cd $(OUTSIDE) && $(abspath $(PY)) -m peerlab.scenarios.cli run \
		$(abspath examples/scenarios/chat_through_a_cut.yaml) --profile $(EXAMPLE_PROFILES) \
		--jobs $(JOBS) --results $(abspath $(RESULTS)) \
		--junit $(abspath $(RESULTS))/junit-examples-profiles.xml

examples-pytest: venv images
	cd examples/pytest && $(abspath $(PY)) -m pytest -q --peerlab-profile lan,wifi \
		--peerlab-results $(abspath $(RESULTS)) \
		--junitxml=$(abspath $(RESULTS))/junit-examples-pytest.xml

# Headless Chromium from Debian, for the test that renders a run's report.html.
chromium:
	@bash scripts/ensure-chromium.sh

# The suite must catch a broken agent (one that never acks, one that delivers copies
# twice), an interrupted run must leave nothing behind, a run's report must render in a
# real browser, and the built wheel must work installed: the tests marked `containers`.
# Niced: its host-side work (a wheel, a fresh venv, Chromium) would otherwise take the CPU
# from every container of the stacks running beside it (see `test`).
# The tests go out longest first (tests/conftest.py), two to each worker, then the next to
# whichever runs low (`--dist load`): split into halves up front (worksteal), one worker
# ran the four long ones one after another, and the last ended the container round alone.
SUITE_CHECK_JOBS ?= 2
SUITE_CHECK_MARK ?= containers
suite-check: venv images chromium
	nice -n 10 $(PY) -m pytest -m "$(SUITE_CHECK_MARK)" -n $(SUITE_CHECK_JOBS) --dist load \
		--junitxml=$(RESULTS)/junit-suite-check.xml

# PeerLab as a user installs it: the built wheel in a fresh virtual environment builds the
# images from its own copy and passes the plugin example (tests/test_installed.py).
installed-check: venv images
	$(PY) -m pytest -m image_build --junitxml=$(RESULTS)/junit-installed-check.xml

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The CI recipes users copy (examples/ci/): actionlint and check-jsonschema, installed into
# build/tools on first use (Go module proxy, PyPI), reused afterwards.
lint-ci: venv
	@UV=$(abspath $(VENV))/bin/uv bash scripts/lint-ci.sh

format: venv
	$(PY) -m ruff format .

bench: venv
	$(PY) -m bench.agent_vs_raw

# A full mesh of N agent containers through the real stack (bench/scale.py): every pair
# connected, every agent sends to every other; ends with the `mesh peers=...` line.
SCALE_ARGS ?=
bench-scale: venv images
	$(PY) -m bench.scale $(SCALE_ARGS)

# Re-pin. requirements.lock is what the images install (docker/python.Dockerfile): the
# closure of the agent's and the signaling server's own requirements, the entries of
# pyproject.toml's `dependencies` named in AGENT_PACKAGES (versions stay written there
# only). The rest of `dependencies` (the harness, the CLI, the pytest plugin) runs on the
# host only; it goes, with the `dev` extra, into requirements-dev.lock.
AGENT_PACKAGES := aiortc websockets aiohttp
AGENT_REQUIREMENTS_PY := import re, sys, tomllib; \
	deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	named = {re.match(r"[\w.-]+", dep)[0].lower(): dep for dep in deps}; \
	missing = [name for name in sys.argv[1:] if name not in named]; \
	missing and sys.exit(f"AGENT_PACKAGES not in pyproject.toml dependencies: {missing}"); \
	print(*(named[name] for name in sys.argv[1:]), sep="\n")
lock:
	rm -rf build/lock && $(PYTHON) -m venv build/lock/rt && $(PYTHON) -m venv build/lock/dev
	$(PYTHON) -c '$(AGENT_REQUIREMENTS_PY)' $(AGENT_PACKAGES) > build/lock/agent-requirements.txt
	build/lock/rt/bin/pip install --quiet -r build/lock/agent-requirements.txt
	build/lock/dev/bin/pip install --quiet -e '.[dev]'
	{ echo "# Runtime dependencies of the agent and the signaling server, pinned (pip freeze)."; \
	  echo "# Regenerate with: make lock"; \
	  build/lock/rt/bin/pip freeze --exclude-editable; } > requirements.lock
	{ echo "# Everything the tests, linters and the harness need, on top of requirements.lock."; \
	  echo "# Regenerate with: make lock"; echo "-r requirements.lock"; \
	  comm -13 <(build/lock/rt/bin/pip freeze --exclude-editable | sort) \
	           <(build/lock/dev/bin/pip freeze --exclude-editable | sort); } > requirements-dev.lock

clean:
	rm -rf $(VENV) $(RESULTS) build .pytest_cache .ruff_cache .hypothesis
