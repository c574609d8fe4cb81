"""What cryovis writes is read back by the field's own readers (starfile, dynamotable,
imodmodel, emfile, mrcfile, copick's models), with the conventions of the formats reference."""

from __future__ import annotations

import json

import dynamotable
import emfile
import imodmodel
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from cryoet_integration.cli import main
from formats import (
    FormatError,
    make_table,
    read_particles,
    read_tomograms,
    write_particles,
    write_tomograms,
)


@pytest.fixture()
def table():
    rng = np.random.default_rng(11)
    mats = Rotation.random(8, random_state=3).as_matrix()
    return make_table(rng.uniform(10, 400, (8, 3)), 6.75, mats,
                      ["001", "001", "TS_02", "TS_02", "001", "TS_02", "001", "TS_02"],
                      ["1", "2", "1", "2", "1", "2", "1", "2"], rng.uniform(0, 1, 8))


def test_relion_star_files_read_by_starfile(tmp_path, table):
    tomos = pd.DataFrame({"tomo_name": ["001", "TS_02"], "size_x": [1000.0, 1200.0],
                          "size_y": [900.0, 1000.0], "size_z": [400.0, 300.0],
                          "tilt_series_pixel_size": [1.35, 1.35], "binning": [5.0, 5.0]})
    tomo_path = tmp_path / "tomograms.star"
    write_tomograms(tomo_path, tomos)
    assert read_tomograms(tomo_path)["tomo_name"].tolist() == ["001", "TS_02"]
    out = tmp_path / "p5.star"
    write_particles(out, table, format="relion5", tomograms=tomo_path)
    star = starfile.read(out)
    # picks without images: nothing is stated about 2D stacks or image dimensionality
    assert set(star) == {"optics", "particles"}
    assert "rlnImageDimensionality" not in star["optics"]
    # the microscope values come from tomograms.star, as a refinement needs them
    assert star["optics"][["rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"]
                          ].iloc[0].tolist() == pytest.approx([300.0, 2.7, 0.1])
    parts = star["particles"]
    assert star["optics"]["rlnTomoTiltSeriesPixelSize"].iloc[0] == pytest.approx(1.35)
    assert star["optics"]["rlnImagePixelSize"].iloc[0] == pytest.approx(6.75)
    # RELION 5 rule: centred Å = (unbinned px - size/2) * ts px
    size = np.where(table["tomo_name"] == "001", 1000.0, 1200.0)
    expected = (table["x"] * 6.75 / 1.35 - size / 2) * 1.35
    assert np.allclose(parts["rlnCenteredCoordinateXAngst"], expected, atol=1e-6)
    rel = Rotation.from_euler("ZYZ", parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]],
                              degrees=True).inv().as_matrix()
    assert np.abs(rel - table[[f"r{i}{j}" for i in range(3) for j in range(3)]]
                  .to_numpy().reshape(-1, 3, 3)).max() < 1e-6
    for version in ("relion4", "relion31", "relion30"):
        path = tmp_path / f"{version}.star"
        write_particles(path, table, format=version, binning=5.0 if version == "relion4" else 1)
        blocks = starfile.read(path, always_dict=True)
        parts = blocks["particles" if version != "relion30" else ""]
        px = parts["rlnCoordinateX"].to_numpy()
        factor = 5.0 if version == "relion4" else 1.0
        assert np.allclose(px, table["x"] * factor, atol=1e-6)


def test_dynamo_table_read_by_dynamotable(tmp_path, table):
    out = tmp_path / "p.tbl"
    write_particles(out, table, format="dynamo")
    ref = dynamotable.read(out, table_map_file=tmp_path / "p.doc")
    assert np.allclose(ref["x"], table["x"] + 1, atol=1e-6)
    assert np.allclose(ref["apix"], 6.75)
    dyn = Rotation.from_euler("zxz", ref[["tdrot", "tilt", "narot"]], degrees=True).inv()
    assert np.abs(dyn.as_matrix() - table[[f"r{i}{j}" for i in range(3) for j in range(3)]]
                  .to_numpy().reshape(-1, 3, 3)).max() < 1e-6
    assert [str(p) for p in ref["tomo_file"]] == [f"{n}.mrc" for n in table["tomo_name"]]


def test_imod_model_read_by_imodmodel(tmp_path, table):
    table = table[table["tomo_name"] == "001"].reset_index(drop=True)
    out = tmp_path / "p.mod"
    write_particles(out, table, format="imod")
    ref = imodmodel.read(out)
    order = np.argsort(table["class"].to_numpy(), kind="stable")
    assert np.allclose(ref[["x", "y", "z"]].to_numpy(),
                       table[["x", "y", "z"]].to_numpy()[order], atol=1e-4)
    model = imodmodel.ImodModel.from_file(out)
    assert model.header.pixelsize == pytest.approx(6.75) and model.header.units == -10
    assert [o.header.name for o in model.objects] == ["1", "2"]
    assert model.header.name == "001"


