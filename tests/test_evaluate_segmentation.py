"""Segmentation scores: Dice, IoU, Surface-Dice (MemBrain v2), per-slice Dice, caps."""

from __future__ import annotations

import numpy as np
import pytest

from cryoet_integration.evaluate import evaluate_segmentation, missing_wedge_cap_mask
from cryoet_integration.evaluate.segmentation import (
    edge_on_gap_deg,
    skeleton,
    wedge_cap_scores,
    wedge_hidden_mask,
)


def _shell(shape=(48, 48, 48), r_in=14.0, r_out=18.0, centre=None) -> np.ndarray:
    z, y, x = np.indices(shape)
    c = np.array(shape) / 2 if centre is None else np.asarray(centre)
    r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    return (r >= r_in) & (r < r_out)


def test_identical_masks_score_one():
    mask = _shell()
    res = evaluate_segmentation(mask, mask)
    for key in ("dice", "F1", "iou", "miou", "precision", "recall", "pixel_accuracy",
                "surface_dice", "surface_precision", "surface_recall"):
        assert res[key] == 1.0, key
    assert len(res["per_slice_dice"]) == mask.shape[0]


def test_disjoint_masks_score_zero():
    a = np.zeros((10, 20, 20), bool)
    b = np.zeros_like(a)
    a[2:5, 2:8, 2:8] = True
    b[6:9, 10:18, 10:18] = True
    res = evaluate_segmentation(a, b)
    assert res["dice"] == 0.0 and res["iou"] == 0.0 and res["surface_dice"] == 0.0


def test_hand_computed_dice_with_soft_map_and_threshold():
    truth = np.zeros((4, 5, 5), np.uint8)
    truth[1, 1:4, 1:4] = 1                       # 9 voxels
    soft = np.zeros(truth.shape, np.float32)
    soft[1, 1:4, 1:3] = 0.9                      # 6 inside the truth
    soft[1, 0, 0:2] = 0.7                        # 2 outside
    soft[1, 1:4, 3] = 0.4                        # below 0.5: not predicted
    res = evaluate_segmentation(truth, soft, threshold=0.5)
    assert (res["TP"], res["FP"], res["FN"]) == (6, 2, 3)
    assert res["dice"] == pytest.approx(12 / 17)
    assert res["iou"] == pytest.approx(6 / 11)
    assert res["precision"] == pytest.approx(6 / 8)
    assert res["recall"] == pytest.approx(6 / 9)
    assert res["pixel_accuracy"] == pytest.approx((100 - 5) / 100)
    low = evaluate_segmentation(truth, soft, threshold=0.3)
    assert low["TP"] == 9 and low["dice"] == pytest.approx(18 / 20)
    curve = res["per_slice_dice"]
    assert len(curve) == 4 and np.isnan(curve[0])
    assert curve[1] == pytest.approx(12 / 17)


def test_empty_truth_and_prediction():
    empty = np.zeros((6, 6, 6), bool)
    res = evaluate_segmentation(empty, empty)
    assert res["dice"] == 1.0 and res["surface_dice"] == 1.0
    assert all(np.isnan(v) for v in res["per_slice_dice"])
    some = empty.copy()
    some[2, 2, 2] = True
    assert evaluate_segmentation(empty, some)["dice"] == 0.0


def test_skeleton_of_sheet_is_a_surface():
    sheet = np.zeros((20, 30, 30), bool)
    sheet[8:13, 3:27, 3:27] = True
    skel = skeleton(sheet)
    assert set(np.nonzero(skel)[0].tolist()) == {10}
    assert skel.sum() >= 20 * 20  # the free edges recede by the half-thickness


def test_surface_dice_of_shifted_thin_sheet_drops():
    truth = np.zeros((32, 32, 32), bool)
    truth[14:17, :, :] = True
    near = np.roll(truth, 1, axis=0)
    far = np.roll(truth, 2, axis=0)
    s_same = evaluate_segmentation(truth, truth)["surface_dice"]
    s_near = evaluate_segmentation(truth, near)["surface_dice"]
    s_far = evaluate_segmentation(truth, far)["surface_dice"]
    assert s_same == 1.0 and s_near == 1.0  # skeleton still inside the other mask
    assert s_far == 0.0
    # A thicker prediction on the same mid-surface keeps Surface-Dice, while Dice drops.
    thick = np.zeros_like(truth)
    thick[12:19] = True
    res = evaluate_segmentation(truth, thick)
    assert res["surface_dice"] == 1.0 and res["dice"] == pytest.approx(6 / 10)


def test_surface_dice_counts_holes():
    truth = _shell()
    pred = truth.copy()
    pred[:, :, :20] = False  # the prediction misses part of the membrane
    res = evaluate_segmentation(truth, pred)
    assert res["surface_precision"] == 1.0
    assert 0.2 < res["surface_recall"] < 0.7


