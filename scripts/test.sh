#!/usr/bin/env bash
# Set up the development environment (once) and run ruff and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first, pinned, so pip never pulls a multi-GB CUDA build for the engine's range.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.1"
.venv/bin/python -m pip install -q -e ".[engine,test]"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
