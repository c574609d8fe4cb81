"""Angle conventions, the fast STAR reader/writer, and ``cryovis convert`` end to end."""

from __future__ import annotations

import json

import dynamotable
import numpy as np
import pandas as pd
import pytest
import starfile
from eulerangles import convert_eulers, euler2matrix
from scipy.spatial.transform import Rotation

from cryoet_integration.cli import main
from formats import (
    FormatError,
    euler,
    make_table,
    read_particles,
    read_star,
    tomo_name_from_path,
    write_particles,
    write_star,
)

RNG = np.random.default_rng(2)
ANGLES = np.column_stack([RNG.uniform(-180, 180, 500), RNG.uniform(0, 180, 500),
                          RNG.uniform(-180, 180, 500)])
ANGLES[:5, 1] = [0.0, 180.0, 1e-8, 180 - 1e-8, 90.0]


# ------------------------------------------------------------------- angle conventions

def test_relion_worked_example():
    """formats README section 1: RELION (30, 60, 75) <-> Dynamo (-15, 60, 120)."""
    r = euler.relion_to_matrix([30, 60, 75])[0]
    expected = np.array([[-0.3709, 0.9012, -0.2241], [-0.5477, -0.0173, 0.8365],
                         [0.7500, 0.4330, 0.5000]])
    assert np.allclose(r, expected, atol=1e-4)
    assert np.allclose(euler.matrix_to_dynamo(r), [[-15, 60, 120]], atol=1e-9)
    assert np.allclose(euler.dynamo_to_matrix([-15, 60, 120])[0], r, atol=1e-12)
    assert np.allclose(convert_eulers(np.array([30.0, 60, 75]), "relion", "dynamo"),
                       [-15, 60, 120], atol=1e-6)


def test_conventions_match_scipy_and_eulerangles():
    rel = Rotation.from_euler("ZYZ", ANGLES, degrees=True).inv().as_matrix()
    assert np.allclose(euler.relion_to_matrix(ANGLES), rel, atol=1e-12)
    assert np.allclose(euler.relion_to_matrix(ANGLES), np.swapaxes(
        euler2matrix(ANGLES, axes="zyz", intrinsic=True, right_handed_rotation=True), 1, 2),
        atol=1e-12)
    dyn = Rotation.from_euler("zxz", ANGLES, degrees=True).inv().as_matrix()
    assert np.allclose(euler.dynamo_to_matrix(ANGLES), dyn, atol=1e-12)
    tom = Rotation.from_euler("zxz", ANGLES[:, [0, 2, 1]], degrees=True).as_matrix()
    assert np.allclose(euler.tom_to_matrix(ANGLES), tom, atol=1e-12)


@pytest.mark.parametrize("to_angles,to_matrix", [
    (euler.matrix_to_relion, euler.relion_to_matrix),
    (euler.matrix_to_dynamo, euler.dynamo_to_matrix),
    (euler.matrix_to_tom, euler.tom_to_matrix)])
def test_angle_extraction_inverts_matrices_including_gimbal_lock(to_angles, to_matrix):
    mats = Rotation.from_euler("ZYZ", ANGLES, degrees=True).as_matrix()
    assert np.abs(to_matrix(to_angles(mats)) - mats).max() < 1e-9


def test_tom_dynamo_identity():
    """Dynamo (tdrot, tilt, narot) = (-psi, -theta, -phi) of TOM (phi, psi, theta)."""
    phi, psi, theta = ANGLES[:, 0], ANGLES[:, 2], ANGLES[:, 1]
    tom = euler.tom_to_matrix(np.column_stack([phi, psi, theta]))
    dyn = euler.dynamo_to_matrix(np.column_stack([-psi, -theta, -phi]))
    assert np.allclose(tom, dyn, atol=1e-12)


def test_unwrapped_angles_give_the_same_matrix():
    assert np.allclose(euler.relion_to_matrix(ANGLES + [[3600, 0, -7200]]),
                       euler.relion_to_matrix(ANGLES), atol=1e-9)


