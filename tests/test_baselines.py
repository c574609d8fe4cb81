"""The two baselines on a small synthetic tomogram written to and read from MRC."""

from __future__ import annotations

import numpy as np
import pytest

from cryoet_integration.evaluate import evaluate_picks, evaluate_segmentation
from cryoet_integration.picking import pick_blobs
from cryoet_integration.segmentation.threshold_baseline import membrane_map
from formats import Volume, make_table, read_particles, read_volume, write_particles, write_volume

SHAPE = (48, 80, 80)
VOXEL = 10.0  # Å
PARTICLE_RADIUS = 5  # voxels (100 Å diameter)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Dark balls and a dark 5-voxel-thick vesicle in Gaussian noise (raw cryo-ET polarity)."""
    rng = np.random.default_rng(7)
    z, y, x = np.indices(SHAPE)
    density = np.zeros(SHAPE, np.float32)
    r = np.sqrt((z - 24) ** 2 + (y - 40) ** 2 + (x - 24) ** 2)
    membrane = np.abs(r - 16) <= 2.5
    density[membrane] = 1.0
    instances = np.zeros(SHAPE, np.int32)
    centres: list[np.ndarray] = []
    while len(centres) < 10:
        c = rng.uniform([8, 8, 8], [72, 72, 40])
        far_from_others = all(np.linalg.norm(c - d) > 14 for d in centres)
        far_from_vesicle = np.linalg.norm(c - np.array([24, 40, 24])) > 16 + 9
        if far_from_others and far_from_vesicle:
            centres.append(c)
    for i, c in enumerate(centres, 1):
        ball = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= PARTICLE_RADIUS ** 2
        density[ball] = 1.0
        instances[ball] = i
    raw = -density + rng.normal(0, 0.7, SHAPE).astype(np.float32)
    path = tmp_path_factory.mktemp("baseline") / "tomo.mrc"
    write_volume(path, Volume(raw, voxel_size=VOXEL))
    truth = make_table(np.array(centres), classes=["particle"] * len(centres))
    return {"path": path, "instances": instances, "membrane": membrane, "truth": truth}


def test_blob_picker_finds_the_particles(scene, tmp_path):
    tomo = read_volume(scene["path"])
    picks = pick_blobs(tomo, diameter_angst=2 * PARTICLE_RADIUS * VOXEL, class_name="particle")
    assert picks["score"].is_monotonic_decreasing and (picks["voxel_size"] == VOXEL).all()
    write_particles(tmp_path / "picks.csv", picks)
    back = read_particles(tmp_path / "picks.csv")
    res = evaluate_picks(scene["instances"], scene["truth"], back)
    assert res["recall"] >= 0.9
    assert res["average_distance"] < 1.5
    assert res["F1"] > 0.4  # the vesicle wall also gives blob-like responses
    top = pick_blobs(tomo, 100.0, max_picks=5)
    assert len(top) == 5


def test_blob_picker_polarity(scene):
    tomo = read_volume(scene["path"])
    inverted = tomo.with_data(-np.asarray(tomo.data))
    light = pick_blobs(inverted, 100.0, polarity="light")
    dark = pick_blobs(tomo, 100.0)
    assert np.array_equal(light[["x", "y", "z"]].to_numpy(), dark[["x", "y", "z"]].to_numpy())
    wrong = evaluate_picks(scene["instances"], scene["truth"], pick_blobs(inverted, 100.0))
    assert wrong["recall"] < 0.3


def test_blob_picker_needs_voxel_size(scene):
    with pytest.raises(ValueError, match="voxel size"):
        pick_blobs(Volume(np.zeros((8, 8, 8), np.float32)), 50.0)


def test_threshold_baseline_segments_the_vesicle(scene):
    tomo = read_volume(scene["path"])
    soft, mask = membrane_map(tomo, thickness_angst=50.0, method="otsu", min_size_voxels=500)
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    assert np.array_equal(soft >= 0.5, mask)
    res = evaluate_segmentation(scene["membrane"], soft)
    assert res["dice"] > 0.6 and res["surface_dice"] > 0.6
    flipped, _ = membrane_map(tomo.with_data(-np.asarray(tomo.data)), 50.0, polarity="light",
                              method="otsu", min_size_voxels=500)
    assert np.allclose(flipped, soft, atol=1e-5)
    for method, value in (("percentile", 95.0), ("zscore", 2.0)):
        _, m = membrane_map(tomo, 50.0, method=method, value=value)
        assert evaluate_segmentation(scene["membrane"], m)["dice"] > 0.4
