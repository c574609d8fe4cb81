#!/usr/bin/env bash
# Set up the environment (once) and run the main job on the embedded default data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh engine
.venv/bin/cryovis demo --out "${1:-demo_out}" --force