def test_portal_copick_matrix_from_relion(fixtures_dir):
    """The Data Portal's fixtures: RELION (90, 45, 180) is copick.json's first matrix."""
    copick = json.loads((fixtures_dir / "data_portal/copick.json").read_text())
    first = np.asarray(copick["points"][0]["transformation_"])[:3, :3]
    assert np.allclose(euler.relion_to_matrix([90, 45, 180])[0], first, atol=1e-12)
    r3 = read_particles(fixtures_dir / "data_portal/relion_3_star.star")
    cp = read_particles(fixtures_dir / "data_portal/copick.json", voxel_size=10.0)
    assert np.allclose(r3.loc[0, [f"r{i}{j}" for i in range(3) for j in range(3)]]
                       .to_numpy(float), first.ravel(), atol=1e-12)
    assert np.allclose(cp.loc[0, [f"r{i}{j}" for i in range(3) for j in range(3)]]
                       .to_numpy(float), first.ravel())


# ------------------------------------------------------------------------ STAR files

def _star_fixtures(fixtures_dir):
    return sorted(list(fixtures_dir.glob("**/*.star")) + list(fixtures_dir.glob("**/*.cbox")))


def test_star_reader_agrees_with_starfile_on_every_fixture(fixtures_dir):
    files = _star_fixtures(fixtures_dir)
    assert len(files) >= 20
    for path in files:
        ours = read_star(path)
        theirs = starfile.read(path, always_dict=True)
        assert list(ours) == list(theirs), path
        for name, block in ours.items():
            ref = theirs[name]
            if isinstance(block, dict):
                assert block.keys() == ref.keys(), path
                continue
            assert list(block.columns) == list(ref.columns), path
            assert len(block) == len(ref), path
            for col in block.columns:
                a, b = block[col], ref[col]
                if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
                    assert np.allclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True)
                else:
                    assert (a.astype(str).str.strip() == b.astype(str).str.strip()).all() or \
                        col in ("rlnMicrographName",), (path, col)


def test_star_keeps_numeric_looking_names_as_strings(tmp_path):
    df = pd.DataFrame({"rlnTomoName": ["001", "002", "10"], "rlnCoordinateX": [1.0, 2.0, 3.0],
                       "rlnMicrographName": ["a b.mrc", "", "c.mrc"]})
    path = tmp_path / "names.star"
    write_star(path, {"particles": df})
    back = read_star(path)["particles"]
    assert back["rlnTomoName"].tolist() == ["001", "002", "10"]
    assert back["rlnMicrographName"].tolist() == ["a b.mrc", "", "c.mrc"]
    assert starfile.read(path)["rlnCoordinateX"].tolist() == [1.0, 2.0, 3.0]


def test_star_writer_output_read_by_starfile(tmp_path):
    df = pd.DataFrame({"rlnAngleRot": RNG.uniform(-180, 180, 50),
                       "rlnCoordinateX": RNG.uniform(0, 4000, 50),
                       "rlnClassNumber": RNG.integers(1, 5, 50),
                       "rlnImagePixelSize": 1.234567891, "rlnNothing": np.nan})
    path = tmp_path / "w.star"
    write_star(path, {"general": {"rlnTomoSubTomosAre2DStacks": 1}, "particles": df},
               version="50001")
    back = starfile.read(path)
    assert back["general"]["rlnTomoSubTomosAre2DStacks"] == 1
    p = back["particles"]
    assert np.abs(p["rlnAngleRot"] - df["rlnAngleRot"]).max() <= 5e-7
    assert p["rlnClassNumber"].tolist() == df["rlnClassNumber"].tolist()
    assert np.allclose(p["rlnImagePixelSize"], 1.234567891, rtol=1e-9)
    assert p["rlnNothing"].isna().all()


@pytest.mark.parametrize("text,problem", [
    ("loop_\n_rlnX #1\n1\n", "before the first data_"),
    ("data_x\nloop_\n_a #1\n_a #2\n1 2\n", "duplicate"),
    ("data_x\nloop_\n_a #1\n1 2 3\n", "malformed"),
    ("data_x\nloop_\n\n", "without column labels"),
    ("", "empty"),
])
def test_bad_star_text_raises_format_error(tmp_path, text, problem):
    path = tmp_path / "bad.star"
    path.write_text(text)
    with pytest.raises(FormatError, match=problem):
        read_star(path)


