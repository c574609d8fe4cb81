"""Every particle fixture in tests/data/fixtures reads, with the count and pixel size of
fixtures/SOURCES.md, and positions/orientations that agree with the field's own readers."""

from __future__ import annotations

import dynamotable
import emfile
import imodmodel
import numpy as np
import pytest
import starfile

from formats import FormatError, detect_format, read_particles
from formats.euler import relion_to_matrix
from formats.particles import orientations

R5_TOMOS = "relion/relion5_tutorial_tomograms.star"
CYL_TOMOS = "relion/cylindra_relion5_tomograms.star"
WARP2_TOMOS = "relion/warp2_relion5_matching_tomograms.star"

# file, detected format, count, voxel sizes (Å; None = not stored), tomograms, options
CASES = [
    ("relion/relion5_tutorial_run_data_first120.star", "relion5", 120, [1.35], ["TS_01"],
     {"tomograms": R5_TOMOS}),
    ("relion/relion4_subtomo_data_first150.star", "relion4", 150, [1.971],
     ["TS_017", "TS_018"], {}),
    ("relion/relion3.0_warp_subtomo.star", "relion30", 3, [5.364], ["01006_10.73Apx"], {}),
    ("relion/relion3.1_subtomo_two_optics_groups.star", "relion31", 3, [2.446, 3.446],
     ["0002_12.23Apx", "0003_12.23Apx"], {}),
    ("relion/relion5_warp1_run_it025_data_first100.star", "relion31", 100, [4.828],
     ["015", "021"], {}),
    ("relion/warp2_relion5_particles_matching.star", "relion5", 1218, [4.0],
     ["TS_1.tomostar", "TS_11.tomostar", "TS_17.tomostar", "TS_23.tomostar",
      "TS_32.tomostar"], {"tomograms": WARP2_TOMOS}),
    ("relion/cylindra_relion5_class3d_run_it025_data.star", "relion5", 10, [1.35],
     ["TS_01", "TS_02"], {"tomo_size_xyz": "1000x800x200"}),
    ("relion/cylindra_relion5_class3d_run_it025_data.star", "relion5", 10, [10.52],
     ["TS_01", "TS_02"], {"tomograms": CYL_TOMOS}),
    ("relion/cylindra_relion5_picks_particles.star", "relion5", 5, [10.52],
     ["TS_01", "TS_02"], {"tomograms": CYL_TOMOS}),
    ("data_portal/relion_3_star.star", "relion30", 6, [1.7005],
     ["tomo_1", "tomo_2", "tomo_3"], {}),
    ("data_portal/relion_4_star.star", "relion4", 6, [1.0], ["TS_001", "TS_002", "TS_003"],
     {}),
    ("data_portal/tomoman_relion_star.star", "relion30", 6, [1.96],
     ["grid_1_lamella1_pos1", "grid_1_lamella1_pos2", "grid_1_lamella1_pos3"], {}),
    ("data_portal/stopgap_star.star", "stopgap", 6, None, ["1", "2", "3"], {}),
    ("data_portal/copick.json", "copick", 4, [1.0], [""], {}),
    ("data_portal/copick_instance.json", "copick", 6, [1.0], ["Position_94_Vol"], {}),
    ("data_portal/points.mod", "imod", 3, None, ["points"], {}),
    ("data_portal/oriented_points.mod", "imod", 4, [16.145455], ["oriented_points"], {}),
    ("data_portal/tardis.csv", "csv", 6, [1.0], [""], {}),
    ("dynamo/cryocat_b4_motl_CR_dynamo.tbl", "dynamo", 1343, None, None, {}),
    ("dynamo/dynamotable_t_double.tbl", "dynamo", 300, None, ["1", "2"], {}),
    ("em/cryocat_motl_au_1.em", "motl", 64, None, ["160"], {}),
    ("em/cryocat_motl_tric.em", "motl", 139, None, None, {}),
    ("cryolo/boxmanager_3d_particle.cbox", "cryolo", 3, None, ["boxmanager_3d_particle"], {}),
    ("cryolo/cryolo_3d_particles_first100.cbox", "cryolo", 100, None,
     ["cryolo_3d_particles_first100"], {}),
    ("eman2/boxmanager_test_0.box", "eman2box", 3, None, ["boxmanager_test_0"], {}),
    ("eman2/boxmanager_2d_center.box", "eman2box", 3, None, ["boxmanager_2d_center"], {}),
    ("imod/imodmodel_two_contour_example.mod", "imod", 25, [4.48],
     ["imodmodel_two_contour_example"], {}),
    ("imod/imodmodel_multiple_objects_example.mod", "imod", 6, [19.733333], None, {}),
    ("imod/imodmodel_point_sizes_example.mod", "imod", 18, [12.399], None, {}),
    ("imod/cryocat_correct111.mod", "imod", 161, None, ["cryocat_correct111"], {}),
    ("pytom/pytom_pickpos_format.xml", "pytom", 10, None, ["tomo1"], {}),
]


