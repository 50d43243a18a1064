# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench contract cluster deps deps-demo venv clean

$(STAMP): pyproject.toml relay/pyproject.toml plugins/gatewayd-efm/pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The relay (its own package, never on the Pi) and its test tools, in the same venv.
	$(BIN)/pip install --quiet -e './relay[test]'
	# Device families shipped as their own packages (plugins/), tested with the rest.
	$(BIN)/pip install --quiet -e plugins/gatewayd-efm
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests run against (real peers, not mocks); the demo needs only two.
deps:
	@bash scripts/debian-deps.sh test

deps-demo:
	@bash scripts/debian-deps.sh demo

demo: deps-demo venv
	$(BIN)/python -m demo

test: deps venv lint typecheck pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check gatewayd drivers rules relay tests/relay plugins/gatewayd-efm

typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy --config-file relay/pyproject.toml

pytest: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: deps venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# A 3-node NATS cluster speaking MQTT on loopback (what tests marked `cluster` run against):
# prints the three nodes' URLs and an `[mqtt] url` line for gateway.toml; Ctrl-C stops it.
cluster: venv
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || bash scripts/debian-deps.sh test
	$(BIN)/python -m firmware_stubs.nats_cluster $(CLUSTER_ARGS)

# The machine-readable MQTT contract (docs/contract/), generated from the installed device
# families: run it after changing a family's events, actions, state or telemetry, and commit.
contract: venv
	$(BIN)/python -m gatewayd.contract docs/contract

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