def test_tomo_name_rule():
    assert tomo_name_from_path("/data/rec/01006_10.73Apx.mrc") == "01006_10.73Apx"
    assert tomo_name_from_path("021.tomostar") == "021"
    assert tomo_name_from_path("tomograms/TS_001/TS_001_aligned.st:mrc") == "TS_001_aligned"
    assert tomo_name_from_path("TS_01") == "TS_01"


# ------------------------------------------------------------------- cryovis convert

def test_cli_relion_to_dynamo_matches_identity(tmp_path, capsys):
    """A RELION 3.0 particle at (30, 60, 75) becomes Dynamo (-15, 60, 120), 1-based."""
    table = make_table([[10.0, 20.0, 30.0]], 4.0, euler.relion_to_matrix([30, 60, 75]), "007")
    src = tmp_path / "in.star"
    write_particles(src, table, format="relion30")
    out = tmp_path / "out.tbl"
    assert main(["convert", str(src), str(out), "--to", "dynamo"]) == 0
    assert "converted 1 particles" in capsys.readouterr().out
    ref = dynamotable.read(out, table_map_file=tmp_path / "out.doc")
    assert ref[["tdrot", "tilt", "narot"]].to_numpy()[0] == pytest.approx([-15, 60, 120])
    assert ref[["x", "y", "z"]].to_numpy()[0] == pytest.approx([11, 21, 31])
    assert read_particles(out)["tomo_name"].tolist() == ["007"]


