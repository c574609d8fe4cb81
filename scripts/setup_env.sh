#!/usr/bin/env bash
# Create .venv (once) and install the project with the given extras, e.g. `engine,test`.
# torch goes in first, pinned to the CPU build, so pip never pulls a multi-GB CUDA build
# to satisfy the engine's `torch>=2.1`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-engine}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.1"
.venv/bin/python -m pip install -q -e ".[$extras]"
