"""``cryovis pseudolabel`` (strokes as a label map or as marker sets) and ``cryovis segment``
with a K-class network trained on pseudo-labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import one_line_user_error

# Markers are placed off their voxel centres by up to this many voxels, as clicks on a
# plane are: the conversion must still find the voxel the label map has.
JITTER_VOXELS = 0.3


@pytest.fixture(scope="module")
def strokes(data):
    """The stroke label map as formats reads it, and (x, y, z) voxels per class name."""
    from formats import read_volume

    labels = np.asarray(read_volume(data["dir"] / data["strokes"]).data)
    per_class = {}
    for value, name in enumerate(data["stroke_classes"], start=1):
        z, y, x = np.nonzero(labels == value)
        per_class[name] = np.column_stack([x, y, z]).astype(float)
    return labels, per_class


@pytest.fixture(scope="module")
def stroke_volume(run, opened, data):
    return run(f"open {data['dir'] / data['strokes']}")[0]


def place_markers(run, session, tomo, name: str, xyz_voxels, radius: float = 4.0):
    """A marker set named ``name`` made with the ``marker`` command (what ChimeraX's marker
    mouse modes run), one marker per voxel position, jittered within the voxel."""
    rng = np.random.default_rng(len(name))
    jittered = xyz_voxels + rng.uniform(-JITTER_VOXELS, JITTER_VOXELS, xyz_voxels.shape)
    scene = (tomo.scene_position * tomo.data.ijk_to_xyz_transform).transform_points(jittered)
    new_id = max(m.id[0] for m in session.models.list()) + 1
    for point in scene:
        marker = run(f"marker #{new_id} position {','.join(f'{c:.4f}' for c in point)} "
                     f"radius {radius}")
    ms = marker.structure
    run(f"rename #{ms.id_string} {name}")
    assert ms.name == name and ms.num_atoms == len(xyz_voxels)
    return ms


@pytest.fixture(scope="module")
def marker_sets(run, session, opened, strokes):
    _, per_class = strokes
    return [place_markers(run, session, opened["tomo"], name, xyz)
            for name, xyz in per_class.items()]


def spec(models) -> str:
    return "#" + ",".join(m.id_string for m in models)


def check_class_maps(maps, tomo, names, log_text: str) -> np.ndarray:
    """The volumes of one run: named, grouped, coloured per class, on the tomogram's grid,
    summing to 1; returns their probabilities ``[K, z, y, x]``."""
    from chimerax.map import Volume

    assert [v.name for v in maps] == names
    group = maps[0].parent
    assert all(v.parent is group for v in maps) and group.name.endswith("pseudo-labels")
    colours = [tuple(v.surfaces[0].rgba) for v in maps]
    assert len(set(colours)) == len(maps)
    for v in maps:
        assert isinstance(v, Volume)
        assert tuple(v.data.size) == tuple(tomo.data.size)
        assert np.allclose(v.data.origin, tomo.data.origin)
        assert np.allclose(v.data.step, tomo.data.step)
    probs = np.stack([v.full_matrix() for v in maps])
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    assert [v.display for v in maps] == [n != "background" for n in names]
    assert tomo.cryovis_classes == [v for v in maps if v.name != "background"]
    assert "soft class maps" in log_text
    return probs


def pseudolabel(run, log, command: str):
    """Run a ``cryovis pseudolabel`` command to its end; its volumes and log text."""
    log.clear()
    maps = run(command + " wait true")
    assert not log.errors(), log.errors()
    return maps, log.text()


@pytest.fixture(scope="module")
def label_map_run(run, opened, data, stroke_volume, log):
    return pseudolabel(run, log, f"cryovis pseudolabel #{opened['tomo'].id_string} labels "
                       f"#{stroke_volume.id_string} classes {','.join(data['stroke_classes'])} "
                       "trees 8 threads 2")


@pytest.fixture(scope="module")
def label_map_probs(label_map_run, opened, data):
    maps, _ = label_map_run
    return np.stack([v.full_matrix() for v in maps])


def test_label_map_strokes(label_map_run, opened, data, stroke_volume):
    maps, text = label_map_run
    names = data["stroke_classes"]
    probs = check_class_maps(maps, opened["tomo"], names, text)
    assert f"label map #{stroke_volume.id_string} (120 painted voxels" in text
    assert "class priors re-estimated" in text
    # a real classifier: the membrane map finds the simulator's membrane
    truth = opened["classes"][data["classes"].index(data["membrane_truth"])].full_matrix() > 0.5
    membrane = probs[names.index("membrane")]
    assert membrane[truth].mean() > membrane[~truth].mean() + 0.2


def test_marker_strokes_equal_the_label_map(run, opened, data, marker_sets, label_map_probs,
                                            log):
    """The same voxels as markers (jittered clicks, balls of radius 0) give exactly the
    label map's result: scene -> voxel conversion honours the origin and voxel size."""
    tomo = opened["tomo"]
    assert tuple(tomo.data.origin) != (0.0, 0.0, 0.0)
    maps, text = pseudolabel(run, log, f"cryovis pseudolabel #{tomo.id_string} strokes "
                             f"{spec(marker_sets)} radius 0 trees 8 threads 2")
    probs = check_class_maps(maps, tomo, data["stroke_classes"], text)
    assert "3 marker set(s) (120 painted voxels" in text
    np.testing.assert_allclose(probs, label_map_probs, atol=1e-6)