def test_cli_relion5_binning_and_back(tmp_path, fixtures_dir, capsys):
    src = fixtures_dir / "relion/relion5_tutorial_run_data_first120.star"
    tomos = fixtures_dir / "relion/relion5_tutorial_tomograms.star"
    tbl = tmp_path / "bin4.tbl"
    assert main(["convert", str(src), str(tbl), "--to", "dynamo", "--tomograms", str(tomos),
                 "--binning", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["particles"] == 120 and summary["voxel_size"] == [5.4]
    back = tmp_path / "back.star"
    assert main(["convert", str(tbl), str(back), "--to", "relion5",
                 "--tomograms", str(tomos)]) == 0
    a = read_particles(src, tomograms=tomos)
    b = read_particles(back, tomograms=tomos)
    assert np.abs(a[["x_angst", "y_angst", "z_angst"]].to_numpy()
                  - b[["x_angst", "y_angst", "z_angst"]].to_numpy()).max() < 1e-3
    assert np.abs(a[[f"r{i}{j}" for i in range(3) for j in range(3)]].to_numpy()
                  - b[[f"r{i}{j}" for i in range(3) for j in range(3)]].to_numpy()).max() < 1e-4


def test_relion5_explicit_pixel_size_overrides_the_optics_block(fixtures_dir):
    # Regression: the optics value arrived as a read-only pandas view and the override
    # failed with "assignment destination is read-only".
    src = fixtures_dir / "relion/relion5_tutorial_run_data_first120.star"
    tomos = fixtures_dir / "relion/relion5_tutorial_tomograms.star"
    base = read_particles(src, tomograms=tomos)
    pixel = float(starfile.read(tomos)["rlnTomoTiltSeriesPixelSize"].iloc[0])
    doubled = read_particles(src, tomograms=tomos, tilt_series_pixel_size=2 * pixel)
    # centred Å coordinates: a larger pixel only moves the tomogram centre (about size/2 px)
    shift = (doubled["x_angst"] - base["x_angst"]).to_numpy()
    size_x = float(starfile.read(tomos)["rlnTomoSizeX"].iloc[0])
    assert np.allclose(shift, shift[0]) and shift[0] == pytest.approx(size_x * pixel / 2,
                                                                      rel=0.01)


def test_cli_tomo_name_selects_exact_string(tmp_path, fixtures_dir):
    src = fixtures_dir / "relion/relion5_warp1_run_it025_data_first100.star"
    out = tmp_path / "one.json"
    assert main(["convert", str(src), str(out), "--to", "copick", "--tomo-name", "021",
                 "--object-name", "pentamer"]) == 0
    doc = json.loads(out.read_text())
    raw = starfile.read(src)["particles"]
    assert doc["run_name"] == "021" and doc["pickable_object_name"] == "pentamer"
    assert len(doc["points"]) == int((raw["rlnMicrographName"] == "021.tomostar").sum())
    assert main(["convert", str(src), str(tmp_path / "none.json"), "--to", "copick",
                 "--tomo-name", "21"]) == 2


@pytest.mark.parametrize("args,problem", [
    (["relion/relion5_tutorial_run_data_first120.star", "x.tbl", "--to", "dynamo"],
     "tomogram sizes"),
    (["dynamo/dynamotable_t_double.tbl", "x.star", "--to", "relion5"], "voxel size"),
    (["dynamo/dynamotable_t_double.tbl", "x.star"], "give --to"),
    (["dynamo/dynamotable_t_double.tbl", "x.foo", "--to", "nonsense"], "unknown output"),
    (["dynamo/dynamotable_t_double.tbl", "x.cbox"], "one tomogram"),
    (["mrc/EMD-3197.map", "x.tbl", "--to", "dynamo"], "is a volume"),
])
def test_cli_refuses_with_one_line(tmp_path, fixtures_dir, capsys, args, problem):
    argv = ["convert", str(fixtures_dir / args[0]), str(tmp_path / args[1]), *args[2:]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and "\n" not in err
    assert not (tmp_path / args[1]).exists()


def test_cli_never_overwrites_without_force(tmp_path, fixtures_dir, capsys):
    src = fixtures_dir / "em/cryocat_motl_au_1.em"
    out = tmp_path / "p.xml"
    assert main(["convert", str(src), str(out)]) == 0
    before = out.read_bytes()
    assert main(["convert", str(src), str(out), "--to", "pytom"]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["convert", str(src), str(out), "--to", "pytom", "--force"]) == 0
    assert len(read_particles(out)) == 64


def test_convert_imports_no_engine_dependencies(tmp_path, fixtures_dir):
    """`formats` and `cryovis convert` run in Scipion/ChimeraX Pythons: no scipy/torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from cryoet_integration.cli import main\n"
        f"rc = main(['convert', {str(fixtures_dir / 'em/cryocat_motl_au_1.em')!r}, "
        f"{str(tmp_path / 'o.star')!r}, '--to', 'relion30'])\n"
        "bad = [m for m in ('scipy', 'torch', 'skimage') if m in sys.modules]\n"
        "print(rc, bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "0 []"


def test_cli_tomo_name_names_file_per_tomogram_formats(tmp_path, fixtures_dir):
    out = tmp_path / "named.star"
    assert main(["convert", str(fixtures_dir / "cryolo/boxmanager_3d_particle.cbox"), str(out),
                 "--to", "relion30", "--tomo-name", "TS_09", "--voxel-size", "10"]) == 0
    table = read_particles(out)
    assert table["tomo_name"].tolist() == ["TS_09"] * 3
    assert table["voxel_size"].tolist() == [10.0] * 3


def test_cli_motl_to_dynamo_follows_tom_identity(tmp_path, fixtures_dir):
    """TOM (phi, psi, theta) and Dynamo (-psi, -theta, -phi) are the same orientation."""
    import emfile

    src = fixtures_dir / "em/cryocat_motl_au_1.em"
    out = tmp_path / "au.tbl"
    assert main(["convert", str(src), str(out)]) == 0
    motl = emfile.read(src)[1][0].astype(float)
    dyn = dynamotable.read(out)
    expected = Rotation.from_euler("zxz", -motl[:, [17, 18, 16]], degrees=True)  # -psi,-th,-phi
    got = Rotation.from_euler("zxz", dyn[["tdrot", "tilt", "narot"]], degrees=True)
    assert np.abs(got.as_matrix() - expected.as_matrix()).max() < 1e-5
    assert np.allclose(dyn[["x", "y", "z"]], motl[:, 7:10] + motl[:, 10:13], atol=1e-4)


def test_pytom_match_pick_star_reads_score_and_pixel_size(tmp_path):
    """pytom-match-pick's RELION export: rlnLCCmax scores, rlnDetectorPixelSize in Å."""
    df = pd.DataFrame({"rlnCoordinateX": [10.0, 20.0], "rlnCoordinateY": [5.0, 6.0],
                       "rlnCoordinateZ": [7.0, 8.0], "rlnAngleRot": [0.0, 30.0],
                       "rlnAngleTilt": [0.0, 60.0], "rlnAnglePsi": [0.0, 75.0],
                       "rlnLCCmax": [0.31, 0.27], "rlnCutOff": 0.2, "rlnSearchStd": 0.05,
                       "rlnDetectorPixelSize": 13.79, "rlnMicrographName": "tomo_200.mrc"})
    path = tmp_path / "tomo_200_particles.star"
    write_star(path, {"": df})
    table = read_particles(path)
    assert table["score"].tolist() == pytest.approx([0.31, 0.27])
    assert table["voxel_size"].tolist() == pytest.approx([13.79, 13.79])
    assert table["tomo_name"].tolist() == ["tomo_200", "tomo_200"]
    assert "rlnCutOff" in table.columns


# ------------------------------------------------------- picks placed on one tomogram

def test_read_particles_on_places_relion5_with_binning_and_rescales(tmp_path):
    """RELION 5 centred Å need the geometry: without any, the tomogram itself is taken as
    the reconstruction of its tilt series (``binning`` times finer), so its centre places
    the picks; CSV picks at another voxel size are rescaled to the tomogram's voxels."""
    from formats import read_particles_on

    xyz = np.array([[10.0, 20.0, 30.0], [99.0, 49.0, 0.0]])
    table = make_table(xyz, 8.0, euler.relion_to_matrix(ANGLES[:2]), "t1")
    star = tmp_path / "picks.star"
    write_particles(star, table, format="relion5", tomo_size_xyz="400x200x100",
                    tilt_series_pixel_size=2.0)
    placed = read_particles_on(star, (25, 50, 100), 8.0, binning=4)
    assert np.allclose(placed[["x", "y", "z"]].to_numpy(), xyz, atol=1e-6)
    wider = read_particles_on(star, (25, 50, 120), 8.0)  # centre 10 voxels further in x
    assert np.allclose(wider[["x", "y", "z"]].to_numpy(), xyz + [10.0, 0.0, 0.0], atol=1e-6)
    csv = tmp_path / "picks.csv"
    write_particles(csv, table, format="csv")
    halved = read_particles_on(csv, (25, 50, 100), 16.0)
    assert np.allclose(halved[["x", "y", "z"]].to_numpy(), xyz / 2)
    assert (halved["voxel_size"] == 16.0).all()


def test_relion_writer_angle_priors_only_when_asked(tmp_path):
    table = make_table([[1.0, 2.0, 3.0]], 5.0, euler.relion_to_matrix([[30, 60, 75]]), "t")
    plain, primed = tmp_path / "plain.star", tmp_path / "primed.star"
    write_particles(plain, table, format="relion4", tilt_series_pixel_size=5.0)
    write_particles(primed, table, format="relion4", tilt_series_pixel_size=5.0,
                    angle_priors=True)
    assert "rlnAngleTiltPrior" not in starfile.read(plain)["particles"].columns
    block = starfile.read(primed)["particles"]
    assert np.allclose(block["rlnAngleTiltPrior"], block["rlnAngleTilt"])
    assert np.allclose(block["rlnAnglePsiPrior"], block["rlnAnglePsi"])
    with pytest.raises(FormatError, match="angle_priors"):
        write_particles(tmp_path / "p.tbl", table, format="dynamo", angle_priors=True)
