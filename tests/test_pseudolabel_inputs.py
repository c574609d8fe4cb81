"""Strokes from a coordinate file, class-map families (manifest, sorted fallback) and
``cryovis render`` expanding a K-class output path to its class maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoet_integration.cli import main
from cryoet_integration.commands.render import expand_class_paths
from cryoet_integration.pseudolabel.strokes import rasterise_points
from cryoet_integration.segmentation.classmaps import (
    class_map_paths,
    find_class_maps,
    write_manifest,
)
from formats import Volume, make_table, read_volume, write_particles, write_volume

pytest.importorskip("sklearn")

NAMES = ["background", "membrane", "particle"]


def _tomogram(folder):
    """A dark slab (membrane) and bright balls (particles) in noise, 10 Å voxels."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:20, :32, :32]
    membrane = np.abs(y - 10) < 2
    particle = ((z - 10) ** 2 + (y - 24) ** 2 + (x - 20) ** 2) < 12
    image = (-2.0 * membrane + 2.0 * particle + rng.normal(0, 0.5, z.shape)).astype(np.float32)
    write_volume(folder / "tomo.mrc", Volume(image, voxel_size=10.0))
    return folder / "tomo.mrc"


def _points(path, xyz, classes, voxel_size=10.0):
    write_particles(path, make_table(np.asarray(xyz, float), voxel_size, classes=classes))
    return path


def test_points_become_balls_in_their_class_and_scale_with_voxel_size(tmp_path):
    path = _points(tmp_path / "p.csv", [[5, 6, 7], [20, 10, 3]], ["membrane", "background"])
    strokes, names = rasterise_points(path, (10, 16, 24), 10.0, radius=1.0, names=NAMES)
    assert names == NAMES
    assert strokes[7, 6, 5] == 2 and strokes[3, 10, 20] == 1
    assert np.count_nonzero(strokes == 2) == 7  # centre and its 6 face neighbours
    # the same points given at 20 Å per voxel sit twice as far on a 10 Å grid
    path = _points(tmp_path / "q.csv", [[5, 6, 4]], ["2"], voxel_size=20.0)
    strokes, names = rasterise_points(path, (10, 16, 24), 10.0, radius=0.0)
    assert strokes[8, 12, 10] == 2 and names == ["class2"]


def test_pseudolabel_from_a_coordinate_file_and_its_bad_inputs(tmp_path, capsys):
    tomo = _tomogram(tmp_path)
    xyz = [[x, 10, z] for x in (4, 12, 26) for z in (4, 14)]            # membrane
    xyz += [[20, 24, 10], [19, 23, 9]]                                   # particle
    xyz += [[x, 2, z] for x in (6, 28) for z in (3, 16)] + [[8, 28, 4]]  # background
    classes = ["membrane"] * 6 + ["particle"] * 2 + ["background"] * 5
    pts = _points(tmp_path / "strokes.csv", xyz, classes)
    out = tmp_path / "soft.mrc"
    assert main(["pseudolabel", str(tomo), "--labels", str(pts), "--classes", *NAMES,
                 "--out", str(out), "--labels-out", str(tmp_path / "hard.mrc"),
                 "--trees", "8", "--threads", "1"]) == 0
    family = find_class_maps(out)
    assert family.names == NAMES and family.values == [1, 2, 3]
    hard = np.asarray(read_volume(tmp_path / "hard.mrc").data)
    assert hard[10, 10, 16] == 2 and hard[10, 24, 20] == 3 and hard[10, 2, 16] == 1
    one = _points(tmp_path / "one.csv", xyz[:6], classes[:6])
    assert main(["pseudolabel", str(tomo), "--labels", str(one), "--out",
                 str(tmp_path / "x.mrc")]) == 2
    assert "one class" in capsys.readouterr().err
    far = _points(tmp_path / "far.csv", [[100, 1, 1], [1, 1, 1]], ["a", "b"])
    assert main(["pseudolabel", str(tomo), "--labels", str(far), "--out",
                 str(tmp_path / "x.mrc")]) == 2
    assert "outside the tomogram" in capsys.readouterr().err
    assert not (tmp_path / "x_a.mrc").exists()


def test_class_map_family_manifest_fallback_and_render_expansion(tmp_path, capsys):
    rng = np.random.default_rng(1)
    tomo = tmp_path / "tomo.mrc"
    write_volume(tomo, Volume(rng.normal(size=(16, 24, 24)).astype(np.float32),
                              voxel_size=10.0))
    out = tmp_path / "seg.mrc"
    order = ["background", "particle", "membrane"]  # painted order, not sorted
    for path in class_map_paths(out, order).values():
        write_volume(path, Volume(rng.random((16, 24, 24)).astype(np.float32),
                                  voxel_size=10.0))
    write_manifest(out, order, [1, 3, 2])
    family = find_class_maps(out)
    assert family.names == order and family.values == [1, 3, 2]
    assert expand_class_paths([str(out)]) == [tmp_path / "seg_particle.mrc",
                                              tmp_path / "seg_membrane.mrc"]
    # another tool's per-class maps without a manifest: sorted names, values 1..K
    (tmp_path / "seg_classes.json").unlink()
    assert find_class_maps(out).names == sorted(order)
    # an existing single map stays itself; a path that is neither is an error
    assert expand_class_paths([str(tomo)]) == [tomo]
    write_manifest(out, order, [1, 3, 2])
    png = tmp_path / "r.png"
    assert main(["render", str(tomo), "--classes", str(out), "--out", str(png),
                 "--size", "64x48", "--threads", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["classes"] == ["seg_particle",
                                                                        "seg_membrane"]
    assert main(["render", str(tomo), "--classes", str(tmp_path / "none.mrc"), "--out",
                 str(tmp_path / "n.png")]) == 2
    assert "no class maps" in capsys.readouterr().err
