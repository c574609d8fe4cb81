"""`cryovis evaluate` through a subprocess, on real MRC and CSV files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from formats import Volume, write_volume

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryoet_integration.cli", "evaluate", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def pick_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("evalpicks")
    shape = (24, 32, 40)
    z, y, x = np.indices(shape)
    inst = np.zeros(shape, np.int16)
    centres = {1: (8, 8, 8), 2: (28, 10, 12), 3: (20, 24, 16)}
    for pid, (cx, cy, cz) in centres.items():
        inst[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= 9] = pid
    write_volume(d / "instances.mrc", Volume(inst, voxel_size=10.0))
    pd.DataFrame({"id": [1, 2, 3], "class": ["ribosome", "ribosome", "fiducial"],
                  "x": [8, 28, 20], "y": [8, 10, 24], "z": [8, 12, 16]}
                 ).to_csv(d / "truth.csv", index=False)
    pd.DataFrame({"class": ["ribosome", "ribosome", "ribosome"], "x": [8.2, 8, 5],
                  "y": [8, 9, 30], "z": [8, 8, 2], "score": [0.9, 0.8, 0.1]}
                 ).to_csv(d / "picks.csv", index=False)
    return {"dir": d, "instances": d / "instances.mrc", "truth": d / "truth.csv",
            "picks": d / "picks.csv"}


def test_picks_cli_json_png_and_table(pick_files):
    d = pick_files["dir"]
    out, fig = d / "scores.json", d / "scores.png"
    proc = _run("picks", "--instances", str(pick_files["instances"]),
                "--truth", str(pick_files["truth"]), "--predictions", str(pick_files["picks"]),
                "--json", str(out), "--png", str(fig))
    assert proc.returncode == 0, proc.stderr
    assert "precision" in proc.stdout and "F1" in proc.stdout
    res = json.loads(out.read_text())
    assert (res["RR"], res["TP"], res["FP"], res["FN"], res["multiple_hits"]) == (3, 1, 1, 1, 1)
    assert res["precision"] == pytest.approx(1 / 3) and res["recall"] == pytest.approx(1 / 2)
    assert res["F1"] == pytest.approx(0.4)
    assert res["per_class"]["ribosome"]["F1"] == pytest.approx(2 / 3)
    assert res["average_distance_angst"] == pytest.approx(0.0)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = _run("picks", "--instances", str(pick_files["instances"]),
                 "--truth", str(pick_files["truth"]), "--predictions", str(pick_files["picks"]),
                 "--json", str(out))
    assert again.returncode == 2 and "exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_picks_cli_no_exclusion_to_stdout(pick_files):
    proc = _run("picks", "--instances", str(pick_files["instances"]),
                "--truth", str(pick_files["truth"]), "--predictions", str(pick_files["picks"]),
                "--exclude", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["n_true"] == 3 and res["TP"] == 1


def test_picks_cli_bad_truth_file(pick_files, tmp_path):
    bad = tmp_path / "truth.csv"
    bad.write_text("class,a,b\nribosome,1,2\n")
    proc = _run("picks", "--instances", str(pick_files["instances"]), "--truth", str(bad),
                "--predictions", str(pick_files["picks"]))
    assert proc.returncode == 2 and str(bad) in proc.stderr


def test_segmentation_cli(tmp_path):
    truth = np.zeros((12, 16, 16), np.uint8)
    truth[5:8] = 1
    soft = np.zeros(truth.shape, np.float32)
    soft[5:8, :, :8] = 0.8
    soft[5:8, :, 8:] = 0.3
    write_volume(tmp_path / "truth.mrc", Volume(truth, voxel_size=8.0))
    write_volume(tmp_path / "pred.mrc", Volume(soft, voxel_size=8.0))
    out, fig = tmp_path / "seg.json", tmp_path / "seg.png"
    proc = _run("segmentation", "--truth", str(tmp_path / "truth.mrc"),
                "--prediction", str(tmp_path / "pred.mrc"), "--json", str(out), "--png", str(fig))
    assert proc.returncode == 0, proc.stderr
    assert "Surface-Dice" in proc.stdout
    res = json.loads(out.read_text())
    assert res["dice"] == pytest.approx(2 / 3)
    assert res["surface_precision"] == 1.0 and res["surface_recall"] == pytest.approx(0.5)
    assert len(res["per_slice_dice"]) == 12 and res["per_slice_dice"][0] is None
    assert fig.stat().st_size > 1000
    low = _run("segmentation", "--truth", str(tmp_path / "truth.mrc"), "--prediction",
               str(tmp_path / "pred.mrc"), "--threshold", "0.2", "--wedge-caps", "--json", "-")
    low_res = json.loads(low.stdout)
    assert low_res["dice"] == 1.0
    # The truth is a flat sheet: all of it is cap, and the prediction covers it.
    assert low_res["missing_wedge_caps"]["cap_voxels"] == int(truth.sum())
    assert low_res["missing_wedge_caps"]["inside"]["dice"] == 1.0
    # A flat x-y sheet is 30 degrees short of edge-on at +-60 (hidden) but seen edge-on
    # by a full +-90 series.
    tilted = [json.loads(_run("segmentation", "--truth", str(tmp_path / "truth.mrc"),
                              "--prediction", str(tmp_path / "pred.mrc"), "--tilt-range",
                              lo, hi, "--json", "-").stdout)["wedge_hidden"]
              for lo, hi in (("-60", "60"), ("-90", "90"))]
    assert tilted[0]["hidden_voxels"] == int(truth.sum())
    assert tilted[1]["hidden_voxels"] == 0


def test_segmentation_cli_multiclass_soft_maps(tmp_path):
    truth = np.zeros((8, 10, 10), np.uint8)
    truth[1:3] = 1
    truth[5:7] = 2
    write_volume(tmp_path / "truth.mrc", Volume(truth, voxel_size=8.0))
    for k in (1, 2):
        write_volume(tmp_path / f"p{k}.mrc", Volume((truth == k).astype(np.float32) * 0.9,
                                                     voxel_size=8.0))
    proc = _run("segmentation", "--truth", str(tmp_path / "truth.mrc"), "--prediction",
                str(tmp_path / "p1.mrc"), str(tmp_path / "p2.mrc"), "--multiclass", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["dice"] == 1.0 and set(res["per_class"]) == {"1", "2"}


def test_segmentation_cli_mismatch_names_both_files(tmp_path):
    write_volume(tmp_path / "a.mrc", Volume(np.zeros((4, 4, 4), np.uint8), voxel_size=8.0))
    write_volume(tmp_path / "b.mrc", Volume(np.zeros((4, 4, 5), np.uint8), voxel_size=8.0))
    write_volume(tmp_path / "c.mrc", Volume(np.zeros((4, 4, 4), np.uint8), voxel_size=10.0))
    proc = _run("segmentation", "--truth", str(tmp_path / "a.mrc"),
                "--prediction", str(tmp_path / "b.mrc"))
    assert proc.returncode == 2
    assert "a.mrc" in proc.stderr and "b.mrc" in proc.stderr and "shape" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = _run("segmentation", "--truth", str(tmp_path / "a.mrc"),
                "--prediction", str(tmp_path / "c.mrc"))
    assert proc.returncode == 2 and "voxel size" in proc.stderr and "c.mrc" in proc.stderr


def test_picks_cli_selects_one_tomogram(pick_files, tmp_path):
    picks = pd.read_csv(pick_files["picks"])
    picks["tomo_name"] = ["a", "a", "b"]
    several = tmp_path / "several.csv"
    picks.to_csv(several, index=False)
    args = ["picks", "--instances", str(pick_files["instances"]), "--truth",
            str(pick_files["truth"]), "--predictions", str(several)]
    refused = _run(*args)
    assert refused.returncode == 2 and "--tomo-name" in refused.stderr
    chosen = _run(*args, "--tomo-name", "a", "--json")
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["RR"] == 2


def test_picks_cli_relion5_predictions_need_the_tomogram_size(pick_files, tmp_path):
    from formats import read_particles, write_particles

    table = read_particles(pick_files["picks"], voxel_size=10.0)
    table["tomo_name"] = "tomo"
    star = tmp_path / "picks.star"
    write_particles(star, table, format="relion5", tomo_size_xyz="40x32x24")
    args = ["picks", "--instances", str(pick_files["instances"]), "--truth",
            str(pick_files["truth"]), "--predictions", str(star), "--json"]
    refused = _run(*args)
    assert refused.returncode == 2 and str(star) in refused.stderr
    scored = _run(*args, "--tomo-size", "40x32x24", "--tilt-series-pixel-size", "10")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["TP"] == 1
