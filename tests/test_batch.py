"""``cryovis batch`` on real dask.distributed clusters: a LocalCluster of 2 worker processes
and a separately started ``dask scheduler`` with 2 ``dask worker`` processes on 127.0.0.1.

Every batch must give exactly the outputs of running the single command on each tomogram
alone, carry on past a corrupt input, survive a worker killed mid-batch without a corrupt
output or recomputing finished tomograms, and resume from its manifest.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("distributed")

from cli_batch import run_batch, run_one  # noqa: E402

from cryoet_integration.batch.commands import COMMANDS  # noqa: E402
from cryoet_integration.batch.manifest import Manifest, output_record  # noqa: E402
from cryoet_integration.batch.run import plan_batch  # noqa: E402
from formats import read_volume, write_volume  # noqa: E402

N_TOMOGRAMS = 4


@pytest.fixture(scope="module")
def tomograms(tmp_path_factory) -> Path:
    """Four small simulated tomograms and their single-command segmentations."""
    root = tmp_path_factory.mktemp("batch")
    sim = run_one(["simulate", "--out", str(root / "sim"), "--n", str(N_TOMOGRAMS),
                   "--size", "40x40x24", "--seed", "3"])
    assert sim.returncode == 0, sim.stderr
    tomos = sorted((root / "sim").glob("tomo_???.mrc"))
    assert len(tomos) == N_TOMOGRAMS
    (root / "single").mkdir()
    # One CPU thread, as each batch worker gets below: torch's sums in other orders differ
    # in the last bits.
    singles = run_batch([["segment", str(t), "--threads", "1", "--out",
                          str(root / "single" / t.name)] for t in tomos])
    assert all(s.returncode == 0 for s in singles), [s.stderr for s in singles]
    return root


def _same_as_single(root: Path, out: Path, names: list[str]) -> None:
    for name in names:
        mine, alone = read_volume(out / name), read_volume(root / "single" / name)
        np.testing.assert_array_equal(np.asarray(mine.data), np.asarray(alone.data))
        assert mine.voxel_size == alone.voxel_size and mine.origin == alone.origin


def _batch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryoet_integration.cli", "batch", *args],
                          capture_output=True, text=True, timeout=timeout)


def _rows(out: Path) -> dict[str, tuple[str, int]]:
    """``{input name: (status, runs)}`` of the manifest (empty while it is being made)."""
    try:
        with sqlite3.connect(out / "cryovis_batch.sqlite") as db:
            return {Path(i).name: (s, r) for i, s, r in
                    db.execute("SELECT input, status, runs FROM tasks")}
    except sqlite3.OperationalError:
        return {}


def test_local_cluster_matches_single_runs_and_reports_a_corrupt_input(tomograms):
    inputs = tomograms / "inputs"
    inputs.mkdir()
    for t in sorted((tomograms / "sim").glob("tomo_???.mrc")):
        (inputs / t.name).symlink_to(t)
    (inputs / "broken.mrc").write_bytes(b"not an MRC file" * 100)
    out = tomograms / "local"
    proc = _batch("segment", str(inputs / "*.mrc"), "--out", str(out), "--workers", "2",
                  "--threads-per-worker", "1", "--json")
    assert proc.returncode == 2, proc.stderr  # bad input, the rest done
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"done": N_TOMOGRAMS, "failed": 1}
    broken = [t for t in summary["tomograms"] if t["status"] == "failed"]
    assert len(broken) == 1 and "broken.mrc" in broken[0]["error"]
    # The table and the summary give each task's CPU time in its worker, beside its wall time.
    assert all(t["cpu_seconds"] > 0 for t in summary["tomograms"] if t["status"] == "done")
    assert "CPU s" in proc.stderr
    assert "LocalCluster of 2" in proc.stderr and "broken.mrc" in proc.stderr
    names = [f"tomo_{i:03d}.mrc" for i in range(N_TOMOGRAMS)]
    _same_as_single(tomograms, out, names)
    assert not (out / "broken.mrc").exists()

    # Re-running skips what is finished and redoes the failure and the changed input.
    changed = read_volume(inputs / "tomo_001.mrc")
    (inputs / "tomo_001.mrc").unlink()
    write_volume(inputs / "tomo_001.mrc", changed.with_data(np.asarray(changed.data)))
    again = _batch("segment", str(inputs / "*.mrc"), "--out", str(out), "--workers", "1",
                   "--threads-per-worker", "1", "--json")
    assert json.loads(again.stdout)["counts"] == {"skipped": N_TOMOGRAMS - 1, "done": 1,
                                                  "failed": 1}, again.stderr
    rows = _rows(out)
    assert rows["tomo_000.mrc"] == ("done", 1) and rows["tomo_001.mrc"] == ("done", 2)
    assert rows["broken.mrc"] == ("failed", 2)
    _same_as_single(tomograms, out, names)


def test_render_batch_takes_per_tomogram_class_maps(tomograms):
    out = tomograms / "views"
    proc = _batch("render", str(tomograms / "sim" / "tomo_???.mrc"), "--out", str(out),
                  "--workers", "1", "--json", "--", "--classes",
                  str(tomograms / "single" / "{stem}.mrc"), "--size", "96x64")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"done": N_TOMOGRAMS}
    assert all(len(t["scores"]["thresholds"]) == 1 for t in summary["tomograms"])
    for i in range(N_TOMOGRAMS):
        assert (out / f"tomo_{i:03d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_membranes_batch_equals_the_single_command(tomograms):
    masks = tomograms / "sim" / "tomo_???_membranes.mrc"
    out = tomograms / "surfaces"
    proc = _batch("membranes", str(masks), "--out", str(out), "--workers", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"done": N_TOMOGRAMS}
    alone = tomograms / "surfaces_alone"
    single = run_one(["membranes", str(tomograms / "sim" / "tomo_000_membranes.mrc"),
                      "--out", str(alone), "--threads", "1"])
    assert single.returncode == 0, single.stderr
    mine = sorted((out / "tomo_000_membranes").glob("*instances*.mrc"))
    theirs = sorted(alone.glob("*instances*.mrc"))
    assert len(mine) == len(theirs) == 1
    np.testing.assert_array_equal(np.asarray(read_volume(mine[0]).data),
                                  np.asarray(read_volume(theirs[0]).data))


def test_changed_options_redo_every_tomogram(tomograms, tmp_path):
    command = COMMANDS["segment"]
    inputs = [(str(t), t.stem) for t in sorted((tomograms / "sim").glob("tomo_???.mrc"))]
    manifest = Manifest(tmp_path)
    first = plan_batch(command, inputs, tmp_path, ["--tile", "64"], False, manifest)
    for item in first.items:
        manifest.submit("segment", item.input, first.params)
        item.out.write_bytes(b"result")
        manifest.finish("segment", item.input, {"status": "done", "outputs": {
            str(item.out): output_record(item.out)}, "seconds": 1.0, "summary": {}})
    same = plan_batch(command, inputs, tmp_path, ["--tile=64", "--threads", "3"], False,
                      manifest)  # same parameters written otherwise; threads do not count
    assert [i.action for i in same.items] == ["skip"] * len(inputs)
    other = plan_batch(command, inputs, tmp_path, ["--tile", "64", "--tta"], False, manifest)
    assert [i.action for i in other.items] == ["run"] * len(inputs)
    assert all(i.force for i in other.items)  # its own earlier outputs may be replaced
    Path(first.items[0].out).write_bytes(b"edited by hand")
    assert plan_batch(command, inputs, tmp_path, ["--tile", "64"], False,
                      manifest).items[0].action == "run"
    manifest.close()


def test_options_after_dashes_are_the_single_commands(tomograms):
    out = tomograms / "bad-options"
    pattern = str(tomograms / "sim" / "tomo_???.mrc")
    bad_value, owned, budget = run_batch([
        ["batch", "segment", pattern, "--out", str(out), "--", "--tile", "many"],
        ["batch", "segment", pattern, "--out", str(out), "--", "--out", "x.mrc"],
        ["batch", "segment", pattern, "--out", str(out), "--workers", "1", "--json", "--",
         "--memory", "10"]])
    assert bad_value.returncode == 2
    assert "--tile" in bad_value.stderr and "invalid int" in bad_value.stderr
    assert "Traceback" not in bad_value.stderr and not list(out.glob("*.mrc"))
    assert owned.returncode == 2 and "batch sets it" in owned.stderr
    # --memory reaches every task's segment: a budget it cannot meet fails each, unwritten.
    assert budget.returncode == 2, budget.stderr
    failed = json.loads(budget.stdout)["tomograms"]
    assert len(failed) == N_TOMOGRAMS and all(
        t["status"] == "failed" and "--memory 10 MiB is too small" in t["error"]
        for t in failed)
    assert not list(out.glob("*.mrc"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args: str, log: Path) -> subprocess.Popen:
    """``dask scheduler|worker ...`` (the venv's own ``dask`` program)."""
    return subprocess.Popen([str(Path(sys.executable).with_name("dask")), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_external_scheduler_survives_a_killed_worker(tomograms):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tomograms / "dask-logs"
    logs.mkdir()
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", str(port),
                   "--dashboard-address", f"127.0.0.1:{_free_port()}", log=logs / "s.log")]
        # Each worker's tomogram gets one CPU thread (its dask thread count).
    try:
        time.sleep(3)
        procs += [_dask("worker", address, "--nthreads", "1", "--no-nanny", "--host",
                        "127.0.0.1", "--no-dashboard", log=logs / f"w{i}.log")
                  for i in range(2)]
        out = tomograms / "external"
        pattern = str(tomograms / "sim" / "tomo_???.mrc")
        # Test-time augmentation makes each tomogram slow enough to be caught mid-batch.
        batch = subprocess.Popen(
            [sys.executable, "-m", "cryoet_integration.cli", "batch", "segment", pattern,
             "--out", str(out), "--scheduler", address, "--json", "--", "--tta"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while time.time() < deadline and batch.poll() is None:
            if (out / "cryovis_batch.sqlite").exists() and \
                    any(s == "done" for s, _ in _rows(out).values()):
                break
            time.sleep(0.2)
        done_before = {n for n, (s, _) in _rows(out).items() if s == "done"}
        assert batch.poll() is None and 0 < len(done_before) < N_TOMOGRAMS
        procs[1].send_signal(signal.SIGKILL)
        stdout, stderr = batch.communicate(timeout=240)
        assert batch.returncode == 0, stderr
        summary = json.loads(stdout)
        assert summary["counts"] == {"done": N_TOMOGRAMS}
        assert "dashboard: http://127.0.0.1" in stderr
        rows = _rows(out)
        # Finished tomograms were not computed again, none is left half-written.
        assert all(rows[n] == ("done", 1) for n in rows)
        assert not list(out.glob(".*part*"))
        single_tta = run_batch([["segment", str(tomograms / "sim" / n), "--tta",
                                 "--threads", "1", "--out",
                                 str(tomograms / "single" / f"tta_{n}")] for n in rows])
        assert all(s.returncode == 0 for s in single_tta)
        for n in rows:
            np.testing.assert_array_equal(
                np.asarray(read_volume(out / n).data),
                np.asarray(read_volume(tomograms / "single" / f"tta_{n}").data))
        again = _batch("segment", pattern, "--out", str(out), "--scheduler", address,
                       "--json", "--", "--tta")
        assert json.loads(again.stdout)["counts"] == {"skipped": N_TOMOGRAMS}, again.stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
