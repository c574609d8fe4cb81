#!/usr/bin/env bash
# Set up the development environment (once) and run ruff and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh engine,batch,test
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
