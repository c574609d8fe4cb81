#!/usr/bin/env bash
# Create .venv (once) and install the project with the given extras, e.g. `engine,test`.
# torch goes in first, pinned to the CPU build torch==2.13.0, so pip never pulls a multi-GB
# CUDA build to satisfy the engine's `torch>=2.1`. A torch already in .venv (your own CUDA
# build, say) is kept. Where torch==2.13.0 cannot be installed, this says so and which torch
# it installed instead; CRYOVIS_REQUIRE_TORCH_PIN=1 makes that an error.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-engine}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip=(.venv/bin/python -m pip)
"${pip[@]}" install -q --upgrade pip

torch_version() {
  .venv/bin/python -c 'import torch; print(torch.__version__)' 2>/dev/null
}
pin="torch==2.13.0"
if [[ ",$extras," == *",engine,"* ]]; then
  if ! have=$(torch_version); then
    if ! "${pip[@]}" install -q "$pin"; then
      if [ "${CRYOVIS_REQUIRE_TORCH_PIN:-0}" = 1 ]; then
        echo "setup_env.sh: error: could not install $pin (CRYOVIS_REQUIRE_TORCH_PIN=1)" >&2
        exit 1
      fi
      echo "setup_env.sh: WARNING: could not install $pin; installing the newest torch>=2.1" >&2
      "${pip[@]}" install -q "torch>=2.1"
    fi
    have=$(torch_version)
  fi
  case "$have" in
    2.13.0|2.13.0+cpu) echo "setup_env.sh: torch $have (the pinned CPU build)" ;;
    *) echo "setup_env.sh: NOTE: torch $have is installed, not the pinned $pin CPU build" \
            "(figures in docs/ were measured with $pin)" >&2 ;;
  esac
fi
"${pip[@]}" install -q -e ".[$extras]"
