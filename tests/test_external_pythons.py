"""The base package inside real Scipion 3 and ChimeraX 1.7.1 Pythons.

The Scipion plugin and the ChimeraX bundle import ``formats`` in those Pythons, whose numpy
(1.26.1 and 1.26.4) must not move. A user types ``pip install cryoet-integration`` there, so
these tests do exactly that: a fresh copy of each cached env of ``external_envs`` (built on
first use: minutes; afterwards the copy and the install take well under a minute) gets this
checkout's wheel by a plain ``pip install WHEEL``, no constraints file; then numpy and every
other version must be unchanged and ``pip check`` clean. Every fixture is then read there with
``tests/external/read_fixtures.py`` and the summary compared with the same script run in
this venv; ChimeraX also runs it in-process, as a ``--script`` of a headless session.
``CRYOVIS_SKIP_EXTERNAL=1`` skips them (for developers; CI never sets it).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import external_envs
import pytest
from external_envs import (
    CHIMERAX_RUN_PYTEST,
    COMPLETE_MARKER,
    PROJECT,
    chimerax_command,
    chimerax_env,
    env_python,
    fresh_copy,
    install_project,
    installed_versions,
    pip_check,
    pristine_record,
    scipion_env,
    scipion_environ,
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
    volumes = [f for f, e in files.items() if "shape_zyx" in e.get("volume", {})]
    assert len(volumes) >= 6, f"only {len(volumes)} volume fixtures read: {volumes}"
    return summary


def fresh_install(env: Path, dest: Path) -> dict:
    """``pip install WHEEL`` into a fresh copy of ``env``; its state before and after."""
    copy = fresh_copy(env, dest)
    before = installed_versions(copy)
    install_project(copy, force=True)
    return {"env": copy, "pristine": pristine_record(env), "before": before,
            "after": installed_versions(copy), "pip_check": pip_check(copy)}


@pytest.fixture(scope="module")
def scipion(tmp_path_factory) -> dict:
    return fresh_install(scipion_env(), tmp_path_factory.mktemp("envs") / "scipion")


@pytest.fixture(scope="module")
def chimerax(tmp_path_factory) -> dict:
    return fresh_install(chimerax_env(), tmp_path_factory.mktemp("envs") / "chimerax")


def check_plain_install(state: dict, numpy_version: str) -> None:
    """The copy was the env as built, and the install kept every version and ``pip check``."""
    assert state["before"] == state["pristine"]["versions"], "the copy is not the env as built"
    assert state["before"]["numpy"] == numpy_version
    assert state["after"]["numpy"] == numpy_version
    moved = {name: (ver, state["after"].get(name)) for name, ver in state["before"].items()
             if state["after"].get(name) != ver}
    assert not moved, f"`pip install cryoet-integration` changed the env: {moved}"
    assert PROJECT in state["after"]
    assert state["pip_check"] == state["pristine"]["pip_check"], \
        f"`pip check` after the install:\n{state['pip_check']}"


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
def test_scipion_plain_install_keeps_numpy_and_pip_check(scipion):
    check_plain_install(scipion, SCIPION_NUMPY)
    assert scipion["pip_check"] == ""


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
    code = "import formats, pwem, pwem.protocols, tomo.protocols, pyworkflow; print('ok')"
    proc = subprocess.run([str(env_python(scipion["env"])), "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=scipion_environ(tmp_path / "scipion", scipion["env"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok"]


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
def test_chimerax_plain_install_keeps_numpy_and_pip_check(chimerax):
    check_plain_install(chimerax, CHIMERAX_NUMPY)
    # As built, `pip check` names only the stand-in's own gaps (scripts/hosts/README.md):
    # the bundle stubs' GUI requirements and ChimeraX's imagecodecs pin.
    problems = chimerax["pip_check"].splitlines()
    assert problems and all(line.startswith("chimerax") for line in problems), problems


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
    cmd = chimerax_command(chimerax["env"]) + [
        "--script", shlex.join([str(SCRIPT), str(fixtures_dir), str(out)])]
    summary = run_summary(cmd, out, tmp_path)
    assert summary["in_chimerax_session"] is True
    check_reads_like_main(summary, main_summary, chimerax["env"], CHIMERAX_NUMPY)


SESSION_SUITE = '''
import builtins

import pytest


@pytest.fixture(scope="session")
def session():
    if not hasattr(builtins, "_chimerax_test_session"):
        pytest.skip("needs a ChimeraX session")
    return builtins._chimerax_test_session


def test_open_map(session):
    from chimerax.core.commands import run
    (model,) = run(session, "open {path}")
    assert tuple(model.data.size) == (20, 20, 20)
    assert tuple(model.data.step) == pytest.approx((11.4, 11.4, 11.4))
'''


@external
@pytest.mark.slow
@pytest.mark.chimerax
def test_chimerax_runs_a_suite_in_one_session(fixtures_dir, tmp_path):
    # What the bundle's suite will do: pytest inside a session, ChimeraX's own `open`
    # (found through the bundle stubs) reading a fixture map.
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_session.py").write_text(
        SESSION_SUITE.format(path=fixtures_dir / "mrc" / "EMD-3197.map"))
    cmd = chimerax_command(chimerax_env()) + [
        "--script", shlex.join([str(CHIMERAX_RUN_PYTEST), str(suite), "-q"])]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout


def test_interrupted_build_is_rebuilt(tmp_path):
    env = tmp_path / "env"
    calls = []

    def interrupted(path: Path) -> None:
        path.mkdir()
        (path / "half").write_text("x")
        raise KeyboardInterrupt

    def complete(path: Path) -> None:
        calls.append(path)
        venv.create(path, with_pip=False)
        record = {"versions": external_envs.installed_versions(path), "pip_check": ""}
        (path / external_envs.PRISTINE_RECORD).write_text(json.dumps(record))

    with pytest.raises(KeyboardInterrupt):
        external_envs._ensure(env, interrupted)
    assert (env / "half").exists() and not (env / COMPLETE_MARKER).exists()
    assert external_envs._ensure(env, complete) == env
    assert not (env / "half").exists() and (env / COMPLETE_MARKER).is_file()
    external_envs._ensure(env, complete)
    assert len(calls) == 1, "a complete env must be reused, not rebuilt"


def test_drifted_env_is_rebuilt(tmp_path):
    """An env whose packages moved after its build (an install with other ranges) is rebuilt."""
    env = tmp_path / "env"
    calls = []

    def build(path: Path) -> None:
        calls.append(path)
        venv.create(path, with_pip=False)
        record = {"versions": {"pandas": "3.0.6"}, "pip_check": ""}  # pandas since removed
        if len(calls) > 1:
            record["versions"] = external_envs.installed_versions(path)
        (path / external_envs.PRISTINE_RECORD).write_text(json.dumps(record))

    external_envs._ensure(env, build)
    assert external_envs.drifted(env) == {"pandas": ("3.0.6", None)}
    assert external_envs._ensure(env, build) == env and len(calls) == 2
    assert external_envs.drifted(env) == {}


@pytest.mark.parametrize("which", ["scipion", "chimerax"])
def test_env_key_follows_the_kit(which, tmp_path, monkeypatch):
    kit = tmp_path / "kit"
    attr = f"{which.upper()}_KIT"
    shutil.copytree(getattr(external_envs, attr), kit,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(external_envs, attr, kit)
    path_of = getattr(external_envs, f"{which}_env_path")
    first = path_of()
    assert first.name.startswith(f"{which}-") and first.parent == external_envs.cache_root()
    assert path_of() == first
    (kit / "requirements.txt").write_text((kit / "requirements.txt").read_text() + "tqdm\n")
    assert path_of() != first


def test_summary_differences_are_found():
    a = {"f": {"count": 3, "sums": {"x": [1.0, 0]}, "shape": [2, 2]}}
    noise = {"f": {"count": 3, "sums": {"x": [1.0 + 1e-13, 0]}, "shape": [2, 2]}}
    assert differences(a, noise) == []
    b = {"f": {"count": 4, "sums": {"x": [1.001, 0]}, "shape": [2, 3], "new": 1}}
    assert len(differences(a, b)) == 4
