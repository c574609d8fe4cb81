"""The set-up scripts: a clone carries everything its tests need, and setup_env.sh says which
torch it installed.

A clone must test itself in any folder with nothing beside it: no test, script or CI file
reaches outside the repository (the reference folder ``../shared`` of the development
machine is not there in a user's or CI's clone), and every file the tests read is tracked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SELF_CONTAINED = ("tests", "scripts", "benchmarks", ".ci", "pyproject.toml", "README.md",
                  "cryoet_integration", "formats", "validation", "docs", "scipion_plugin",
                  "chimerax_bundle")
OUTSIDE = re.compile(r"\.\./shared|/work/shared|CRYOVIS_SHARED")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--", *SELF_CONTAINED], cwd=REPO,
                         capture_output=True, check=True).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def test_nothing_reaches_outside_the_repository():
    hits = []
    for path in tracked_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        hits += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(text.splitlines(), 1)
                 if OUTSIDE.search(line)]
    assert not hits, f"references outside the repository: {hits}"


def test_every_fixture_and_host_file_is_tracked():
    tracked = {p.relative_to(REPO).as_posix() for p in tracked_files()}
    on_disk = {p.relative_to(REPO).as_posix()
               for folder in ("tests/data/fixtures", "scripts/hosts")
               for p in (REPO / folder).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk, "fixture and host folders are empty"
    assert on_disk <= tracked, f"not in git, so missing from a clone: {sorted(on_disk - tracked)}"


@pytest.fixture(scope="module")
def offline_checkout(tmp_path_factory) -> Path:
    """A copy of setup_env.sh in a minimal project (its .venv made once, by the first test)."""
    root = tmp_path_factory.mktemp("setup") / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "setup_env.sh", root / "scripts" / "setup_env.sh")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "probe"\nversion = "0"\n'
        '[project.optional-dependencies]\nengine = ["torch>=2.1"]\n')
    return root


def run_setup(root: Path, **env: str) -> subprocess.CompletedProcess:
    """Run setup_env.sh with a package index that holds nothing."""
    empty = root.parent / "empty-index"
    empty.mkdir(exist_ok=True)
    variables = dict(os.environ, PYTHON=sys.executable, PIP_NO_INDEX="1",
                     PIP_FIND_LINKS=str(empty), PIP_CONFIG_FILE=os.devnull, **env)
    return subprocess.run(["bash", "scripts/setup_env.sh", "engine"], cwd=root,
                          capture_output=True, text=True, timeout=600, env=variables)


@pytest.mark.slow
def test_setup_env_fails_loudly_without_the_torch_pin(offline_checkout):
    # Where torch==2.13.0 cannot be installed, the old script quietly took any torch.
    proc = run_setup(offline_checkout, CRYOVIS_REQUIRE_TORCH_PIN="1")
    assert proc.returncode == 1
    assert "error: could not install torch==2.13.0" in proc.stderr


@pytest.mark.slow
def test_setup_env_says_it_falls_back_from_the_torch_pin(offline_checkout):
    proc = run_setup(offline_checkout)
    assert "WARNING: could not install torch==2.13.0; installing the newest torch>=2.1" \
        in proc.stderr
    assert proc.returncode != 0  # the empty index has no torch at all either
