"""Strokes -> soft pseudo-labels: features, the forest file, prior correction and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoet_integration.cli import main
from cryoet_integration.pseudolabel import features as feats
from cryoet_integration.pseudolabel.forest import fit_forest, load_forest, save_forest
from cryoet_integration.pseudolabel.priors import estimate_priors, reweight
from formats import Volume, read_volume, write_volume

pytest.importorskip("sklearn")

NAMES = ["background", "membrane", "particle"]


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    """A simulated tomogram, its 3-class truth (1 background, 2 membrane, 3 particles) and
    short strokes covering ~0.1 % of the voxels."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram

    folder = tmp_path_factory.mktemp("painted")
    sim = simulate_tomogram(seed=3, size_xyz=(96, 96, 48), config=SimulationConfig.randomised(3))
    lab = np.asarray(sim.labels.data)
    truth = np.where(lab == 0, 1, np.where(lab == 1, 2, 3)).astype(np.int8)
    rng = np.random.default_rng(0)
    strokes = np.zeros_like(truth)
    for c in (1, 2, 3):
        zz, yy, xx = np.nonzero(truth == c)
        for i in rng.choice(len(zz), 40, replace=False):
            for d in range(-3, 4):
                x = xx[i] + d
                if 0 <= x < truth.shape[2] and truth[zz[i], yy[i], x] == c:
                    strokes[zz[i], yy[i], x] = c
    vs = sim.tomogram.voxel_size
    write_volume(folder / "tomo.mrc", sim.tomogram)
    write_volume(folder / "strokes.mrc", Volume(strokes, voxel_size=vs))
    return folder, truth, strokes


def _f1(hard: np.ndarray, truth: np.ndarray, c: int) -> float:
    tp = np.sum((hard == c) & (truth == c))
    return float(2 * tp / (np.sum(hard == c) + np.sum(truth == c)))


def test_slabs_equal_the_whole_volume_filters():
    img = np.random.default_rng(1).normal(size=(40, 24, 20)).astype(np.float32)
    whole = feats.compute_features(img, (0.7, 2.0))
    # slabs of 2 planes, far thinner than the filters' reach: the halo must make them exact
    parts = np.concatenate([s.features for s in feats.iter_slabs(img, (0.7, 2.0),
                                                                 slab_voxels=2 * 24 * 20)])
    assert parts.shape == whole.shape == (img.size, len(feats.feature_names((0.7, 2.0))))
    np.testing.assert_allclose(parts, whole, atol=2e-5)


def test_closed_form_eigenvalues_match_lapack():
    rng = np.random.default_rng(2)
    comps = [rng.normal(size=5000).astype(np.float32) for _ in range(6)]
    for c in comps:
        c[:5] = 0  # zero matrices: the degenerate case
    zz, zy, zx, yy, yx, xx = comps
    m = np.stack([np.stack([zz, zy, zx], -1), np.stack([zy, yy, yx], -1),
                  np.stack([zx, yx, xx], -1)], -2).astype(np.float64)
    np.testing.assert_allclose(feats._eigvals_sym3(comps), np.linalg.eigvalsh(m), atol=1e-5)


def test_forest_file_predicts_as_scikit_learn_and_refuses_other_files(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 1)
    forest = fit_forest(x, y, np.array([1, 2, 4]), ["a", "b", "c"], [1.0], 8.0,
                        [f"f{i}" for i in range(5)], n_trees=8, seed=0)
    save_forest(tmp_path / "f.npz", forest)
    back = load_forest(tmp_path / "f.npz")
    ref = RandomForestClassifier(n_estimators=8, max_depth=14, min_samples_leaf=3,
                                 max_features="sqrt", random_state=0).fit(x, y)
    test = rng.normal(size=(3000, 5)).astype(np.float32)
    np.testing.assert_allclose(back.predict_proba(test), ref.predict_proba(test), atol=1e-6)
    assert back.names == ["a", "b", "c"] and back.labels.tolist() == [1, 2, 4]
    np.savez(tmp_path / "other.npz", header=np.zeros(3))
    (tmp_path / "text.npz").write_text("hello")
    for bad in ("other.npz", "text.npz", "missing.npz"):
        with pytest.raises(Exception, match=bad):
            load_forest(tmp_path / bad)


