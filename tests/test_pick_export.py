"""Exported picks as subtomogram-averaging programs read them: RELION 5 (companion
tomograms.star, or joined to a user's project), RELION 4 and Dynamo tables read back with
starfile / dynamotable, positions matching the picks to 1e-3 Å (conventions of
docs/formats.md), and re-import through ``formats`` giving the same particles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryoet_integration.errors import CryovisError
from cryoet_integration.picking.export import plan_export, write_picks
from formats import make_table, read_particles

starfile = pytest.importorskip("starfile")
dynamotable = pytest.importorskip("dynamotable")

SHAPE_ZYX = (90, 200, 240)
VS = 8.52
NUMBERS = {"ribosome": 1, "barrel": 2}


def _picks(n: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    xyz = rng.uniform(0, 1, (n, 3)) * (np.array(SHAPE_ZYX[::-1]) - 1)
    classes = rng.choice(["ribosome", "barrel"], n)
    return make_table(xyz, voxel_size=VS, classes=list(classes),
                      scores=np.sort(rng.uniform(0.3, 1, n))[::-1], tomo_name="tomoA")


def _particles_block(path):
    blocks = starfile.read(path, always_dict=True)
    return blocks["particles"], blocks


def test_relion5_with_companion_tomograms_star(tmp_path):
    picks = _picks()
    out = tmp_path / "picks.star"
    plan = plan_export(out, None, SHAPE_ZYX, VS, "tomoA")
    assert plan.fmt == "relion5" and plan.companion == tmp_path / "picks_tomograms.star"
    written = write_picks(plan, picks, NUMBERS)
    assert written == [out, plan.companion]
    particles, _ = _particles_block(out)
    tomos = starfile.read(plan.companion, always_dict=True)["global"]
    assert list(tomos["rlnTomoName"]) == ["tomoA"]
    assert (tomos[["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].to_numpy()[0]
            == np.array(SHAPE_ZYX[::-1])).all()
    assert float(tomos["rlnTomoTiltSeriesPixelSize"][0]) == pytest.approx(VS)
    # centred Å = (voxel - N / 2) * voxel size (RELION 5, binning 1)
    centred = particles[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy(float)
    expected = (picks[["x", "y", "z"]].to_numpy() - np.array(SHAPE_ZYX[::-1]) / 2) * VS
    assert np.abs(centred - expected).max() < 1e-3
    assert list(particles["rlnClassNumber"]) == [NUMBERS[c] for c in picks["class"]]
    assert list(particles["rlnClassName"]) == list(picks["class"])
    np.testing.assert_allclose(particles["rlnAutopickFigureOfMerit"], picks["score"], atol=1e-6)
    back = read_particles(out, tomograms=plan.companion)
    assert np.abs(back[["x", "y", "z"]].to_numpy() - picks[["x", "y", "z"]].to_numpy()).max() \
        * VS < 1e-3
    assert list(back["class"]) == list(picks["class"])  # names survive, via rlnClassName
    # the companion is never overwritten by another run, even when the picks file is new
    out.unlink()
    with pytest.raises(CryovisError, match="picks_tomograms.star"):
        plan_export(tmp_path / "picks.star", None, SHAPE_ZYX, VS, "tomoA", overwrite=False)


def test_relion5_joins_an_existing_project(tmp_path):
    ts, binning = 2.13, 4.0
    their = tmp_path / "their_tomograms.star"
    starfile.write({"global": pd.DataFrame({
        "rlnTomoName": ["TS_01", "TS_02"], "rlnVoltage": [300.0, 300.0],
        "rlnSphericalAberration": [2.7, 2.7], "rlnAmplitudeContrast": [0.1, 0.1],
        "rlnMicrographOriginalPixelSize": [ts, ts], "rlnTomoHand": [-1, -1],
        "rlnTomoTiltSeriesPixelSize": [ts, ts], "rlnTomoTomogramBinning": [binning] * 2,
        "rlnTomoSizeX": [960, 960], "rlnTomoSizeY": [800, 800], "rlnTomoSizeZ": [360, 360],
    })}, their)
    picks = _picks()
    out = tmp_path / "join.star"
    plan = plan_export(out, None, SHAPE_ZYX, ts * binning, "TS_02", tomograms_star=their)
    assert plan.companion is None
    assert write_picks(plan, picks, NUMBERS) == [out]
    particles, _ = _particles_block(out)
    assert set(particles["rlnTomoName"]) == {"TS_02"}
    centred = particles[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy(float)
    unbinned = picks[["x", "y", "z"]].to_numpy() * binning
    expected = (unbinned - np.array([960, 800, 360]) / 2) * ts
    assert np.abs(centred - expected).max() < 1e-3
    back = read_particles(out, tomograms=their)
    # re-read at the tilt-series pixel size: same physical positions
    got = back[["x_angst", "y_angst", "z_angst"]].to_numpy()
    assert np.abs(got - picks[["x_angst", "y_angst", "z_angst"]].to_numpy()).max() < 1e-3
    with pytest.raises(CryovisError, match="nope"):
        plan_export(tmp_path / "x.star", None, SHAPE_ZYX, ts * binning, "nope",
                    tomograms_star=their)
    with pytest.raises(CryovisError, match="binning"):
        plan_export(tmp_path / "y.star", None, SHAPE_ZYX, ts * 2, "TS_01", tomograms_star=their)


def test_relion4_unbinned_pixels(tmp_path):
    picks = _picks()
    out = tmp_path / "r4.star"
    plan = plan_export(out, "relion4", SHAPE_ZYX, VS, "tomoA", binning=2.0)
    assert plan.companion is None
    write_picks(plan, picks, NUMBERS)
    blocks = starfile.read(out, always_dict=True)
    particles, optics = blocks["particles"], blocks["optics"]
    assert float(optics["rlnTomoTiltSeriesPixelSize"][0]) == pytest.approx(VS / 2)
    coords = particles[[f"rlnCoordinate{a}" for a in "XYZ"]].to_numpy(float)
    # unbinned tilt-series px, corner origin: Å difference below 1e-3
    assert np.abs(coords * VS / 2 - picks[["x_angst", "y_angst", "z_angst"]].to_numpy()).max() \
        < 1e-3
    back = read_particles(out)
    got = back[["x_angst", "y_angst", "z_angst"]].to_numpy()
    assert np.abs(got - picks[["x_angst", "y_angst", "z_angst"]].to_numpy()).max() < 1e-3


def test_dynamo_table(tmp_path):
    picks = _picks()
    out = tmp_path / "picks.tbl"
    plan = plan_export(out, None, SHAPE_ZYX, VS, "tomoA")
    assert plan.fmt == "dynamo"
    write_picks(plan, picks, NUMBERS)
    table = dynamotable.read(str(out))
    # Dynamo: px of the tomogram, 1-based
    xyz = table[["x", "y", "z"]].to_numpy(float) + table[["dx", "dy", "dz"]].to_numpy(float)
    assert np.abs((xyz - 1) * VS - picks[["x_angst", "y_angst", "z_angst"]].to_numpy()).max() \
        < 1e-3
    assert list(table["class"].astype(int)) == [NUMBERS[c] for c in picks["class"]]
    back = read_particles(out, voxel_size=VS)
    assert np.abs(back[["x", "y", "z"]].to_numpy() - picks[["x", "y", "z"]].to_numpy()).max() \
        * VS < 1e-3
    # zero picks: Dynamo cannot hold an empty table, so nothing is written
    assert write_picks(plan_export(tmp_path / "none.tbl", None, SHAPE_ZYX, VS, "tomoA"),
                       picks.iloc[:0], NUMBERS) == []


def test_csv_keeps_class_names(tmp_path):
    picks = _picks()
    out = tmp_path / "p.csv"
    write_picks(plan_export(out, None, SHAPE_ZYX, VS, "tomoA"), picks, NUMBERS)
    back = read_particles(out)
    assert list(back["class"]) == list(picks["class"])
    assert np.abs(back[["x", "y", "z"]].to_numpy() - picks[["x", "y", "z"]].to_numpy()).max() \
        * VS < 1e-3
