"""What real files of other tools showed (issue 9): each case rebuilt as a small file in the
tool's documented layout, with the command that failed before and the behaviour now."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import dynamotable
import numpy as np
import pandas as pd
import pytest
import starfile
from cli_batch import run_one

import formats
from cryoet_integration.cli import main
from formats import (
    FormatError,
    describe,
    make_table,
    read_particles,
    read_star,
    write_particles,
    write_tomograms,
)

REPO = Path(__file__).resolve().parents[1]
PRIVATE = re.compile(r"\bformats\.(\w+\.)*_[a-z]")  # e.g. a private loader


def _tomograms_star(path: Path, names: list[str], px: float = 1.35) -> Path:
    n = len(names)
    write_tomograms(path, pd.DataFrame({
        "tomo_name": names, "size_x": [4000.0] * n, "size_y": [4000.0] * n,
        "size_z": [2000.0] * n, "tilt_series_pixel_size": [px] * n, "binning": [1.0] * n}))
    return path


# ----------------------------------------------------------- private names, declared options

def test_nothing_outside_formats_imports_its_internals():
    offenders = []
    for folder in ("cryoet_integration", "tests", "benchmarks", "docs", "scipion_plugin",
                   "chimerax_bundle", "scripts"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix not in (".py", ".md") or not path.is_file():
                continue
            for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                text = line.strip()
                if text.startswith(("from formats.", "import formats.")) or PRIVATE.search(text):
                    offenders.append(f"{path.relative_to(REPO)}:{k}: {text}")
    assert not offenders, offenders


def _picks_csv(tmp_path: Path) -> Path:
    table = make_table([[40.0, 80.0, 120.0], [4.0, 8.0, 12.0]], 2.5, tomo_name="7",
                       classes=["blob", "blob"])
    path = tmp_path / "picks.csv"
    write_particles(path, table)
    return path


def test_binning_to_dynamo_is_honoured(tmp_path):
    """Before: `convert picks.csv out.tbl --to dynamo --binning 4` ignored the binning."""
    src = _picks_csv(tmp_path)
    out = tmp_path / "out.tbl"
    assert main(["convert", str(src), str(out), "--to", "dynamo", "--binning", "4"]) == 0
    back = read_particles(out)
    assert np.allclose(back[["x", "y", "z"]], [[10, 20, 30], [1, 2, 3]])
    assert np.allclose(back["voxel_size"], 10.0)
    tbl = dynamotable.read(str(out))
    assert np.allclose(tbl[["x", "y", "z"]].to_numpy(), [[11, 21, 31], [2, 3, 4]])


@pytest.mark.parametrize("args, message", [
    (["--to", "dynamo", "--box-size", "32"], "--box-size: the dynamo writer cannot honour"),
    (["--to", "relion5", "--object-name", "ribosome", "--tomo-size", "10x10x10"],
     "--object-name: the relion5 writer cannot honour"),
    (["--to", "copick", "--out-binning", "2"], "--out-binning: the copick writer cannot"),
    (["--to", "dynamo", "--slicer-angles"], "--slicer-angles: neither the csv reader nor"),
    (["--to", "dynamo", "--tomo-size", "10x10x10"], "--tomo-size: neither the csv reader"),
])
def test_an_option_no_side_takes_is_one_line_exit_2(tmp_path, args, message):
    src = _picks_csv(tmp_path)
    out = tmp_path / ("out.json" if "copick" in args else "out.tbl")
    run = run_one(["convert", str(src), str(out), *args])
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()


def test_api_refuses_options_a_format_does_not_take(tmp_path):
    src = _picks_csv(tmp_path)
    with pytest.raises(FormatError, match="csv reader cannot honour option tomograms"):
        read_particles(src, tomograms=tmp_path / "tomograms.star")
    with pytest.raises(FormatError, match="dynamo writer cannot honour option box_size"):
        write_particles(tmp_path / "o.tbl", read_particles(src), box_size=32)
    assert formats.FORMATS["dynamo"].write_options == {"binning", "table_map", "class_numbers"}


def test_class_numbers_fix_the_stored_numbers(tmp_path):
    """A model's class order numbers the classes, so files of several tomograms agree."""
    table = make_table(np.arange(12.0).reshape(4, 3) * 10, 4.0, tomo_name="TS_01",
                       classes=["blob", "ribosome", "blob", None])
    numbering = {"ribosome": 7, "blob": 3}
    r5, tbl = tmp_path / "p.star", tmp_path / "p.tbl"
    write_particles(r5, table, format="relion5", tomo_size_xyz="400x400x200",
                    class_numbers=numbering)
    oracle = starfile.read(r5)["particles"]
    assert list(oracle["rlnClassNumber"]) == [3, 7, 3, 0]
    assert list(oracle["rlnClassName"]) == ["blob", "ribosome", "blob", ""]
    write_particles(tbl, table, format="dynamo", class_numbers=numbering)
    assert list(read_particles(tbl)["class"][:3]) == ["blob", "ribosome", "blob"]
    with pytest.raises(FormatError, match="ribosome have no number in class_numbers"):
        write_particles(tmp_path / "q.star", table, format="relion5",
                        tomo_size_xyz="400x400x200", class_numbers={"blob": 1})
    assert not (tmp_path / "q.star").exists()