def test_em_recovers_priors_of_a_shifted_mix():
    rng = np.random.default_rng(0)
    # two Gaussian classes; a "classifier" trained at 50/50 sees a tomogram that is 90/10
    true = np.r_[rng.normal(-1, 1, 90_000), rng.normal(1, 1, 10_000)]
    like = np.stack([np.exp(-(true + 1) ** 2 / 2), np.exp(-(true - 1) ** 2 / 2)], 1)
    post = like / like.sum(1, keepdims=True)
    priors, _ = estimate_priors(post, np.array([0.5, 0.5]))
    assert priors == pytest.approx([0.9, 0.1], abs=0.01)
    assert reweight(post, np.array([0.5, 0.5]), priors).sum(1) == pytest.approx(1.0, abs=1e-5)


def test_cli_train_apply_and_outputs(painted, tmp_path):
    folder, truth, strokes = painted
    out = tmp_path / "soft.mrc"
    assert main(["pseudolabel", str(folder / "tomo.mrc"), "--labels", str(folder / "strokes.mrc"),
                 "--out", str(out), "--labels-out", str(tmp_path / "hard.mrc"),
                 "--save-classifier", str(tmp_path / "weak.npz"), "--classes", *NAMES,
                 "--threads", "2", "--json", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    maps = [read_volume(tmp_path / f"soft_{n}.mrc") for n in NAMES]
    probs = np.stack([np.asarray(m.data) for m in maps])
    assert probs.sum(0) == pytest.approx(1.0, abs=1e-4)
    hard = np.asarray(read_volume(tmp_path / "hard.mrc").data)
    assert set(np.unique(hard)) <= {1, 2, 3}
    np.testing.assert_array_equal(hard, np.argmax(probs, 0) + 1)
    assert maps[0].voxel_size == pytest.approx(read_volume(folder / "tomo.mrc").voxel_size)
    # the corrected priors are those of the tomogram, not of the strokes' near-equal mix
    true_mix = [float(np.mean(truth == c)) for c in (1, 2, 3)]
    assert summary["priors"] == pytest.approx(true_mix, abs=0.05)
    assert _f1(hard, truth, 1) > 0.85 and _f1(hard, truth, 2) > 0.5
    # the saved classifier gives the same labels on the same tomogram
    assert main(["pseudolabel", str(folder / "tomo.mrc"), "--classifier",
                 str(tmp_path / "weak.npz"), "--out", str(tmp_path / "again.mrc"),
                 "--labels-out", str(tmp_path / "hard2.mrc"), "--priors", "estimate"]) == 0
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "hard2.mrc").data), hard)


def test_prior_correction_helps_the_rare_classes(painted, tmp_path):
    from cryoet_integration.pseudolabel.weak import classify_volume, train_weak_classifier

    folder, truth, strokes = painted
    vol = read_volume(folder / "tomo.mrc")
    forest = train_weak_classifier(vol, strokes, NAMES, n_trees=16, threads=2)
    plain = classify_volume(vol, forest, correct_priors=False).hard_labels()
    fixed = classify_volume(vol, forest, correct_priors=True).hard_labels()
    # strokes over-represent particles (~1/3 of painted voxels, a few % of the tomogram)
    assert np.mean(fixed == 3) < np.mean(plain == 3)
    assert _f1(fixed, truth, 3) >= _f1(plain, truth, 3) - 0.01
    assert _f1(fixed, truth, 1) > _f1(plain, truth, 1)


@pytest.mark.parametrize("case", ["one_class", "no_strokes", "other_shape", "not_ours",
                                  "fractional"])
def test_bad_input_is_one_line_before_work(painted, tmp_path, capsys, case):
    folder, truth, strokes = painted
    tomo = str(folder / "tomo.mrc")
    vs = read_volume(folder / "tomo.mrc").voxel_size
    bad = tmp_path / "bad.mrc"
    args = ["pseudolabel", tomo, "--labels", str(bad), "--out", str(tmp_path / "o.mrc")]
    expect = {"one_class": "one class only", "no_strokes": "no strokes",
              "other_shape": "does not match", "not_ours": "not a cryovis pseudo-label",
              "fractional": "whole numbers"}[case]
    if case == "one_class":
        write_volume(bad, Volume((strokes == 2).astype(np.int8), voxel_size=vs))
    elif case == "no_strokes":
        write_volume(bad, Volume(np.zeros_like(strokes), voxel_size=vs))
    elif case == "other_shape":
        write_volume(bad, Volume(strokes[:, :, :-1].copy(), voxel_size=vs))
    elif case == "fractional":
        write_volume(bad, Volume(strokes.astype(np.float32) * 0.5, voxel_size=vs))
    else:
        np.savez(tmp_path / "x.npz", weights=np.zeros(4))
        args = ["pseudolabel", tomo, "--classifier", str(tmp_path / "x.npz"), "--out",
                str(tmp_path / "o.mrc")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expect in err, err
    assert not list(tmp_path.glob("o*.mrc"))