def test_multiclass_per_class_and_means():
    truth = np.zeros((8, 10, 10), np.int16)
    truth[1:4, 1:5, 1:5] = 1
    truth[5:7, 5:9, 5:9] = 2
    pred = truth.copy()
    pred[5:7, 5:9, 5:9] = 1  # class 2 predicted as 1
    res = evaluate_segmentation(truth, pred, multiclass=True, class_names={1: "membrane"})
    assert set(res["per_class"]) == {"membrane", "2"}
    assert res["per_class"]["2"]["dice"] == 0.0
    assert res["per_class"]["membrane"]["dice"] == pytest.approx(2 * 48 / (48 + 80))
    assert res["dice"] == pytest.approx(np.mean([2 * 48 / 128, 0.0]))
    assert res["pixel_accuracy"] == pytest.approx(1 - 32 / 800)
    scores = np.zeros((3,) + truth.shape, np.float32)
    for lab in range(3):
        scores[lab] = truth == lab
    assert evaluate_segmentation(truth, scores, multiclass=True)["dice"] == 1.0


def test_region_restricts_scoring():
    truth = np.zeros((10, 10, 10), bool)
    truth[:, 2:8, 2:8] = True
    pred = truth.copy()
    pred[:5] = False
    region = np.zeros_like(truth)
    region[5:] = True
    assert evaluate_segmentation(truth, pred, region=region)["dice"] == 1.0
    assert evaluate_segmentation(truth, pred)["dice"] < 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        evaluate_segmentation(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_missing_wedge_caps_of_a_vesicle():
    shell = _shell()
    caps = missing_wedge_cap_mask(shell, angle_deg=30)
    assert not (caps & ~shell).any()
    # Both 30-degree caps of a sphere hold 1 - cos(30) of its area.
    assert caps.sum() / shell.sum() == pytest.approx(1 - np.cos(np.deg2rad(30)), abs=0.03)
    z = np.nonzero(caps)[0]
    assert np.all(np.abs(z - 24) > 10)
    sheet = np.zeros((20, 20, 20), bool)
    sheet[9:12] = True
    assert missing_wedge_cap_mask(sheet).sum() == sheet.sum()
    wall = np.zeros_like(sheet)
    wall[:, :, 9:12] = True
    assert missing_wedge_cap_mask(wall).sum() == 0


def test_scores_inside_and_outside_caps():
    truth = _shell()
    caps = missing_wedge_cap_mask(truth)
    pred = truth & ~caps  # a segmentation that misses exactly the caps
    inside = evaluate_segmentation(truth, pred, region=caps)
    outside = evaluate_segmentation(truth, pred, region=~caps)
    assert inside["dice"] == 0.0 and outside["dice"] == 1.0
    scores = wedge_cap_scores(truth.astype(np.uint8), pred.astype(np.float32), angle_deg=30)
    assert scores["inside"]["dice"] == 0.0 and scores["outside"]["dice"] == 1.0
    assert scores["cap_voxels"] == int(caps.sum())


def _tilted_sheet(tilt_about_x_deg: float, shape=(32, 32, 32)) -> np.ndarray:
    """A 3-voxel-thick flat sheet through the centre whose normal is z tilted by the given
    angle towards y (a rotation about the x axis)."""
    z, y, _ = np.indices(shape, dtype=float) - (np.array(shape)[:, None, None, None] - 1) / 2
    a = np.deg2rad(tilt_about_x_deg)
    return np.abs(z * np.cos(a) + y * np.sin(a)) <= 1.5


def test_edge_on_gap_follows_the_tilt_axis():
    normals = np.array([[0.0, 0.0, 1.0],    # wall facing x: edge-on at 0 degrees
                        [0.0, 1.0, 0.0],    # wall facing y: edge-on at every tilt
                        [1.0, 0.0, 0.0]])   # sheet in x-y: 90 - 60 = 30 degrees short
    np.testing.assert_allclose(edge_on_gap_deg(normals, (-60, 60)), [0, 0, 30], atol=1e-9)
    # a normal 40 degrees from z towards x is edge-on at tilt -50 only
    n40 = np.array([[np.cos(np.deg2rad(40)), 0.0, np.sin(np.deg2rad(40))]])
    assert edge_on_gap_deg(n40, (-60, 60))[0] == pytest.approx(0.0, abs=1e-9)
    assert edge_on_gap_deg(n40, (-40, 60))[0] == pytest.approx(10.0, abs=1e-6)
    assert edge_on_gap_deg(n40, (-90, 90))[0] == pytest.approx(0.0, abs=1e-9)


def test_wedge_hidden_mask_uses_tilt_axis_not_only_angle_to_z():
    # 50 degrees from z about x: outside the 30-degree caps, yet no tilt about y shows it
    # edge-on (gap 40 degrees for a +-60 series)
    sheet = _tilted_sheet(50)
    assert missing_wedge_cap_mask(sheet).sum() == 0
    hidden = wedge_hidden_mask(sheet, (-60, 60))
    assert not (hidden & ~sheet).any()
    assert hidden.sum() > 0.9 * sheet.sum()
    # a vertical wall (normal along y) is never hidden
    assert wedge_hidden_mask(_tilted_sheet(90), (-60, 60)).sum() == 0
