"""``cryovis membranes`` end to end: outputs, orientation priors, bad input, no overwrite."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryoet_integration.cli import main
from formats import (
    Volume,
    make_table,
    orientations,
    read_particles,
    read_star,
    read_volume,
    write_particles,
    write_volume,
)

SHAPE = (48, 64, 64)
CENTRE = np.array([32.0, 31.0, 24.0])  # x, y, z voxels
RADIUS = 14.0


def _vesicle(path, prob=False):
    zz, yy, xx = np.indices(SHAPE, dtype=float)
    d = np.stack([xx, yy, zz], -1) - CENTRE
    r = np.linalg.norm(d, axis=-1)
    mask = (np.abs(r - RADIUS) <= 2) & (np.abs(d[..., 2]) < 0.6 * r)  # caps cut away
    data = mask.astype(np.float32) * 0.9 + 0.05 if prob else mask.astype(np.int8)
    write_volume(path, Volume(data, voxel_size=12.0))
    return path


def test_membranes_writes_every_output_and_orients_picks(tmp_path, capsys):
    mask = _vesicle(tmp_path / "tomo_prob.mrc", prob=True)
    # two picks just outside the vesicle (on +x and +z) and one far away
    xyz = np.array([CENTRE + [RADIUS + 3, 0, 0], CENTRE + [0, 0, RADIUS + 2], [3.0, 3.0, 3.0]])
    picks = tmp_path / "picks.csv"
    write_particles(picks, make_table(xyz, 12.0), format="csv")
    out = tmp_path / "fit"
    oriented = tmp_path / "oriented.star"
    code = main(["membranes", str(mask), "--out", str(out), "--picks", str(picks),
                 "--picks-out", str(oriented), "--tilt-range", "-60", "60", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["threshold"] == 0.5 and summary["info"]["instances"] == 1
    row = summary["membranes"][0]
    assert row["closed"] and row["model"] in ("ellipsoid", "implicit")
    assert 0.2 < row["wedge_hidden_area_fraction"] < 0.7  # the cut caps, completed
    r_a = RADIUS * 12.0
    assert row["area_angst2"] == pytest.approx(4 * np.pi * r_a ** 2, rel=0.15)
    assert (out / "tomo_prob_instances.mrc").exists()
    inst = read_volume(out / "tomo_prob_instances.mrc")
    assert inst.voxel_size == pytest.approx(12.0) and set(np.unique(inst.data)) == {0, 1}
    refined = read_volume(out / "tomo_prob_refined.mrc").data != 0
    unc = read_volume(out / "tomo_prob_uncertainty.mrc").data
    assert (unc[refined] > 0).all() and (unc[~refined] == 0).all()
    table = pd.read_csv(out / "tomo_prob_membranes.csv")
    assert list(table["id"]) == [1] and table["volume_angst3"].iloc[0] > 0
    mesh_file = out / "tomo_prob_meshes" / "tomo_prob_membrane_001.obj"
    import trimesh

    mesh = trimesh.load(mesh_file)
    assert mesh.is_watertight
    points = read_particles(out / "tomo_prob_surface_points.csv")
    normals = points[["nx", "ny", "nz"]].to_numpy()
    radial = points[["x", "y", "z"]].to_numpy() - CENTRE
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.mean((normals * radial).sum(1)) > 0.95  # outward normals
    assert np.allclose(orientations(points)[:, :, 2], normals, atol=1e-6)
    # the picks: RELION angles with priors, z along the outward normal
    got = read_particles(oriented, tomo_size_xyz="64x64x48", tilt_series_pixel_size=12.0,
                         voxel_size=12.0)
    assert np.allclose(got[["x", "y", "z"]].to_numpy(), xyz, atol=1e-3)
    z_axes = orientations(got)[:, :, 2]
    assert z_axes[0] @ [1, 0, 0] > 0.95 and z_axes[1] @ [0, 0, 1] > 0.95
    assert np.allclose(z_axes[2], [0, 0, 1])  # far from any membrane: unchanged
    block = next(v for v in read_star(oriented).values()
                 if hasattr(v, "columns") and "rlnAngleTilt" in v.columns)
    assert np.allclose(block["rlnAngleTiltPrior"], block["rlnAngleTilt"])
    assert np.allclose(block["rlnAnglePsiPrior"], block["rlnAnglePsi"])
    assert block["rlnAngleTilt"].iloc[0] == pytest.approx(90, abs=8)
    # the same orientations as Dynamo angles
    dyn = tmp_path / "oriented.tbl"
    assert main(["membranes", str(mask), "--out", str(out), "--picks", str(picks),
                 "--picks-out", str(dyn), "--force"]) == 0
    assert np.allclose(orientations(read_particles(dyn))[:2, :, 2], z_axes[:2], atol=1e-3)
    # no overwrite without --force
    assert main(["membranes", str(mask), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_empty_mask_gives_an_empty_result(tmp_path, capsys):
    empty = tmp_path / "empty.mrc"
    write_volume(empty, Volume(np.zeros((16, 20, 24), np.int8), voxel_size=10.0))
    assert main(["membranes", str(empty), "--out", str(tmp_path / "o"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "no membrane voxels" in captured.err
    summary = json.loads(captured.out)
    assert summary["info"]["instances"] == 0 and summary["membranes"] == []
    assert not read_volume(tmp_path / "o" / "empty_refined.mrc").data.any()
    assert pd.read_csv(tmp_path / "o" / "empty_membranes.csv").empty


def test_bad_input_is_refused_before_any_output(tmp_path, capsys):
    mask = _vesicle(tmp_path / "m.mrc")
    far = tmp_path / "far.csv"
    write_particles(far, make_table(np.array([[200.0, 10.0, 10.0]]), 12.0), format="csv")
    out = tmp_path / "out"
    code = main(["membranes", str(mask), "--out", str(out), "--picks", str(far),
                 "--picks-out", str(tmp_path / "o.star")])
    err = capsys.readouterr().err
    assert code == 2 and "outside" in err and err.count("\n") == 1
    tomo = tmp_path / "tomo.mrc"
    write_volume(tomo, Volume(np.zeros((40, 64, 64), np.float32), voxel_size=12.0))
    near = tmp_path / "near.csv"
    write_particles(near, make_table(np.array([[10.0, 10.0, 10.0]]), 12.0), format="csv")
    code = main(["membranes", str(mask), "--out", str(out), "--picks", str(near),
                 "--picks-out", str(tmp_path / "o.star"), "--tomogram", str(tomo)])
    err = capsys.readouterr().err
    assert code == 2 and "does not match" in err
    flat = tmp_path / "flat.mrc"
    write_volume(flat, Volume(np.random.default_rng(0).uniform(0, 0.3, SHAPE)
                              .astype(np.float32), voxel_size=12.0))
    assert main(["membranes", str(flat), "--out", str(out)]) == 2
    assert "separates nothing" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_segment_with_surfaces_runs_the_membrane_step(tmp_path, capsys):
    pytest.importorskip("torch")
    data = np.random.default_rng(0).normal(size=(24, 40, 36)).astype(np.float32)
    data[10:13] -= 2.0  # a dark slab, like a membrane sheet in the x-y plane
    tomo = tmp_path / "tomo.mrc"
    write_volume(tomo, Volume(data, voxel_size=10.0))
    surfaces = tmp_path / "surfaces"
    code = main(["segment", str(tomo), "--out", str(tmp_path / "prob.mrc"), "--surfaces",
                 str(surfaces), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["surfaces"]["outputs"]["instances"].endswith("prob_instances.mrc")
    inst = read_volume(surfaces / "prob_instances.mrc")
    assert inst.data.shape == data.shape
    # the outputs are refused the second time, before segmenting again
    assert main(["segment", str(tomo), "--out", str(tmp_path / "prob2.mrc"), "--surfaces",
                 str(surfaces)]) == 0
    assert main(["segment", str(tomo), "--out", str(tmp_path / "prob3.mrc"), "--surfaces",
                 str(surfaces / "prob2_refined.mrc")]) == 2