# ------------------------------------------------------------------------- class names

def test_class_names_survive_relion5_dynamo_and_motl(tmp_path):
    table = make_table(np.arange(12.0).reshape(4, 3) * 10, 4.0, tomo_name="TS_01",
                       classes=["blob", "ribosome", "blob", None])
    r5 = tmp_path / "p.star"
    write_particles(r5, table, format="relion5", tomo_size_xyz="400x400x200")
    oracle = starfile.read(r5)["particles"]
    assert list(oracle["rlnClassName"]) == ["blob", "ribosome", "blob", ""]
    assert list(oracle["rlnClassNumber"]) == [1, 2, 1, 0]
    back = read_particles(r5, tomo_size_xyz="400x400x200")
    assert list(back["class"][:3]) == ["blob", "ribosome", "blob"]
    tbl = tmp_path / "p.tbl"
    write_particles(tbl, table)
    assert (tmp_path / "p_classes.doc").read_text() == "1 blob\n2 ribosome\n"
    assert list(dynamotable.read(str(tbl))["class"]) == [1, 2, 1, 0]
    assert list(read_particles(tbl)["class"]) == ["blob", "ribosome", "blob", "0"]
    assert describe(tbl)["classes"] == {"blob": 2, "ribosome": 1, "0": 1}
    em = tmp_path / "m.em"
    write_particles(em, table, format="motl")
    assert (tmp_path / "m_classes.doc").read_text() == "1 blob\n2 ribosome\n"
    assert list(read_particles(em)["class"]) == ["blob", "ribosome", "blob", "0"]