@pytest.mark.parametrize("name,fmt,count,sizes,tomos,options", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_fixture_reads(fixtures_dir, name, fmt, count, sizes, tomos, options):
    path = fixtures_dir / name
    opts = {k: (fixtures_dir / v if k == "tomograms" else v) for k, v in options.items()}
    assert detect_format(path) == fmt
    table = read_particles(path, **opts)
    assert len(table) == count
    vs = table["voxel_size"].to_numpy()
    if sizes is None:
        assert np.isnan(vs).all()
    else:
        assert sorted(np.unique(np.round(vs, 6))) == pytest.approx(sizes)
        assert np.allclose(table["x_angst"], table["x"] * table["voxel_size"])
    if tomos is not None:
        assert sorted(set(table["tomo_name"])) == tomos
        assert all(isinstance(t, str) for t in table["tomo_name"])
    rot = orientations(table)
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-5)


@pytest.mark.parametrize("name,problem", [
    ("relion/relion5_tutorial_tomograms.star", "tomograms.star"),
    ("relion/warp2_relion5_matching_optimisation_set.star", "optimisation set"),
    ("relion/cylindra_relion5_picks_optimisation_set.star", "optimisation set"),
    ("relion/relion5_tutorial_TS_01_tiltseries.star", "tilt-series"),
    ("cryolo/cryolo_2d_TcdA1-0018_frames_sum.cbox", "2D CBOX"),
    ("em/cryocat_mask_sm0.em", "read_volume"),
    ("relion/relion5_tutorial_run_data_first120.star", "tomogram sizes"),
])
def test_non_particle_files_refused_with_reason(fixtures_dir, name, problem):
    with pytest.raises(FormatError) as err:
        read_particles(fixtures_dir / name)
    assert problem in str(err.value) and name.split("/")[-1] in str(err.value)


def test_relion5_position_rule_matches_hand_computation(fixtures_dir):
    """pixel = C/ts + size/2 - A_sub.origin/ts, R = A_sub.A_part (formats README 2.4)."""
    from scipy.spatial.transform import Rotation

    path = fixtures_dir / "relion/relion5_tutorial_run_data_first120.star"
    raw = starfile.read(path)["particles"]
    table = read_particles(path, tomograms=fixtures_dir / R5_TOMOS)
    row = raw.iloc[3]
    a_sub = Rotation.from_euler("ZYZ", [row.rlnTomoSubtomogramRot, row.rlnTomoSubtomogramTilt,
                                        row.rlnTomoSubtomogramPsi], degrees=True).inv()
    a_part = Rotation.from_euler("ZYZ", [row.rlnAngleRot, row.rlnAngleTilt, row.rlnAnglePsi],
                                 degrees=True).inv()
    centred = np.array([row.rlnCenteredCoordinateXAngst, row.rlnCenteredCoordinateYAngst,
                        row.rlnCenteredCoordinateZAngst])
    origin = np.array([row.rlnOriginXAngst, row.rlnOriginYAngst, row.rlnOriginZAngst])
    expected = centred / 1.35 + np.array([2000.0, 2000.0, 1000.0]) - a_sub.apply(origin) / 1.35
    assert table.loc[3, ["x", "y", "z"]].to_numpy(float) == pytest.approx(expected, abs=1e-9)
    assert np.allclose(orientations(table)[3], (a_sub * a_part).as_matrix(), atol=1e-12)
    binned = read_particles(path, tomograms=fixtures_dir / R5_TOMOS, binning=4)
    assert binned.loc[3, ["x", "y", "z"]].to_numpy(float) == pytest.approx(expected / 4)
    assert binned.loc[3, "voxel_size"] == pytest.approx(5.4)


