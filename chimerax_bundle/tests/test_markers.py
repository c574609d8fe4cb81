"""``cryovis open``, ``cryovis save`` and ``cryovis pick``: particles as markers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import one_line_user_error


def scene_of_voxels(tomo, xyz_voxels) -> np.ndarray:
    """Where ChimeraX shows voxel positions of the tomogram (its own grid transform)."""
    return (tomo.scene_position * tomo.data.ijk_to_xyz_transform).transform_points(
        np.asarray(xyz_voxels, dtype=float))


@pytest.fixture(scope="module")
def truth(data):
    from formats import read_particles

    return read_particles(data["dir"] / data["particles_csv"])


@pytest.fixture(scope="module")
def star_truth(data, opened):
    """The STAR file as formats reads it (RELION keeps class numbers, not names)."""
    from formats import read_particles

    nx, ny, nz = opened["tomo"].data.size
    return read_particles(data["dir"] / data["particles_star"], tomo_size_xyz=f"{nx}x{ny}x{nz}",
                          tilt_series_pixel_size=float(opened["tomo"].data.step[0]))


@pytest.fixture(scope="module")
def star_markers(run, opened, data):
    tomo = opened["tomo"]
    return run(f"cryovis open {data['dir'] / data['particles_star']} tomogram "
               f"#{tomo.id_string}")


def test_open_places_markers_on_the_tomogram(star_markers, opened, truth, star_truth):
    from formats import positions_voxels

    tomo = opened["tomo"]
    assert tuple(tomo.data.origin) != (0.0, 0.0, 0.0)  # the fixture has an origin to honour
    assert star_markers.num_atoms == len(truth)
    want = scene_of_voxels(tomo, positions_voxels(truth))
    got = star_markers.atoms.scene_coords
    assert np.abs(got - want).max() < 1e-3
    classes = {m.cryovis_class for m in star_markers.atoms}
    assert classes == set(str(c) for c in star_truth["class"])
    # one colour per class
    colours = {m.cryovis_class: tuple(m.color) for m in star_markers.atoms}
    assert len(set(colours.values())) == len(classes)


def test_orientations_are_drawn(star_markers, truth):
    sticks = [m for m in star_markers.child_models() if "orientations" in m.name]
    assert len(sticks) == 1
    assert len(sticks[0].positions) == len(truth)
    # each stick's axis is the particle's z axis (third column of R)
    from formats import orientations

    r = orientations(truth)
    axes = np.array([p.z_axis() for p in sticks[0].positions])
    assert np.abs(axes - r[:, :, 2]).max() < 1e-5


@pytest.mark.parametrize("fmt,name", [("relion5", "out.star"), ("dynamo", "out.tbl"),
                                      ("csv", "out.csv")])
def test_save_and_read_back(run, star_markers, truth, star_truth, tmp_path, opened, fmt, name):
    from formats import orientations, positions_voxels, read_particles

    path = tmp_path / name
    run(f"cryovis save #{star_markers.id_string} {path} format {fmt}")
    tomo = opened["tomo"]
    nx, ny, nz = tomo.data.size
    options = ({"tomo_size_xyz": f"{nx}x{ny}x{nz}", "tilt_series_pixel_size": tomo.data.step[0]}
               if fmt == "relion5" else {})
    back = read_particles(path, **options)
    assert len(back) == len(truth)
    vs = tomo.data.step[0]
    err = np.abs(positions_voxels(back) * vs - positions_voxels(truth) * vs).max()
    assert err < 1e-3, f"{fmt}: positions differ by {err} Å"
    assert np.abs(orientations(back) - orientations(truth)).max() < 1e-4
    if fmt != "dynamo":  # Dynamo tables keep no class names
        assert list(back["class"].astype(str)) == list(star_truth["class"].astype(str))


def test_moved_marker_is_saved_where_it_is(run, star_markers, tmp_path, opened):
    from formats import positions_voxels, read_particles

    m = star_markers.atoms[0]
    m.scene_coord = np.asarray(m.scene_coord) + np.array([3.0 * opened["tomo"].data.step[0], 0, 0])
    path = tmp_path / "moved.csv"
    run(f"cryovis save #{star_markers.id_string} {path}")
    back = read_particles(path)
    ijk = (opened["tomo"].scene_position * opened["tomo"].data.ijk_to_xyz_transform).inverse(
        ).transform_points(np.asarray(m.scene_coord).reshape(1, 3))[0]
    assert np.abs(positions_voxels(back)[0] - ijk).max() < 1e-4


def test_open_and_save_errors(run, data, opened, star_markers, tmp_path):
    bad = tmp_path / "broken.star"
    bad.write_text("data_particles\nloop_\n_rlnCoordinateX #1\nnot-a-number\n")
    msg = one_line_user_error(run, f"cryovis open {bad} tomogram #{opened['tomo'].id_string}")
    assert "broken.star" in msg
    one_line_user_error(run, f"cryovis open {tmp_path / 'missing.star'}")
    assert "not a marker set" in one_line_user_error(
        run, f"cryovis save #{opened['tomo'].id_string} {tmp_path / 'x.star'}")
    existing = tmp_path / "exists.csv"
    existing.write_text("x\n")
    assert "exists" in one_line_user_error(
        run, f"cryovis save #{star_markers.id_string} {existing}")
    assert "not a volume" in one_line_user_error(
        run, f"cryovis open {data['dir'] / data['particles_star']} tomogram "
             f"#{star_markers.id_string}")


def test_blob_pick_gives_scored_markers(run, opened, truth, session):
    from chimerax.markers import MarkerSet

    tomo = opened["tomo"]
    diameter = float(np.median(truth["diameter_angst"])) if "diameter_angst" in truth else None
    extra = f" diameter {diameter:g}" if diameter else ""
    ms = run(f"cryovis pick #{tomo.id_string} method blob{extra} maxPicks 200 wait true")
    assert isinstance(ms, MarkerSet) and 0 < ms.num_atoms <= 200
    scores = np.array([m.cryovis_score for m in ms.atoms])
    assert np.all(np.isfinite(scores)) and np.all(np.diff(scores) <= 1e-9)  # best first
    assert {m.cryovis_class for m in ms.atoms} == {"blob"}
    # picks lie inside the tomogram's box
    ijk = (tomo.scene_position * tomo.data.ijk_to_xyz_transform).inverse().transform_points(
        ms.atoms.scene_coords)
    assert np.all(ijk >= 0) and np.all(ijk <= np.array(tomo.data.size) - 1)
    assert not [m for m in ms.child_models() if "orientations" in m.name]  # none known


def test_pick_errors(run, opened, star_markers):
    tomo = f"#{opened['tomo'].id_string}"
    assert "not a volume" in one_line_user_error(run, f"cryovis pick #{star_markers.id_string}")
    # a model argument left out or naming no model: ChimeraX's own line, naming the argument
    assert "tomogram" in one_line_user_error(run, "cryovis pick")
    assert "tomogram" in one_line_user_error(run, "cryovis pick #99")
    assert "template" in one_line_user_error(
        run, f"cryovis pick {tomo} method template template #99 angularStep 45")
    assert "needs 'template #MAP'" in one_line_user_error(
        run, f"cryovis pick {tomo} method template")
    assert "angularStep" in one_line_user_error(
        run, f"cryovis pick {tomo} method template template {tomo}")
    assert "not a volume" in one_line_user_error(
        run, f"cryovis pick {tomo} method template template #{star_markers.id_string} "
             "angularStep 45")
    assert "for method template" in one_line_user_error(
        run, f"cryovis pick {tomo} method blob angularStep 45")


def test_unet_pick_matches_the_engine_program(run, session, data, opened, engine_program,
                                              tmp_path, log):
    """``method unet`` runs the engine program's learned picker: the markers are its picks,
    at the positions of the file the program writes for the same tomogram."""
    import json
    import subprocess

    from chimerax.markers import MarkerSet

    from formats import positions_voxels, read_particles

    tomo = opened["tomo"]
    run(f"cryovis config engine {engine_program}")
    ms = run(f"cryovis pick #{tomo.id_string} method unet maxPicks 40 threads 1 wait true")
    assert isinstance(ms, MarkerSet), log.text()[-2000:]

    src = data["dir"] / data["tomogram"]  # the file #1 was opened from
    picks, summary = tmp_path / "picks.csv", tmp_path / "summary.json"
    proc = subprocess.run([engine_program, "pick", str(src), "--method", "unet", "--out",
                           str(picks), "--max-particles", "40", "--threads", "1", "--json",
                           str(summary)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    want = read_particles(picks)
    assert ms.num_atoms == len(want) == json.loads(summary.read_text())["n_picks"] > 0
    vs = float(tomo.data.step[0])
    got = (tomo.scene_position * tomo.data.ijk_to_xyz_transform).inverse().transform_points(
        ms.atoms.scene_coords)
    assert np.abs(got - positions_voxels(want)).max() * vs < 1e-3
    assert [m.cryovis_class for m in ms.atoms] == list(want["class"].astype(str))
    assert np.allclose([m.cryovis_score for m in ms.atoms], want["score"], atol=1e-5)
    colours = {m.cryovis_class: tuple(m.color) for m in ms.atoms}
    assert len(set(colours.values())) == len(colours)


def test_engine_pick_errors_are_one_line(run, opened, engine_program, tmp_path, log):
    run(f"cryovis config engine {engine_program}")
    bad_model = tmp_path / "picker.pt"
    bad_model.write_bytes(b"not a model")
    log.clear()
    run(f"cryovis pick #{opened['tomo'].id_string} method unet model {bad_model} wait true")
    errors = log.errors()
    assert len(errors) == 1 and "\n" not in errors[0].strip(), errors
    assert "picker" in errors[0] and "Traceback" not in log.text()
    assert "method unet" in one_line_user_error(
        run, f"cryovis pick #{opened['tomo'].id_string} method blob threshold 0.5")


def test_template_pick_gives_oriented_markers_as_the_engine(run, session, data, opened,
                                                            engine_program, truth, tmp_path,
                                                            log):
    """``method template`` runs the engine's template matching with the simulator's own map
    of one class: the markers are the picks the program writes for the same files
    (positions to 1e-3 Å, scores, class) and keep its orientations; several sit on true
    particles of that class. The status line names the job once, not the engine's prefix
    again."""
    import re
    import subprocess

    from chimerax.core.commands import run as cx_run
    from chimerax.markers import MarkerSet

    from formats import orientations, positions_voxels, read_particles

    tomo = opened["tomo"]
    template = data["dir"] / data["template"]
    tmodel = cx_run(session, f"open {template}")[0]
    run(f"cryovis config engine {engine_program}")
    log.clear()
    try:
        ms = run(f"cryovis pick #{tomo.id_string} method template template "
                 f"#{tmodel.id_string} angularStep 45 maxPicks 10 threads 1 wait true")
    finally:
        cx_run(session, f"close #{tmodel.id_string}")
    assert isinstance(ms, MarkerSet), log.text()[-2000:]

    src = data["dir"] / data["tomogram"]  # the file #1 was opened from
    picks, summary = tmp_path / "picks.csv", tmp_path / "summary.json"
    proc = subprocess.run([engine_program, "pick", str(src), "--method", "template",
                           "--template", str(template), "--angular-step", "45", "--out",
                           str(picks), "--max-particles", "10", "--threads", "1", "--json",
                           str(summary)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    want = read_particles(picks)
    assert ms.num_atoms == len(want) > 0
    vs = float(tomo.data.step[0])
    got = (tomo.scene_position * tomo.data.ijk_to_xyz_transform).inverse().transform_points(
        ms.atoms.scene_coords)
    assert np.abs(got - positions_voxels(want)).max() * vs < 1e-3
    assert np.allclose([m.cryovis_score for m in ms.atoms], want["score"], atol=1e-5)
    assert {m.cryovis_class for m in ms.atoms} == {data["template_class"]}
    stored = np.array([ms.cryovis_orientations[m] for m in ms.atoms])
    assert np.abs(stored - orientations(want)).max() < 1e-5
    assert np.abs(stored - np.eye(3)).max() > 0.1  # a search over orientations, not identity
    sticks = [m for m in ms.child_models() if "orientations" in m.name]
    assert len(sticks) == 1 and len(sticks[0].positions) == ms.num_atoms
    # several picks on true particles of the class (measured: 7 of 10 within 1.5 voxels)
    centres = positions_voxels(truth[truth["class"] == data["template_class"]])
    dist = np.linalg.norm(got[:, None, :] - centres[None], axis=2)
    hit = dist.min(axis=1) <= 2.0
    assert len(set(dist.argmin(axis=1)[hit])) >= 3, np.round(dist.min(axis=1), 1)

    # the engine's progress reached the status line once prefixed: by the job's name, not
    # the job's and then the engine's own "cryovis pick: "
    prefix = f"cryovis pick #{tomo.id_string}: "
    assert [t for t in log.statuses if t.startswith(prefix + "orientations ")], log.statuses
    doubled = [t for t in log.statuses + [m for _, m in log.messages]
               if re.match(r"cryovis [^:]*: cryovis\b", t)]
    assert not doubled, doubled