def test_simulator_truth_scores_the_same_as_star_and_csv(tmp_path):
    """Before: the RELION 5 truth held class numbers only, so fiducials were scored."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from cryoet_integration.simulate.io import write_simulation

    sim = simulate_tomogram(seed=3, size_xyz=(64, 64, 32),
                            config=SimulationConfig(measure_snr=False, n_vesicles=1,
                                                    n_sheets=1, fiducials_per_angst2=4000.0 / 1e8))
    paths = write_simulation(sim, tmp_path, name="t")
    assert (sim.particles["class"] == "fiducial").any()
    star = read_particles(paths["particles_star"], tomo_size_xyz="64x64x32")
    assert "fiducial" in set(star["class"])
    results = []
    for truth in (paths["particles_csv"], paths["particles_star"]):
        proc = subprocess.run(
            [sys.executable, "-m", "cryoet_integration.cli", "evaluate", "picks",
             "--instances", paths["instances"], "--truth", truth, "--predictions",
             paths["particles_csv"], "--tomo-size", "64x64x32", "--json"],
            capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout))
    csv_result, star_result = results
    assert csv_result["picks_on_excluded"] > 0
    for key in ("n_true", "TP", "FP", "recall", "precision", "picks_on_excluded",
                "per_class"):
        assert star_result[key] == csv_result[key], key


# ------------------------------------------------------------------- Dynamo real files

def _dynamo_row(tag: int, x: float, daxis: str = "0") -> str:
    cols = ["0"] * 35
    cols[0], cols[1], cols[2] = str(tag), "1", "1"
    cols[6:9] = ["10", "20", "30"]
    cols[9] = "0.5+0i"
    cols[19], cols[21] = "1", "1"
    cols[23:26] = [str(x), "50", "60"]
    cols[28] = daxis
    return " ".join(cols)


def test_dynamo_table_with_matlab_complex_values_reads(tmp_path):
    """Before: a table with `0+1.2074e-06i` in a non-geometric column was refused whole."""
    path = tmp_path / "complex.tbl"
    path.write_text("\n".join([_dynamo_row(1, 11, "0+1.2074e-06i"),
                               _dynamo_row(2, 21, "0-3.5e-07i"), _dynamo_row(3, 31)]) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_particles(path)
    assert np.allclose(table["x"], [10, 20, 30]) and np.allclose(table["score"], 0.5)
    assert any("complex values in column(s) [29]" in str(w.message) for w in caught)
    oracle = dynamotable.read(str(path))
    assert np.allclose(oracle["x"].to_numpy(dtype=float) - 1, table["x"])
    bad = tmp_path / "bad.tbl"
    bad.write_text(_dynamo_row(1, 11).replace(" 50 60 ", " 50+2i 60 ") + "\n")
    with pytest.raises(FormatError, match="column 25 .* holds a complex value"):
        read_particles(bad)


def test_dynamo_table_map_never_doubles_the_extension(tmp_path):
    table = make_table([[1.0, 2, 3], [4.0, 5, 6]], 2.0, tomo_name=["TS_01.mrc", "TS_02"])
    write_particles(tmp_path / "t.tbl", table)
    assert (tmp_path / "t.doc").read_text() == "1 TS_01.mrc\n2 TS_02.mrc\n"


# --------------------------------------------------------------- tomogram name matching

def _warp1_star(path: Path, name: str) -> Path:
    """Warp 1 style RELION 3.0 STAR naming tomograms `NAME.mrc.tomostar`."""
    path.write_text(
        "data_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
        "_rlnCoordinateZ #4\n_rlnAngleRot #5\n_rlnAngleTilt #6\n_rlnAnglePsi #7\n"
        "_rlnDetectorPixelSize #8\n_rlnMagnification #9\n"
        f"{name} 100 200 300 10 20 30 5.4 10000\n"
        f"{name} 110 210 310 10 20 30 5.4 10000\n")
    return path


def test_warp1_names_match_relion5_tomograms_after_normalising(tmp_path):
    src = _warp1_star(tmp_path / "warp.star", "TS_01.mrc.tomostar")
    tomos = _tomograms_star(tmp_path / "tomograms.star", ["TS_01", "TS_02"])
    out = tmp_path / "r5.star"
    run = run_one(["convert", str(src), str(out), "--to", "relion5", "--tomograms", str(tomos)])
    assert run.returncode == 0, run.stderr
    assert "tomogram names matched to tomograms.star: 'TS_01.mrc' -> 'TS_01'" in run.stderr
    assert set(starfile.read(out)["particles"]["rlnTomoName"]) == {"TS_01"}
    back = read_particles(out, tomograms=tomos)
    assert np.allclose(back["x_angst"], [540, 594])


def test_tomo_name_map_for_names_normalising_cannot_match(tmp_path):
    src = _warp1_star(tmp_path / "warp.star", "lamella3_pos1.tomostar")
    tomos = _tomograms_star(tmp_path / "tomograms.star", ["TS_01"])
    out = tmp_path / "r5.star"
    run = run_one(["convert", str(src), str(out), "--to", "relion5", "--tomograms", str(tomos)])
    assert run.returncode == 2 and "--tomo-name-map" in run.stderr and not out.exists()
    mapping = tmp_path / "names.txt"
    mapping.write_text("# particles  tomograms.star\nlamella3_pos1 TS_01\n")
    run = run_one(["convert", str(src), str(out), "--to", "relion5", "--tomograms",
                   str(tomos), "--tomo-name-map", str(mapping)])
    assert run.returncode == 0, run.stderr
    assert "'lamella3_pos1' -> 'TS_01'" in run.stderr
    assert list(starfile.read(out)["particles"]["rlnTomoName"]) == ["TS_01", "TS_01"]


@pytest.mark.parametrize("name, expected", [
    ("TS_01.mrc.tomostar", "TS_01"), ("TS_01_rec.mrc", "TS_01"), ("TS_01.st", "TS_01"),
    ("001", "001"), ("TS_01", "TS_01")])
def test_name_normalisation(name, expected):
    assert formats.normalise_tomo_name(name) == expected


# ---------------------------------------------------------------- RELION 5 optics block

def test_relion31_subtomograms_to_relion5_keep_optics_and_3d(fixtures_dir, tmp_path):
    """Before: voltage/Cs/box dropped, and `rlnTomoSubTomosAre2DStacks 1` /
    `rlnImageDimensionality 2` written for 3D subtomogram images."""
    src = fixtures_dir / "relion" / "relion3.1_subtomo_two_optics_groups.star"
    out = tmp_path / "r5.star"
    assert main(["convert", str(src), str(out), "--to", "relion5", "--tomo-size",
                 "1000x1000x500"]) == 0
    star = starfile.read(out)
    assert star["general"]["rlnTomoSubTomosAre2DStacks"] == 0
    optics = star["optics"]
    assert set(optics["rlnImageDimensionality"]) == {3}
    assert set(optics["rlnVoltage"]) == {300.0} and set(optics["rlnSphericalAberration"]) == {2.7}
    assert set(optics["rlnImageSize"]) == {168}
    assert "rlnAmplitudeContrast" not in optics  # the input does not say: nothing invented


def test_relion5_2d_stacks_keep_their_optics(fixtures_dir, tmp_path):
    src = fixtures_dir / "relion" / "relion5_tutorial_run_data_first120.star"
    tomos = fixtures_dir / "relion" / "relion5_tutorial_tomograms.star"
    out = tmp_path / "r5.star"
    assert main(["convert", str(src), str(out), "--to", "relion5", "--tomograms",
                 str(tomos)]) == 0
    star = starfile.read(out)
    assert star["general"]["rlnTomoSubTomosAre2DStacks"] == 1
    row = star["optics"].iloc[0]
    assert (row["rlnImageDimensionality"], row["rlnCtfDataAreCtfPremultiplied"],
            row["rlnImageSize"]) == (2, 1, 192)
    assert (row["rlnVoltage"], row["rlnSphericalAberration"],
            row["rlnAmplitudeContrast"]) == pytest.approx((300.0, 2.7, 0.1))


def test_optics_pixel_size_wins_over_tomograms_star_with_a_warning(fixtures_dir, tmp_path):
    src = fixtures_dir / "relion" / "cylindra_relion5_class3d_run_it025_data.star"
    tomos = fixtures_dir / "relion" / "cylindra_relion5_tomograms.star"
    out = tmp_path / "p.csv"
    run = run_one(["convert", str(src), str(out), "--to", "csv", "--tomograms", str(tomos)])
    assert run.returncode == 0, run.stderr
    assert "optics pixel size (1.35 Å) that differs from tomograms.star's (10.52 Å" \
        in run.stderr and "using the optics group's, as RELION does" in run.stderr
    assert set(pd.read_csv(out)["voxel_size"]) == {1.35}


# ------------------------------------------------------------------------------ copick

def _copick_picks(path: Path, spacing=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "pickable_object_name": "ribosome", "user_id": "me", "session_id": "0",
        "run_name": "TS_01", "voxel_spacing": spacing, "unit": "angstrom",
        "points": [{"location": {"x": 100.0, "y": 200.0, "z": 300.0},
                    "transformation_": np.eye(4).tolist(), "score": 1.0}]}))
    return path


def test_copick_null_voxel_spacing_needs_a_voxel_size(tmp_path):
    """Before: read silently as 1 Å voxels."""
    path = _copick_picks(tmp_path / "picks.json")
    run = run_one(["convert", str(path), str(tmp_path / "o.csv"), "--to", "csv"])
    assert run.returncode == 2 and "voxel_spacing is null" in run.stderr
    assert "--voxel-size" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert read_particles(path, voxel_size=10.0)["x"].tolist() == [10.0]
    s = describe(path)
    assert s["voxel_sizes_angst"] is None and s["position_min_xyz_angst"] == [100, 200, 300]


def test_copick_null_voxel_spacing_taken_from_the_runs_tomogram(tmp_path):
    run_dir = tmp_path / "ExperimentRuns" / "TS_01"
    (run_dir / "VoxelSpacing10.000" / "wbp.zarr").mkdir(parents=True)
    (run_dir / "VoxelSpacing20.000").mkdir()  # no tomogram at this spacing
    path = _copick_picks(run_dir / "Picks" / "me_0_ribosome.json")
    with pytest.warns(formats.FormatWarning, match="using 10 Å"):
        table = read_particles(path)
    assert table["x"].tolist() == [10.0] and table["voxel_size"].tolist() == [10.0]
    (run_dir / "VoxelSpacing20.000" / "wbp.zarr").mkdir()
    with pytest.raises(FormatError, match="tomograms at 10, 20 Å"):
        read_particles(path)


# ------------------------------------------------------------------------------ mdoc

FRAME_MDOC = """PixelSpacing = 0.834
Voltage = 300
ImageFile = TS_01_001_-3.0.tif
ImageSize = 5760 4092
DataMode = 1

