# Two entry points that work on a fresh CPU-only machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; a looser requirement would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: venv install install-test demo test test-slow test-lerobot bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test]"

demo: install
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/vjepa-ac demo

# pytest exits 5 when it collects nothing; that is not a failure of the code under test.
test: install-test
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python -m pytest -q; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-slow: install-test
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python -m pytest -q -m slow

# The LeRobot tests against the real `lerobot` package, installed in its own environment (it pins another torch).
test-lerobot: install-test
	[ -x .venv-lerobot/bin/python ] || ($(PY) -m venv .venv-lerobot && .venv-lerobot/bin/pip install -q lerobot)
	VJEPA_AC_LEROBOT_PYTHON=.venv-lerobot/bin/python $(BIN)/python -m pytest -q tests/data/lerobot

bench: install-test
	for b in bench/*.py; do $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) .venv-lerobot build *.egg-info .pytest_cache
