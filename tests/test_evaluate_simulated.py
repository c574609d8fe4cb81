"""`cryovis evaluate` on simulated tomograms written to MRC/CSV, scoring the two baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryoet_integration.picking import pick_blobs
from cryoet_integration.segmentation.threshold_baseline import membrane_map
from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
from formats import Volume, read_particles, read_volume, write_particles, write_volume

REPO = Path(__file__).resolve().parents[1]


def _evaluate(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "cryoet_integration.cli", "evaluate", *args,
                           "--json"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    config = SimulationConfig(measure_snr=False, n_vesicles=1, n_sheets=1)
    sim = simulate_tomogram(seed=5, size_xyz=(64, 64, 32), config=config)
    vs = sim.tomogram.voxel_size
    # Written here with the simulator's file names and dtypes, so these tests do not depend
    # on which particle formats write_simulation adds.
    write_volume(out / "t.mrc", sim.tomogram)
    write_volume(out / "t_instances.mrc", Volume(sim.instances.astype(np.int16), vs))
    write_volume(out / "t_membranes.mrc", Volume(sim.membranes.astype(np.int8), vs))
    write_particles(out / "t_particles.csv", sim.particles)
    return out


def test_truth_as_predictions_follows_the_rules(simulated):
    d = simulated
    truth = read_particles(d / "t_particles.csv")
    n_fid = int((truth["class"] == "fiducial").sum())
    res = _evaluate("picks", "--instances", str(d / "t_instances.mrc"),
                    "--truth", str(d / "t_particles.csv"),
                    "--predictions", str(d / "t_particles.csv"))
    n_true = len(truth) - n_fid
    assert res["n_true"] == n_true and res["TP"] == n_true and res["FP"] == 0
    assert res["recall"] == 1.0 and res["average_distance"] == pytest.approx(0, abs=0.87)
    assert res["picks_on_excluded"] == n_fid
    assert res["precision"] == pytest.approx(n_true / len(truth))
    assert all(s["F1"] == 1.0 for s in res["per_class"].values())


def test_blob_picker_and_membrane_baseline_on_simulated_files(simulated, tmp_path):
    d = simulated
    tomo = read_volume(d / "t.mrc")
    picks = pick_blobs(tomo, diameter_angst=120.0)
    write_particles(tmp_path / "picks.csv", picks)
    res = _evaluate("picks", "--instances", str(d / "t_instances.mrc"),
                    "--truth", str(d / "t_particles.csv"),
                    "--predictions", str(tmp_path / "picks.csv"))
    assert res["RR"] == len(picks)
    assert res["TP"] + res["FN"] == res["n_true"]
    assert res["TP"] > 0 and 0 < res["F1"] < 1
    soft, _ = membrane_map(tomo)
    write_volume(tmp_path / "soft.mrc", Volume(soft, voxel_size=tomo.voxel_size))
    seg = _evaluate("segmentation", "--truth", str(d / "t_membranes.mrc"),
                    "--prediction", str(tmp_path / "soft.mrc"))
    assert 0 <= seg["dice"] < 0.9 and len(seg["per_slice_dice"]) == 32
    same = _evaluate("segmentation", "--truth", str(d / "t_membranes.mrc"),
                     "--prediction", str(d / "t_membranes.mrc"))
    assert same["dice"] == 1.0 and same["surface_dice"] == 1.0
    assert np.isfinite(seg["surface_dice"])
