"""The base package inside real Scipion 3 and ChimeraX 1.7.1 Pythons.

The Scipion plugin and the ChimeraX bundle import ``formats`` in those Pythons, whose numpy
(1.26.1 and 1.26.4) must not move. These tests install this checkout's wheel into the cached
envs of ``external_envs`` (built on first use: minutes; seconds afterwards), then read every
fixture there with ``tests/external/read_fixtures.py`` and compare the summary with the same
script run in this venv. ChimeraX also runs it in-process, as a ``--script`` of a headless
session. ``CRYOVIS_SKIP_EXTERNAL=1`` skips them (for developers; CI never sets it).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import external_envs
import pytest
from external_envs import (
    COMPLETE_MARKER,
    PROJECT,
    chimerax_env,
    env_python,
    install_project,
    installed_versions,
    pip_check,
    scipion_env,
)

SCRIPT = Path(__file__).parent / "external" / "read_fixtures.py"
SCIPION_NUMPY = "1.26.1"
CHIMERAX_NUMPY = "1.26.4"

external = pytest.mark.skipif(os.environ.get("CRYOVIS_SKIP_EXTERNAL") == "1",
                              reason="CRYOVIS_SKIP_EXTERNAL=1")


def run_summary(cmd: list[str], out: Path, cwd: Path) -> dict:
    """Run a read_fixtures command (cwd outside the repo: ``formats`` must come from the env)."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n" \
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def differences(a, b, where: str = "") -> list[str]:
    """Where two JSON summaries differ (floats compared to 1e-9 relative: numpy 1.26 vs 2.x)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{where}/{k}: only in {'first' if k in a else 'second'}"
                 for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            found += differences(a[k], b[k], f"{where}/{k}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
                and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
            return []
    elif a == b:
        return []
    return [f"{where}: {a!r} vs {b!r}"]


@pytest.fixture(scope="module")
def main_summary(fixtures_dir, tmp_path_factory) -> dict:
    """The fixtures as this venv (numpy 2.x, the editable checkout) reads them."""
    tmp = tmp_path_factory.mktemp("main")
    summary = run_summary([sys.executable, str(SCRIPT), str(fixtures_dir), str(tmp / "out.json")],
                          tmp / "out.json", tmp)
    # Guard against a summary that compares equal because nothing was read.
    files = summary["files"]
    assert files["mrc/EMD-3197.map"]["volume"]["shape_zyx"] == [20, 20, 20]
    assert math.isclose(files["mrc/EMD-3197.map"]["volume"]["voxel_size"], 11.4, rel_tol=1e-6)
    read = [f for f, e in files.items() if "count" in e.get("particles", {})]
    assert len(read) >= 10, f"only {len(read)} particle fixtures read: {read}"
    return summary


def prepared(env: Path) -> dict:
    """Install the project into ``env``; the env's package versions before and after."""
    before = installed_versions(env)
    install_project(env)
    return {"env": env, "before": before, "after": installed_versions(env)}


@pytest.fixture(scope="module")
def scipion() -> dict:
    return prepared(scipion_env())


@pytest.fixture(scope="module")
def chimerax() -> dict:
    return prepared(chimerax_env())


def check_versions_kept(state: dict, numpy_version: str) -> None:
    assert state["before"]["numpy"] == numpy_version
    moved = {name: (ver, state["after"].get(name)) for name, ver in state["before"].items()
             if name != PROJECT and state["after"].get(name) != ver}
    assert not moved, f"installing the project changed the env: {moved}"
    assert PROJECT in state["after"]
    report = pip_check(state["env"])
    assert PROJECT not in report.lower(), report


def check_reads_like_main(summary: dict, main: dict, env: Path, numpy_version: str) -> None:
    assert summary["numpy"] == numpy_version
    assert Path(summary["formats_file"]).resolve().is_relative_to(env.resolve()), \
        summary["formats_file"]
    assert summary["registry"] == main["registry"]
    diffs = differences(main["files"], summary["files"])
    assert not diffs, f"{len(diffs)} differences, e.g.:\n" + "\n".join(diffs[:20])


@external
@pytest.mark.slow
@pytest.mark.scipion
def test_scipion_install_keeps_numpy(scipion):
    check_versions_kept(scipion, SCIPION_NUMPY)


@external
@pytest.mark.slow
@pytest.mark.scipion
def test_scipion_reads_fixtures_like_main_venv(scipion, main_summary, fixtures_dir, tmp_path):
    out = tmp_path / "out.json"
    cmd = [str(env_python(scipion["env"])), str(SCRIPT), str(fixtures_dir), str(out)]
    check_reads_like_main(run_summary(cmd, out, tmp_path), main_summary, scipion["env"],
                          SCIPION_NUMPY)


