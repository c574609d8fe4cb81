#!/usr/bin/env bash
# Real UCSF ChimeraX 1.7.1, headless and offscreen, in a virtual environment of its own.
#   scripts/hosts/chimerax/setup.sh VENV     (4-5 minutes; a second call returns at once)
#   VENV/bin/python -m chimerax.core --nogui --offscreen --exit --cmd "version"
# The interpreter is $PYTHON (default python3.11). ChimeraX comes from the package index as
# the wheel `ChimeraX==0.1.71`; finish_install.py repairs what that wheel lacks (README.md).
# Offscreen OpenGL is OSMesa (Debian: libosmesa6), installed with apt-get when missing.
set -euo pipefail
venv=${1:?usage: setup.sh VENV}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3.11}
marker="$venv/.chimerax-headless-ok"
if [ -f "$marker" ]; then
  echo "ChimeraX 1.7.1 already set up in $venv"
  exit 0
fi
if ! ldconfig -p | grep -q 'libOSMesa\.so'; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing libosmesa6 (offscreen OpenGL) with apt-get"
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends libosmesa6 >/dev/null
  else
    echo "setup.sh: error: offscreen OpenGL needs libOSMesa (Debian/Ubuntu: apt-get install libosmesa6)" >&2
    exit 1
  fi
fi
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
# ChimeraX's pins first (imagecodecs 2024.1.1 has no wheel for Python 3.11: the nearest
# wheels instead), then the wheel itself without letting it ask for an sdist build.
"${pip[@]}" --prefer-binary --only-binary imagecodecs -r "$here/requirements.txt"
"${pip[@]}" --no-deps "ChimeraX==0.1.71"
# Imported by ChimeraX but not declared by the wheel; wheel and setuptools build bundles,
# pytest runs suites inside a session.
"${pip[@]}" --prefer-binary tinyarray tomli "grako==3.99.9" wheel setuptools pytest
"$venv/bin/python" "$here/finish_install.py"
"$venv/bin/python" -m chimerax.core --nogui --offscreen --exit --cmd "version" >/dev/null
touch "$marker"
echo "ChimeraX 1.7.1 ready in $venv"