[T = SerialEM: Digitized on Krios 3                       12-Mar-24  10:11:12    ]

[FrameSet = 0]
TiltAngle = -3.00147
StagePosition = 102.7 -31.9
StageZ = -18.3
Magnification = 105000
ExposureDose = 3.1
PixelSpacing = 0.834
SpotSize = 7
Defocus = -3.71
ExposureTime = 2.4
Binning = 1
NumSubFrames = 8
FrameDosesAndNumber = 0.3875 8
DateTime = 12-Mar-24  10:11:15
"""


def _montage_mdoc(pieces: int = 6) -> str:
    lines = ["PixelSpacing = 14.76", "Voltage = 300", "ImageFile = grid_mont.mrc",
             "ImageSize = 4096 4096", "Montage = 1", "DataMode = 1", "",
             "[T = SerialEM: Digitized on Krios 3   12-Mar-24  10:11:12    ]", ""]
    for z in range(pieces):
        lines += [f"[ZValue = {z}]", "TiltAngle = 0.0012", f"PieceCoordinates = "
                  f"{(z % 3) * 3686} {(z // 3) * 3686} 0", "PixelSpacing = 14.76",
                  "ExposureDose = 0", ""]
    lines += ["[MontSection = 0]", "TileSize = 4096 4096", "Overlap = 410 410"]
    return "\n".join(lines) + "\n"


def test_frame_and_montage_mdocs_are_described_as_what_they_are(tmp_path):
    """Before: a frame mdoc was refused, a montage described as N tilts at 0 degrees."""
    frames = tmp_path / "TS_01_001_-3.0.tif.mdoc"
    frames.write_text(FRAME_MDOC)
    s = describe(frames)
    assert (s["mdoc_type"], s["frame_sets"], s["frames"]) == ("frames", 1, 8)
    assert s["tilt_range_deg"] == [-3.00147, -3.00147] and s["pixel_size_angst"] == 0.834
    montage = tmp_path / "grid.mrc.mdoc"
    montage.write_text(_montage_mdoc())
    s = describe(montage)
    assert s["mdoc_type"] == "montage" and "tilts" not in s
    assert (s["pieces"], s["piece_grid_xy"], s["montage_sections"]) == (6, [3, 2], 1)
    assert s["format"] == "SerialEM mdoc (montage)"


# ----------------------------------------------------------------- info: schema, pipes

def _json_types(value) -> str:
    return {bool: "bool", int: "number", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}[type(value)]


def test_info_json_is_one_schema_across_files(fixtures_dir, tmp_path):
    """Before: a pixel size was a string in one mdoc and a list in another, voltage a
    string, 'unknown' for a missing number."""
    (tmp_path / "frames.mdoc").write_text(FRAME_MDOC)
    (tmp_path / "montage.mdoc").write_text(_montage_mdoc())
    files = sorted(p for p in fixtures_dir.rglob("*") if p.is_file()) + \
        sorted(tmp_path.glob("*.mdoc"))
    seen: dict[tuple[str, str], set[str]] = {}
    for path in files:
        run = run_one(["info", str(path), "--json"]) if path.suffix == ".mdoc" else None
        summary = json.loads(run.stdout) if run else json.loads(json.dumps(describe(path)))
        for key, value in summary.items():
            seen.setdefault((summary["kind"], key), set()).add(_json_types(value))
            assert value != "unknown", (path, key)
    mixed = {k: v - {"null"} for k, v in seen.items() if len(v - {"null"}) > 1}
    assert not mixed, mixed
    for key in ("pixel_size_angst", "voltage_kv", "dose_per_tilt_e_per_a2"):
        assert seen[("mdoc", key)] - {"null"} == {"number"}, key


def test_info_into_a_closed_pipe_exits_quietly(fixtures_dir):
    """`cryovis info FILE | head -2` must not end with exit 2 and "Broken pipe"."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run([sys.executable, "-m", "cryoet_integration.cli", "info",
                              str(fixtures_dir / "relion" / "relion5_tutorial_tomograms.star")],
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert run.returncode == 0 and run.stderr == ""