def test_marker_radius_paints_balls(run, opened, marker_sets, log):
    """radius is in Å: 15 Å at 10 Å per voxel paints the 19-voxel ball around each marker."""
    tomo = opened["tomo"]
    vs = float(tomo.data.step[0])
    _, text = pseudolabel(run, log, f"cryovis pseudolabel #{tomo.id_string} strokes "
                          f"{spec(marker_sets)} radius {1.5 * vs:g} trees 8 threads 2")
    painted = int(text.split("marker set(s) (")[1].split(" painted")[0])
    assert 120 * 10 < painted <= 120 * 19  # balls of radius 1.5 voxels, some overlapping


def test_label_map_and_markers_combine_and_classifier_applies(
        run, session, opened, data, strokes, marker_sets, label_map_probs, tmp_path, log):
    """Background and membrane from a label map, particles from a marker set named
    'particle' (a new class); the classifier saved and applied again."""
    from chimerax.cryovis.volumes import add_volume

    tomo = opened["tomo"]
    labels, _ = strokes
    two = add_volume(session, np.where(labels == 3, 0, labels).astype(np.float32), tomo,
                     "two-class strokes")
    particle = next(ms for ms in marker_sets if ms.name == "particle")
    weak = tmp_path / "weak.npz"
    maps, text = pseudolabel(
        run, log, f"cryovis pseudolabel #{tomo.id_string} labels #{two.id_string} classes "
        f"background,membrane strokes #{particle.id_string} radius 0 saveClassifier {weak} "
        "trees 8 threads 2")
    probs = check_class_maps(maps, tomo, data["stroke_classes"], text)
    # the same strokes as the full label map
    np.testing.assert_allclose(probs, label_map_probs, atol=1e-6)
    assert weak.is_file() and str(weak) in text
    applied, text = pseudolabel(run, log, f"cryovis pseudolabel #{tomo.id_string} classifier "
                                f"{weak} priors estimate")
    applied_probs = check_class_maps(applied, tomo, data["stroke_classes"], text)
    assert "class priors re-estimated" in text
    np.testing.assert_allclose(applied_probs, probs, atol=1e-4)
    # a saved classifier is never replaced without force
    assert "exists" in one_line_user_error(
        run, f"cryovis pseudolabel #{tomo.id_string} labels #{two.id_string} "
             f"saveClassifier {weak}")


def test_bad_strokes_are_one_line(run, session, opened, stroke_volume, marker_sets, tmp_path):
    from chimerax.markers import MarkerSet

    tomo = f"#{opened['tomo'].id_string}"
    assert "no labels" in one_line_user_error(run, f"cryovis pseudolabel {tomo}")
    assert "not a volume" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} labels #{marker_sets[0].id_string}")
    assert "not a marker set" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} strokes #{stroke_volume.id_string}")
    empty = MarkerSet(session, "empty")
    session.models.add([empty])
    assert "has no markers" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} strokes #{empty.id_string}")
    assert "one class only" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} strokes #{marker_sets[0].id_string}")
    new_id = max(m.id[0] for m in session.models.list()) + 1
    far = run(f"marker #{new_id} position 1e5,1e5,1e5 radius 5").structure
    run(f"rename #{far.id_string} far")
    assert "outside the tomogram" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} strokes {spec([marker_sets[0], far])}")
    run(f'rename #{far.id_string} "far away"')
    assert "one word" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} strokes {spec([marker_sets[0], far])}")
    assert "2 names for the 3 labels" in one_line_user_error(
        run, f"cryovis pseudolabel {tomo} labels #{stroke_volume.id_string} classes a,b")
    msg = one_line_user_error(
        run, f"cryovis pseudolabel {tomo} classifier {tmp_path / 'missing.npz'}")
    assert "missing.npz" in msg and "not exist" in msg
    assert "not a volume" in one_line_user_error(
        run, f"cryovis pseudolabel #{marker_sets[0].id_string} labels "
             f"#{stroke_volume.id_string}")
    run(f"close #{empty.id_string},{far.id_string}")


def test_segment_with_a_k_class_network(run, session, opened, data, engine_program, log):
    """A 3-class network trained on the engine's pseudo-labels (cryovis train segmenter
    --pseudolabels, in the test set-up): one volume per class in the model's class order."""
    tomo = opened["tomo"]
    run(f"cryovis config engine {engine_program}")
    log.clear()
    run(f"cryovis segment #{tomo.id_string} model {data['dir'] / data['kclass_model']} "
        "threads 2 wait true")
    assert not log.errors(), log.errors()
    maps = tomo.cryovis_classes
    assert [v.name for v in maps] == ["membrane", "particle"]  # background left out
    group = maps[0].parent
    everything = [m for m in group.child_models()]
    assert [v.name for v in everything] == data["stroke_classes"]
    assert not everything[0].display
    probs = np.stack([v.full_matrix() for v in everything])
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-3)
    for v in everything:
        assert tuple(v.data.size) == tuple(tomo.data.size)
        assert np.allclose(v.data.origin, tomo.data.origin)
    assert "3 class map(s)" in log.text()
