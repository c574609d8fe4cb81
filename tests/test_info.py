"""``cryovis info`` / ``formats.describe``: a useful summary of every fixture, checked facts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from cli_batch import run_batch, run_one
from conftest import FIXTURES

import formats
from cryoet_integration.commands.info import render
from formats import Volume, write_volume
from formats import describe as summarize

ALL_FIXTURES = sorted(p for p in FIXTURES.rglob("*") if p.is_file())


def cryovis(*args: str) -> subprocess.CompletedProcess:
    return run_one(list(args))


def test_cli_every_fixture_exits_0_text_and_json():
    arg_lists = [["info", str(p)] for p in ALL_FIXTURES]
    arg_lists += [["info", str(p), "--json"] for p in ALL_FIXTURES]
    runs = run_batch(arg_lists)
    for args, run in zip(arg_lists, runs):
        assert run.returncode == 0 and run.stderr == "", (args, run.stderr)
        if "--json" in args:
            assert json.loads(run.stdout)["path"] == args[1]
        else:
            assert run.stdout.startswith(f"path: {args[1]}")


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_has_a_summary(path):
    summary = summarize(path)
    assert summary["kind"] and summary["format"]
    text = render(summary)
    assert f"path: {path}" in text and len(text.splitlines()) >= 4
    json.dumps(summary, allow_nan=False)
    if summary["kind"] == "particles":
        assert summary["count"] > 0


def test_volume_facts_and_lazy_stats(fixtures_dir, monkeypatch):
    path = fixtures_dir / "mrc" / "EMD-3197.map"
    s = summarize(path)
    data = mrcfile.read(path)
    assert s["shape_xyz"] == [20, 20, 20] and s["voxel_size_angst"] == pytest.approx(11.4)
    assert (s["mrc_mode"], s["mrc_mode_name"]) == (2, "float32")
    assert s["nstart_xyz"] == [-2, 0, 0]
    assert s["layout"] == "volume"
    assert s["min"] == pytest.approx(float(data.min()))
    assert s["mean"] == pytest.approx(float(data.mean(dtype=np.float64)), rel=1e-6)
    monkeypatch.setattr(formats.volumes.volume, "STATS_LIMIT_BYTES", 100)
    big = summarize(path)
    assert big["stats_source"].startswith("header")
    with mrcfile.open(path) as m:
        assert big["max"] == pytest.approx(float(m.header.dmax))


def test_image_and_stack_layout(fixtures_dir, tmp_path):
    assert summarize(fixtures_dir / "mrc" / "boxmanager_test_0.mrc")["layout"] == "single image"
    stack = tmp_path / "tilts.mrcs"
    with mrcfile.new(stack) as m:
        m.set_data(np.zeros((5, 4, 4), np.float32))
        m.set_image_stack()
    assert summarize(stack)["layout"] == "stack of 5 images"


def test_volume_with_nan_and_override(tmp_path):
    data = np.zeros((3, 4, 5), np.float32)
    data[0, 0, 0] = np.nan
    path = tmp_path / "n.mrc"
    write_volume(path, Volume(data, voxel_size=2.0))
    s = summarize(path, voxel_size=3.0)
    assert s["non_finite_voxels"] == 1 and s["voxel_size_angst"] == 3.0
    assert s["physical_size_xyz_angst"] == [15.0, 12.0, 9.0]


def test_mdoc_agrees_with_mdocfile(fixtures_dir):
    mdocfile = pytest.importorskip("mdocfile")
    path = fixtures_dir / "mdoc" / "cryocat_017.mdoc"
    s = summarize(path)
    ref = mdocfile.read(path)
    assert s["tilts"] == len(ref) == 60
    assert s["tilt_range_deg"] == pytest.approx([ref.TiltAngle.min(), ref.TiltAngle.max()])
    assert s["pixel_size_angst"] == 1.971 and s["voltage_kv"] == 300.0
    assert s["mdoc_type"] == "tilt series"
    assert s["total_dose_e_per_a2"] == pytest.approx(ref.ExposureDose.sum(), abs=1e-3)
    assert s["tilt_axis_angle_deg"] == 82.9


@pytest.mark.parametrize("name, kind, facts", [
    ("relion/relion5_tutorial_tomograms.star", "tomograms",
     {"count": 5, "tilt_series_pixel_size_angst": [1.35],
      "sizes_xyz_unbinned_px": ["4000x4000x2000"]}),
    ("relion/warp2_relion5_matching_tomograms.star", "tomograms",
     {"count": 5, "per_tilt_series_blocks": 5}),
    ("relion/relion5_tutorial_TS_01_tiltseries.star", "tilt_series", {}),
    ("relion/cylindra_relion5_tiltseries_13pf_MT.star", "tilt_series", {}),
    ("relion/cylindra_relion5_picks_optimisation_set.star", "optimisation_set",
     {"format": "RELION optimisation set (loop form)"}),
    ("relion/warp2_relion5_matching_optimisation_set.star", "optimisation_set",
     {"format": "RELION optimisation set (key/value form)",
      "files": {"ParticlesFile": "matching.star", "TomogramsFile": "matching_tomograms.star"}}),
    ("cryolo/cryolo_2d_TcdA1-0018_frames_sum.cbox", "cbox",
     {"count": 120, "dimensionality": "2D", "box_width_px": [220]}),
    ("cryolo/cryolo_2d_filament_ActLifeact_03211.cbox", "cbox", {"count": 16, "filaments": 1}),
    ("cryolo/cryolo_3d_particles_first100.cbox", "cbox",
     {"count": 100, "dimensionality": "3D", "box_width_px": [37]}),
    ("cryolo/boxmanager_3d_particle.cbox", "cbox", {"count": 3, "include_slices": 2}),
    ("eman2/boxmanager_test_0.box", "particles", {"count": 3, "format": "eman2box"}),
    ("dynamo/dynamotable_tmap_complex.doc", "table_map", {"count": 48}),
    ("data_portal/tardis.csv", "particles", {"count": 6, "format": "csv"}),
    ("em/cryocat_mask_sm0.em", "volume", {"shape_xyz": [4, 6, 8]}),
])
def test_non_particle_kinds(fixtures_dir, name, kind, facts):
    s = summarize(fixtures_dir / name)
    assert s["kind"] == kind
    for key, value in facts.items():
        assert s[key] == value, key


def test_tilt_series_facts(fixtures_dir):
    s = summarize(fixtures_dir / "relion" / "relion5_tutorial_TS_01_tiltseries.star")
    (series,) = s["tilt_series"]
    assert series["name"] == "TS_01" and series["tilts"] == 40
    assert series["aligned"] is True
    blocks = {b["block"]: b for b in s["blocks"]}
    assert "rlnTomoNominalStageTiltAngle" in blocks["data_TS_01"]["columns"]


def test_cli_text_and_json(fixtures_dir):
    path = fixtures_dir / "mrc" / "EMD-3197.map"
    text = cryovis("info", str(path))
    assert text.returncode == 0, text.stderr
    assert "voxel size angst: 11.4" in text.stdout and "shape xyz: 20, 20, 20" in text.stdout
    js = cryovis("info", str(fixtures_dir / "mdoc" / "cryocat_017.mdoc"), "--json")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout)["tilts"] == 60


def test_info_never_imports_the_engine(fixtures_dir):
    files = [fixtures_dir / "mrc" / "EMD-3197.map", fixtures_dir / "mdoc" / "cryocat_017.mdoc",
             fixtures_dir / "relion" / "relion5_tutorial_tomograms.star",
             fixtures_dir / "cryolo" / "cryolo_3d_particles_first100.cbox"]
    code = (
        "import sys, contextlib, io\n"
        "from cryoet_integration.cli import main\n"
        f"for f in {[str(f) for f in files]!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(['info', f]) == 0, f\n"
        "heavy = [m for m in ('torch', 'scipy', 'skimage') if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr


def test_unknown_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "notes.weird"
    path.write_text("hello\n")
    run = cryovis("info", str(path))
    assert run.returncode == 2
    assert run.stderr.strip() == (f"cryovis info: error: {path}: unknown file type '.weird':"
                                  " not a volume, STAR, mdoc or particle file")
    assert Path(path).read_text() == "hello\n"
