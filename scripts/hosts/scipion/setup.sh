#!/usr/bin/env bash
# Real Scipion 3 (pyworkflow, pwem, tomo, reliontomo and the `scipion` launcher) in a virtual
# environment of its own, headless.
#   scripts/hosts/scipion/setup.sh VENV      (about 3 minutes; a second call returns at once)
# The interpreter is $PYTHON (default python3.11); it needs tkinter (pwem.protocols imports
# pyworkflow.gui), though no display. Every Scipion run then needs the environment of
# README.md ("Running Scipion"): tests get it from tests/external_envs.py:scipion_environ().
set -euo pipefail
venv=${1:?usage: setup.sh VENV}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3.11}
marker="$venv/.scipion-headless-ok"
if [ -f "$marker" ]; then
  echo "Scipion 3 already set up in $venv"
  exit 0
fi
if ! "$python" -c "import tkinter" 2>/dev/null; then
  echo "setup.sh: error: $python has no tkinter, which Scipion imports (Debian: apt-get install python3-tk)" >&2
  exit 1
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
# Load the packages the way Scipion does (its domain set) before calling it ready.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && SCIPION_HOME="$scratch" SCIPION_DOMAIN=pwem SCIPION_NOTIFY=False \
   "$venv/bin/python" -c "import pyworkflow, pwem, pwem.protocols, tomo.protocols
import reliontomo, scipion.install")
touch "$marker"
echo "Scipion 3 (pyworkflow $("$venv/bin/python" -c 'import pyworkflow; print(pyworkflow.__version__)')) ready in $venv"
