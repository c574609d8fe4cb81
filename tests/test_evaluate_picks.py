"""SHREC 2021 picking scores: hand-computed cases and the rules of the track's script."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryoet_integration.evaluate import evaluate_picks
from cryoet_integration.evaluate.picks import dilate_instances
from formats import Volume, make_table

SHAPE = (30, 40, 50)  # z, y, x
# id: (class, centre x, y, z, radius in voxels)
PARTICLES = {
    1: ("ribosome", (10, 10, 10), 4),
    2: ("ribosome", (30, 10, 10), 4),
    3: ("proteasome", (10, 30, 20), 2),
    4: ("fiducial", (40, 30, 20), 2),
}


def _instances() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    inst = np.zeros(SHAPE, dtype=np.int32)
    for pid, (_, (cx, cy, cz), r) in PARTICLES.items():
        inst[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r] = pid
    return inst


def _truth(with_id: bool = True):
    ids = sorted(PARTICLES)
    extra = None
    if with_id:
        import pandas as pd

        extra = pd.DataFrame({"id": ids})
    return make_table([PARTICLES[i][1] for i in ids], classes=[PARTICLES[i][0] for i in ids],
                      extra=extra)


def _picks(rows):
    return make_table([r[1:] for r in rows] or np.zeros((0, 3)), classes=[r[0] for r in rows])


PERFECT = [("ribosome", 10, 10, 10), ("ribosome", 30, 10, 10), ("proteasome", 10, 30, 20)]


def test_perfect_picks_score_one():
    res = evaluate_picks(_instances(), _truth(), _picks(PERFECT))
    assert (res["F1"], res["precision"], res["recall"]) == (1.0, 1.0, 1.0)
    assert (res["TP"], res["FP"], res["FN"], res["RR"], res["multiple_hits"]) == (3, 0, 0, 3, 0)
    assert res["average_distance"] == 0.0
    assert res["miss_rate"] == 0.0
    assert all(s["F1"] == 1.0 for s in res["per_class"].values())
    assert res["n_true"] == 3 and res["n_excluded_true"] == 1


def test_hand_computed_case():
    picks = _picks([
        ("ribosome", 10, 10, 10),     # TP on 1, distance 0
        ("ribosome", 11, 10, 10),     # second hit on 1: multiple hit, not FP
        ("proteasome", 30, 10, 15),   # 5 voxels from 2: only inside the dilated ball -> TP
        ("ribosome", 30, 10, 16),     # 6 voxels away: background -> FP
        ("ribosome", -5, 10, 10),     # clipped to x=0: background -> FP
        ("fiducial", 40, 30, 20),     # on an excluded particle: counts in RR only
    ])
    res = evaluate_picks(_instances(), _truth(), picks)
    assert (res["RR"], res["TP"], res["FP"], res["FN"]) == (6, 2, 2, 1)
    assert res["multiple_hits"] == 1 and res["duplicate_picks"] == 1
    assert res["picks_on_excluded"] == 1 and res["picks_clipped"] == 1
    assert res["average_distance"] == pytest.approx(2.5)
    assert res["precision"] == pytest.approx(2 / 6)
    assert res["recall"] == pytest.approx(2 / 3)
    assert res["miss_rate"] == pytest.approx(1 / 3)
    assert res["F1"] == pytest.approx(4 / 9)
    # Classification: true [ribo, ribo, prot] vs first-hit [ribo, prot, background].
    assert res["per_class"]["ribosome"]["F1"] == pytest.approx(2 / 3)
    assert res["per_class"]["proteasome"]["F1"] == 0.0
    assert res["per_class"]["ribosome"]["localisation_recall"] == 1.0
    assert res["per_class"]["proteasome"]["localisation_recall"] == 0.0
    labels = res["confusion"]["labels"]
    assert labels == ["proteasome", "ribosome", "background"]
    assert res["confusion"]["matrix"] == [[0, 0, 1], [1, 1, 0]] + [[0, 0, 0]]


def test_first_pick_decides_class_and_distance():
    picks = _picks([("proteasome", 12, 10, 10), ("ribosome", 10, 10, 10)] + PERFECT[1:])
    res = evaluate_picks(_instances(), _truth(), picks)
    assert res["TP"] == 3 and res["multiple_hits"] == 1 and res["RR"] == 4
    assert res["per_class"]["ribosome"]["TP"] == 1
    assert res["average_distance"] == pytest.approx(2 / 3)


def test_rounding_to_nearest_voxel():
    # Ball 1 reaches x=14; the dilation adds x=15; 15.4 rounds into it, 15.6 out of it.
    inside = evaluate_picks(_instances(), _truth(), _picks([("ribosome", 15.4, 10, 10)]))
    outside = evaluate_picks(_instances(), _truth(), _picks([("ribosome", 15.6, 10, 10)]))
    assert inside["TP"] == 1 and inside["average_distance"] == pytest.approx(5.0)
    assert outside["TP"] == 0 and outside["FP"] == 1


def test_dilation_is_one_cross_step():
    inst = np.zeros((5, 5, 5), dtype=np.int32)
    inst[2, 2, 2] = 7
    dil = dilate_instances(inst)
    assert int((dil == 7).sum()) == 7
    assert dil[2, 1, 1] == 0


def test_empty_predictions():
    res = evaluate_picks(_instances(), _truth(), _picks([]))
    assert (res["RR"], res["TP"], res["FP"], res["FN"]) == (0, 0, 0, 3)
    assert res["F1"] == 0.0 and res["precision"] == 0.0 and res["recall"] == 0.0
    assert res["average_distance"] is None


def test_class_without_ground_truth_and_shuffled_classes():
    picks = _picks([("proteasome", 10, 10, 10), ("ribosome", 30, 10, 10),
                    ("nucleosome", 10, 30, 20)])
    res = evaluate_picks(_instances(), _truth(), picks)
    assert res["F1"] == 1.0  # localisation ignores classes
    assert res["per_class"]["nucleosome"]["n_true"] == 0
    assert res["per_class"]["nucleosome"]["F1"] == 0.0
    assert res["per_class"]["proteasome"]["F1"] == 0.0
    assert res["per_class"]["ribosome"]["F1"] == pytest.approx(2 / 3)


def test_class_names_match_ignoring_case():
    picks = _picks([("RIBOSOME", 10, 10, 10), ("Ribosome ", 30, 10, 10),
                    ("proteasome", 10, 30, 20)])
    res = evaluate_picks(_instances(), _truth(), picks)
    assert res["per_class"]["ribosome"]["F1"] == 1.0


def test_random_picks_score_low():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, [50, 40, 30], size=(200, 3))
    res = evaluate_picks(_instances(), _truth(), make_table(xyz, classes=["ribosome"] * 200))
    occupied = np.count_nonzero(dilate_instances(_instances())) / np.prod(SHAPE)
    assert res["FP"] + res["TP"] + res["duplicate_picks"] + res["picks_on_excluded"] == 200
    assert res["precision"] < 3 / 200 + 1e-9
    assert res["FP"] / 200 == pytest.approx(1 - occupied, abs=0.08)


def test_excluded_classes_option():
    picks = _picks(PERFECT + [("fiducial", 40, 30, 20)])
    default = evaluate_picks(_instances(), _truth(), picks)
    assert default["precision"] == pytest.approx(3 / 4) and default["recall"] == 1.0
    none = evaluate_picks(_instances(), _truth(), picks, exclude=())
    assert none["F1"] == 1.0 and none["n_true"] == 4
    assert none["per_class"]["fiducial"]["F1"] == 1.0


def test_truth_ids_from_centres_and_rescaling():
    inst = Volume(_instances(), voxel_size=10.0)
    picks = make_table(np.array([p[1:] for p in PERFECT]) / 2.0, voxel_size=20.0,
                       classes=[p[0] for p in PERFECT])
    res = evaluate_picks(inst, _truth(with_id=False), picks)
    assert res["F1"] == 1.0 and res["rescaled_to_map_voxels"]["predictions"]
    assert res["average_distance_angst"] == 0.0


def test_size_groups_by_region_volume_and_mapping():
    res = evaluate_picks(_instances(), _truth(), _picks(PERFECT[:2]))
    assert res["size_groups"]["small"] == {"classes": ["proteasome"], "F1": 0.0}
    assert res["size_groups"]["large"]["classes"] == ["ribosome"]
    assert res["size_groups"]["large"]["F1"] == 1.0
    mapped = evaluate_picks(_instances(), _truth(), _picks(PERFECT),
                            size_groups={"ribosome": "big", "proteasome": "big"})
    assert mapped["size_groups"] == {"big": {"classes": ["proteasome", "ribosome"], "F1": 1.0}}


def test_truth_on_background_without_id_is_an_error():
    truth = make_table([(1, 1, 1)], classes=["ribosome"])
    with pytest.raises(ValueError, match="background"):
        evaluate_picks(_instances(), truth, _picks(PERFECT))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 55), st.floats(-5, 45), st.floats(-5, 35),
                          st.sampled_from(["ribosome", "proteasome", "fiducial"])),
                max_size=30))
def test_counts_always_add_up(rows):
    picks = _picks([(c, x, y, z) for x, y, z, c in rows])
    res = evaluate_picks(_instances(), _truth(), picks)
    assert res["TP"] + res["FN"] == res["n_true"] == 3
    assert res["RR"] == len(rows)
    assert res["FP"] + res["TP"] + res["duplicate_picks"] + res["picks_on_excluded"] == len(rows)
    assert 0 <= res["precision"] <= 1 and 0 <= res["recall"] <= 1
    assert res["multiple_hits"] <= res["TP"] <= res["RR"]
    assert sum(map(sum, res["confusion"]["matrix"])) == res["n_true"]
    # Reversing the order changes which pick is first, never the localisation counts.
    reversed_picks = _picks([(c, x, y, z) for x, y, z, c in rows][::-1])
    rev = evaluate_picks(_instances(), _truth(), reversed_picks)
    assert (rev["TP"], rev["FP"], rev["multiple_hits"]) == (res["TP"], res["FP"],
                                                             res["multiple_hits"])


def _rz(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_orientation_errors_match_picks_to_their_particles_modulo_symmetry():
    from cryoet_integration.evaluate import orientation_errors

    inst = np.zeros((20, 20, 40), dtype=np.int32)
    inst[8:12, 8:12, 3:7] = 1    # particle 1 at x=5
    inst[8:12, 8:12, 18:22] = 2  # particle 2 at x=20
    inst[8:12, 8:12, 33:37] = 3  # particle 3 (another class) at x=35
    tilt = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)  # 90° about x
    truth = make_table(np.array([[5, 10, 10], [20, 10, 10], [35, 10, 10.0]]),
                       matrices=np.stack([np.eye(3), tilt, np.eye(3)]),
                       classes=["ring", "ring", "rod"])
    picks = make_table(np.array([[5, 10, 10], [5.4, 10, 10], [20, 10, 10], [35, 10, 10],
                                 [15, 2, 2.0]]),
                       matrices=np.stack([_rz(10), np.eye(3), tilt @ _rz(90), np.eye(3),
                                          np.eye(3)]),
                       classes=["ring"] * 5)
    c1 = orientation_errors(inst, truth, picks, classes=["ring"])
    # the second pick on particle 1 is a repeat and is not scored
    assert c1["n_matched"] == 2 and c1["n_other_class"] == 1 and c1["n_background"] == 1
    np.testing.assert_allclose(c1["errors_deg"], [10.0, 90.0], atol=1e-3)
    c4 = orientation_errors(inst, truth, picks, classes=["ring"], symmetry="C4")
    np.testing.assert_allclose(c4["errors_deg"], [10.0, 0.0], atol=1e-3)
    assert c4["median_deg"] == pytest.approx(5.0, abs=1e-3)
    assert c4["fraction_within_15_deg"] == 1.0
    every = orientation_errors(inst, truth, picks)
    assert every["n_matched"] == 3 and every["n_other_class"] == 0
    none = orientation_errors(inst, truth, picks.iloc[[4]])
    assert none["n_matched"] == 0 and none["median_deg"] is None
