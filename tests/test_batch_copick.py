"""A copick project made with copick's own API goes through ``cryovis batch`` and back:
tomograms read (OME-Zarr, the multiscale level nearest the model's voxel size), picks and
a segmentation written under a user and session id, and read again by copick. ``cryovis
info`` describes the project and its OME-Zarr tomograms; ``cryovis convert`` turns one into
MRC and back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("distributed")
copick = pytest.importorskip("copick")

from cli_batch import run_batch, run_one  # noqa: E402
from copick.models import PickableObject  # noqa: E402

from formats import read_volume  # noqa: E402

# The shipped picker's classes as copick names (no underscores allowed there).
PICKER_CLASSES = ["barrel", "globular", "random-shape", "ribosome", "ring", "rod"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copick project of two runs, each with a simulated 'wbp' tomogram at 7.3 Å."""
    root = tmp_path_factory.mktemp("copick")
    sim = run_one(["simulate", "--out", str(root / "sim"), "--n", "2", "--size", "64x64x32",
                   "--seed", "11"])
    assert sim.returncode == 0, sim.stderr
    objects = [PickableObject(name=name, is_particle=True, label=i + 1, radius=60.0)
               for i, name in enumerate(PICKER_CLASSES)]
    objects.append(PickableObject(name="membrane", is_particle=False, label=len(objects) + 1))
    config = root / "copick.json"
    copick.new_config(str(config), str(root / "overlay"), pickable_objects=objects)
    cp = copick.from_file(str(config))
    for i in range(2):
        tomogram = read_volume(root / "sim" / f"tomo_{i:03d}.mrc")
        run = cp.new_run(f"TS_{i + 1}")
        spacing = run.new_voxel_spacing(round(tomogram.voxel_size, 3))
        spacing.new_tomogram("wbp").from_numpy(np.asarray(tomogram.data, np.float32))
    return config


def _batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryoet_integration.cli", "batch", *args],
                          capture_output=True, text=True, timeout=400)


def test_copick_project_round_trips(project, tmp_path):
    picked = _batch("pick", str(project), "--out", str(tmp_path / "picks"), "--workers", "2",
                    "--copick-user", "batchtest", "--copick-session", "7", "--json",
                    "--", "--min-score", "0.05")
    assert picked.returncode == 0, picked.stderr
    summary = json.loads(picked.stdout)
    assert summary["counts"] == {"done": 2}
    assert sorted(t["name"] for t in summary["tomograms"]) == ["TS_1", "TS_2"]
    segmented = _batch("segment", str(project), "--out", str(tmp_path / "seg"),
                       "--workers", "1", "--copick-user", "batchtest",
                       "--copick-session", "7", "--json")
    assert segmented.returncode == 0, segmented.stderr
    assert json.loads(segmented.stdout)["counts"] == {"done": 2}

    cp = copick.from_file(str(project))  # copick reads what the batch wrote
    written = 0
    for t in summary["tomograms"]:
        run = cp.get_run(t["name"])
        ours = [p for p in run.get_picks(user_id="batchtest", session_id="7")]
        table = np.loadtxt(tmp_path / "picks" / f"{t['name']}.csv", delimiter=",",
                           skiprows=1, usecols=(0, 1, 2), ndmin=2)
        assert sum(len(p.points) for p in ours) == len(table)
        written += len(table)
        assert {p.pickable_object_name for p in ours} <= set(PICKER_CLASSES)
        if len(table):
            positions, transforms = ours[0].numpy()
            assert positions.shape[1] == 3 and transforms.shape[1:] == (4, 4)
        seg = run.get_segmentations(user_id="batchtest", session_id="7", name="membrane")
        assert len(seg) == 1
        mask = seg[0].numpy()
        prob = read_volume(tmp_path / "seg" / f"{t['name']}.mrc").data
        np.testing.assert_array_equal(mask, (np.asarray(prob) > 0.5).astype(np.uint8))
    assert written > 0


def test_info_and_convert_understand_copick_and_ome_zarr(project, tmp_path):
    cp = copick.from_file(str(project))
    spacing = cp.get_run("TS_1").voxel_spacings[0]
    zarr_path = Path(spacing.get_tomograms("wbp")[0].zarr().path)
    vs = spacing.voxel_size
    info, zinfo, to_mrc = run_batch([
        ["info", str(project), "--json"], ["info", str(zarr_path), "--json"],
        ["convert", str(zarr_path), str(tmp_path / "TS_1.mrc")]])
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert facts["kind"] == "copick project" and facts["n_runs"] == 2
    assert facts["runs"][0]["tomograms"] == {f"{vs:g}": ["wbp"]}
    assert zinfo.returncode == 0, zinfo.stderr
    zfacts = json.loads(zinfo.stdout)
    assert zfacts["format"] == "OME-Zarr" and zfacts["shape_xyz"] == [64, 64, 32]
    assert zfacts["voxel_size_angst"] == pytest.approx(vs) and len(zfacts["levels"]) == 3
    assert to_mrc.returncode == 0, to_mrc.stderr
    mrc = read_volume(tmp_path / "TS_1.mrc")
    original = read_volume(project.parent / "sim" / "tomo_000.mrc")
    np.testing.assert_array_equal(mrc.data, original.data)
    assert mrc.voxel_size == pytest.approx(vs)
    # Back to OME-Zarr: the multiscale level nearest a voxel size is chosen on reading.
    back = run_one(["convert", str(tmp_path / "TS_1.mrc"), str(tmp_path / "TS_1.zarr")])
    assert back.returncode == 0, back.stderr
    finest = read_volume(tmp_path / "TS_1.zarr")
    np.testing.assert_array_equal(np.asarray(finest.data), original.data)
    coarse = read_volume(tmp_path / "TS_1.zarr", target_voxel_size=2.1 * vs)
    assert coarse.metadata["level"] == 1 and coarse.voxel_size == pytest.approx(2 * vs)
    assert coarse.data.shape == (16, 32, 32)