def test_motive_list_read_by_emfile(tmp_path, table):
    t = table.copy()
    t["tomo_name"] = ["4", "4", "9", "9", "4", "9", "4", "9"]
    out = tmp_path / "p.em"
    write_particles(out, t, format="motl")
    header, data = emfile.read(out)
    assert data.shape == (1, 8, 20) and header["xdim"] == 20
    motl = data[0].astype(float)
    assert np.allclose(motl[:, 7:10] + motl[:, 10:13] - 1, t[["x", "y", "z"]], atol=1e-4)
    assert motl[:, 4].tolist() == [4, 4, 9, 9, 4, 9, 4, 9]
    tom = Rotation.from_euler("zxz", motl[:, [16, 18, 17]], degrees=True).as_matrix()
    assert np.abs(tom - t[[f"r{i}{j}" for i in range(3) for j in range(3)]]
                  .to_numpy().reshape(-1, 3, 3)).max() < 1e-5


def test_cbox_read_by_starfile(tmp_path, table):
    with pytest.raises(FormatError, match="one tomogram"):
        write_particles(tmp_path / "mixed.cbox", table, format="cryolo")
    table = table[table["tomo_name"] == "TS_02"].reset_index(drop=True)
    out = tmp_path / "p.cbox"
    write_particles(out, table, format="cryolo", box_size=40)
    blocks = starfile.read(out, always_dict=True)
    assert set(blocks) == {"global", "cryolo", "cryolo_include"}
    box = blocks["cryolo"]
    assert np.allclose(box["CoordinateX"] + box["Width"] / 2, table["x"])
    assert "<NA>" in out.read_text()


def test_copick_json_read_by_copick_models(tmp_path, table):
    """copick's own pydantic model parses what we write, and we read what it dumps."""
    from copick.models import CopickLocation, CopickPicksFile, CopickPoint

    one = table[table["tomo_name"] == "001"].reset_index(drop=True)
    out = tmp_path / "picks.json"
    write_particles(out, one, format="copick", object_name="ribosome")
    picks = CopickPicksFile(**json.loads(out.read_text()))
    assert picks.pickable_object_name == "ribosome" and picks.unit == "angstrom"
    assert picks.run_name == "001" and picks.voxel_spacing == pytest.approx(6.75)
    assert len(picks.points) == len(one)
    loc = picks.points[0].location
    assert [loc.x, loc.y, loc.z] == pytest.approx(one[["x", "y", "z"]].iloc[0] * 6.75)
    assert np.allclose(np.asarray(picks.points[0].transformation)[:3, :3],
                       one[[f"r{i}{j}" for i in range(3) for j in range(3)]]
                       .to_numpy(float)[0].reshape(3, 3))
    rot = Rotation.from_euler("ZYZ", [90, 45, 180], degrees=True).inv().as_matrix()
    t = np.eye(4)
    t[:3, :3] = rot
    theirs = CopickPicksFile(
        pickable_object_name="apoferritin", user_id="u", session_id="1", run_name="TS_9",
        voxel_spacing=None, unit="angstrom",
        points=[CopickPoint(location=CopickLocation(x=15.0, y=25.0, z=35.0),
                            transformation_=t.tolist(), instance_id=3, score=0.7)])
    src = tmp_path / "theirs.json"
    src.write_text(theirs.model_dump_json(indent=2))
    back = read_particles(src, voxel_size=5.0)
    assert back[["x", "y", "z"]].iloc[0].tolist() == pytest.approx([3.0, 5.0, 7.0])
    assert back["tomo_name"].tolist() == ["TS_9"] and back["class"].tolist() == ["apoferritin"]
    assert np.allclose(back[[f"r{i}{j}" for i in range(3) for j in range(3)]]
                       .to_numpy(float)[0], rot.ravel())


def test_volume_conversion_read_by_mrcfile(tmp_path, fixtures_dir):
    src = fixtures_dir / "mrc/EMD-3197.map"
    out = tmp_path / "inv.mrc"
    assert main(["convert", str(src), str(out), "--invert"]) == 0
    with mrcfile.open(src, permissive=True) as a, mrcfile.open(out) as b:
        assert np.allclose(b.data, -a.data)
        assert float(b.voxel_size.x) == pytest.approx(11.4)
    em_out = tmp_path / "vol.em"
    assert main(["convert", str(src), str(em_out), "--to", "em"]) == 0
    _, data = emfile.read(em_out)
    with mrcfile.open(src, permissive=True) as a:
        assert np.allclose(data, a.data)