@external
@pytest.mark.slow
@pytest.mark.scipion
def test_scipion_core_imports_beside_formats(scipion, tmp_path):
    # The plugin will import both in one process: pwem and tomo must still load.
    code = "import formats, pwem, tomo, pyworkflow; print(pyworkflow.__version__)"
    proc = subprocess.run([str(env_python(scipion["env"])), "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, SCIPION_DOMAIN="pwem", SCIPION_HOME=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr[-3000:]


@external
@pytest.mark.slow
@pytest.mark.scipion
def test_scipion_cryovis_convert_matches_main_venv(scipion, fixtures_dir, tmp_path):
    # The console script of the base install (no engine) converts there as it does here.
    import numpy as np

    import formats

    src = fixtures_dir / "dynamo" / "dynamotable_t_double.tbl"
    outputs = {}
    for name, exe in (("main", Path(sys.executable).parent / "cryovis"),
                      ("scipion", scipion["env"] / "bin" / "cryovis")):
        out = tmp_path / f"{name}.star"
        proc = subprocess.run([str(exe), "convert", str(src), str(out), "--to", "relion4",
                               "--voxel-size", "10"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[name] = formats.read_particles(out)
    main, foreign = outputs["main"], outputs["scipion"]
    assert len(foreign) == len(main) == 300
    cols = ["x", "y", "z", "r00", "r01", "r02", "r10", "r11", "r12", "r20", "r21", "r22"]
    np.testing.assert_allclose(foreign[cols].to_numpy(float), main[cols].to_numpy(float),
                               atol=1e-9)
    assert list(foreign["tomo_name"]) == list(main["tomo_name"])


@external
@pytest.mark.slow
@pytest.mark.chimerax
def test_chimerax_install_keeps_numpy(chimerax):
    check_versions_kept(chimerax, CHIMERAX_NUMPY)


@external
@pytest.mark.slow
@pytest.mark.chimerax
def test_chimerax_reads_fixtures_like_main_venv(chimerax, main_summary, fixtures_dir, tmp_path):
    out = tmp_path / "out.json"
    cmd = [str(env_python(chimerax["env"])), str(SCRIPT), str(fixtures_dir), str(out)]
    check_reads_like_main(run_summary(cmd, out, tmp_path), main_summary, chimerax["env"],
                          CHIMERAX_NUMPY)


@external
@pytest.mark.slow
@pytest.mark.chimerax
def test_chimerax_session_script_reads_fixtures(chimerax, main_summary, fixtures_dir, tmp_path):
    out = tmp_path / "out.json"
    script = shlex.join([str(SCRIPT), str(fixtures_dir), str(out)])
    cmd = [str(env_python(chimerax["env"])), "-m", "chimerax.core", "--nogui", "--offscreen",
           "--exit", "--script", script]
    summary = run_summary(cmd, out, tmp_path)
    assert summary["in_chimerax_session"] is True
    check_reads_like_main(summary, main_summary, chimerax["env"], CHIMERAX_NUMPY)


def test_interrupted_build_is_rebuilt(tmp_path):
    env = tmp_path / "env"
    calls = []

    def interrupted(path: Path) -> None:
        path.mkdir()
        (path / "half").write_text("x")
        raise KeyboardInterrupt

    def complete(path: Path) -> None:
        calls.append(path)
        path.mkdir()

    with pytest.raises(KeyboardInterrupt):
        external_envs._ensure(env, interrupted)
    assert (env / "half").exists() and not (env / COMPLETE_MARKER).exists()
    assert external_envs._ensure(env, complete) == env
    assert not (env / "half").exists() and (env / COMPLETE_MARKER).is_file()
    external_envs._ensure(env, complete)
    assert len(calls) == 1, "a complete env must be reused, not rebuilt"


def test_chimerax_key_follows_the_kit(tmp_path, shared_dir, monkeypatch):
    kit = tmp_path / "kit"
    shutil.copytree(shared_dir / "chimerax-headless", kit)
    monkeypatch.setattr(external_envs, "CHIMERAX_KIT", kit)
    first = external_envs.chimerax_env_path()
    assert first.name.startswith("chimerax-")
    assert external_envs.chimerax_env_path() == first
    (kit / "requirements.txt").write_text((kit / "requirements.txt").read_text() + "tqdm\n")
    assert external_envs.chimerax_env_path() != first


def test_summary_differences_are_found():
    a = {"f": {"count": 3, "sums": {"x": [1.0, 0]}, "shape": [2, 2]}}
    noise = {"f": {"count": 3, "sums": {"x": [1.0 + 1e-13, 0]}, "shape": [2, 2]}}
    assert differences(a, noise) == []
    b = {"f": {"count": 4, "sums": {"x": [1.001, 0]}, "shape": [2, 3], "new": 1}}
    assert len(differences(a, b)) == 4