def test_relion_pixel_flavours_apply_origins(fixtures_dir):
    r3 = fixtures_dir / "data_portal/relion_3_star.star"
    raw = starfile.read(r3)
    table = read_particles(r3)
    expected = raw["rlnCoordinateX"] - raw["rlnOriginX"].fillna(0)
    assert np.allclose(table["x"], expected)
    r4 = fixtures_dir / "relion/relion4_subtomo_data_first150.star"
    raw4 = starfile.read(r4)["particles"]
    t4 = read_particles(r4)
    assert np.allclose(t4["y"], raw4["rlnCoordinateY"] - raw4["rlnOriginYAngst"] / 1.971)
    assert np.allclose(orientations(t4), relion_to_matrix(
        raw4[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))


def test_warp2_unwrapped_angles_read_as_wrapped(fixtures_dir):
    path = fixtures_dir / "relion/warp2_relion5_particles_matching.star"
    raw = starfile.read(path)["particles"]
    angles = raw[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    assert np.abs(angles).max() > 10000
    table = read_particles(path, tomograms=fixtures_dir / WARP2_TOMOS)
    assert np.allclose(orientations(table), relion_to_matrix(np.mod(angles, 360.0)), atol=1e-9)
    assert table["x"].max() < 6000 / 5.06714  # Warp 2 px are 4 Å, not unbinned


def test_dynamo_matches_dynamotable(fixtures_dir):
    path = fixtures_dir / "dynamo/dynamotable_t_double.tbl"
    ref = dynamotable.read(path)
    table = read_particles(path)
    assert np.allclose(table["x"], ref["x"] + ref["dx"] - 1)
    assert np.allclose(table["z"], ref["z"] + ref["dz"] - 1)
    assert list(table["tomo_name"]) == [str(t) for t in ref["tomo"]]
    mapped = read_particles(path, table_map=fixtures_dir / "dynamo/dynamotable_tmap_complex.doc")
    assert mapped["tomo_name"].iloc[0] == "tomo_ts01.mrc_15.00Apx"


def test_motl_matches_emfile(fixtures_dir):
    path = fixtures_dir / "em/cryocat_motl_tric.em"
    _, data = emfile.read(path)
    motl = data[0].astype(float)
    table = read_particles(path)
    assert np.allclose(table[["x", "y", "z"]], motl[:, 7:10] + motl[:, 10:13] - 1, atol=1e-5)
    assert np.allclose(table["score"], motl[:, 0])


def test_imod_matches_imodmodel(fixtures_dir):
    for name in ("imod/imodmodel_two_contour_example.mod", "imod/cryocat_correct111.mod",
                 "data_portal/oriented_points.mod"):
        ref = imodmodel.read(fixtures_dir / name)
        table = read_particles(fixtures_dir / name)
        assert np.allclose(table[["x", "y", "z"]].to_numpy(), ref[["x", "y", "z"]].to_numpy())


def test_cbox_centre_is_corner_plus_half_box(fixtures_dir):
    path = fixtures_dir / "cryolo/cryolo_3d_particles_first100.cbox"
    raw = starfile.read(path)["cryolo"]
    table = read_particles(path, voxel_size=8.0)
    assert np.allclose(table["x"], raw["CoordinateX"] + raw["Width"] / 2)
    assert np.allclose(table["z"], raw["CoordinateZ"])
    assert np.allclose(table["x_angst"], table["x"] * 8.0)


def test_imod_slicer_angles_as_the_data_portal_imports_them(fixtures_dir):
    """Expected values from the Data Portal's ingestion test of oriented_points.mod."""
    table = read_particles(fixtures_dir / "data_portal/oriented_points.mod", slicer_angles=True)
    assert len(table) == 4
    assert table.loc[0, ["x", "y", "z"]].tolist() == pytest.approx(
        [235.5195770263672, 682.744140625, 302.0])
    assert table.loc[1, ["x", "y", "z"]].tolist() == pytest.approx(
        [221.94244384765625, 661.1932373046875, 327.0])
    assert np.allclose(orientations(table)[0], [[0.8642748, -0.48992935, -0.11401013],
                                                [0.50301996, 0.84178288, 0.19588902],
                                                [0.0, -0.22665131, 0.97397597]], atol=1e-6)
    with pytest.raises(FormatError, match="no slicer-angle"):
        read_particles(fixtures_dir / "imod/imodmodel_two_contour_example.mod",
                       slicer_angles=True)