def test_warptools2_particles_are_not_called_centred(fixtures_dir):
    warp = describe(fixtures_dir / "relion" / "warp2_relion5_particles_matching.star",
                    tomograms=fixtures_dir / "relion" / "warp2_relion5_matching_tomograms.star")
    assert "centred" not in json.dumps(warp).lower() and "Warp 2 layout" in warp["coordinates"]
    tutorial = describe(fixtures_dir / "relion" / "relion5_tutorial_run_data_first120.star",
                        tomograms=fixtures_dir / "relion" / "relion5_tutorial_tomograms.star")
    assert tutorial["coordinates"].startswith("rlnCenteredCoordinate")


def test_info_and_convert_agree_on_names_like_001(tmp_path):
    """info once used starfile (which reads rlnTomoName 001 as the number 1)."""
    table = make_table([[1.0, 2, 3], [4.0, 5, 6]], 2.0, tomo_name="001", classes=["007", "1"])
    path = tmp_path / "p.star"
    write_particles(path, table, format="relion4", tilt_series_pixel_size=1.0)
    assert describe(path)["tomograms"] == {"001": 2}
    out = tmp_path / "p.csv"
    assert main(["convert", str(path), str(out), "--to", "csv"]) == 0
    assert set(pd.read_csv(out, dtype=str)["tomo_name"]) == {"001"}
    assert read_star(path)["particles"]["rlnTomoName"].tolist() == ["001", "001"]
