"""The DSM-Net-style subtomogram classifier: rotation convention of its targets, metrics,
a short real training run on a small simulated tomogram, `cryovis classify` round trip
(picks, masks, densities, features) and its bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.simulate import (  # noqa: E402
    SimulationConfig,
    simulate_tomogram,
    write_simulation,
)
from cryoet_integration.subtomograms.classifier.targets import (  # noqa: E402
    average_masks,
    class_averages,
    rotate_box,
)
from cryoet_integration.subtomograms.classifier.training import score_predictions  # noqa: E402
from formats import make_table, read_particles, write_particles  # noqa: E402

TINY = json.dumps({"box": 16, "margin": 2, "voxel_size": 15.0, "batch_size": 2,
                   "validate_every": 2, "network": {"widths": [4, 8], "hidden": 8}})


def _rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_rotate_box_follows_the_reference_to_tomogram_convention():
    # A feature at reference x = +5 of a particle turned 90 degrees about z (R maps the
    # reference into the tomogram) lies at tomogram y = +5: array index [c, c + 5, c].
    n, c = 17, 8
    ref = np.zeros((n, n, n), np.float32)
    ref[c, c, c + 5] = 1.0
    tomo = rotate_box(ref, _rot_z(90).T)
    assert np.unravel_index(np.argmax(tomo), tomo.shape) == (c, c + 5, c)
    # and the particle frame of that tomogram box is the reference again
    back = rotate_box(tomo, _rot_z(90))
    assert np.unravel_index(np.argmax(back), back.shape) == (c, c, c + 5)


def test_class_average_under_true_orientations_recovers_the_structure():
    rng = np.random.default_rng(0)
    n, c = 17, 8
    ref = np.zeros((n, n, n), np.float32)
    ref[c - 1:c + 2, c - 1:c + 2, c - 1:c + 6] = 1.0  # an arm along +x
    from scipy.spatial.transform import Rotation

    rots = Rotation.random(40, random_state=0).as_matrix()
    boxes = np.stack([-rotate_box(ref, r.T) + rng.normal(0, 0.5, ref.shape) for r in rots])
    labels = np.zeros(len(boxes), int)
    aligned = class_averages(boxes.astype(np.float32), labels, 1, rots)[0]
    wrong = class_averages(boxes.astype(np.float32), labels, 1, rots.transpose(0, 2, 1))[0]

    def cc(a):
        return np.corrcoef(a.ravel(), ref.ravel())[0, 1]

    assert cc(aligned) > 0.8 and cc(aligned) > cc(wrong) + 0.1
    # the arm is only where the true orientations put it; transposed ones smear it away
    assert aligned[c, c, c + 4] > 0.5 > 0.25 > wrong[c, c, c + 4]
    mask = average_masks(aligned[None])[0]
    assert mask[c, c, c + 4] and not mask[c, c, c - 5]


def test_scores_of_perfect_and_wrong_predictions():
    rng = np.random.default_rng(1)
    masks = rng.random((6, 8, 8, 8)) > 0.7
    dens = rng.normal(size=(6, 8, 8, 8)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[labels]
    good = score_predictions({"probabilities": probs, "masks": masks, "densities": dens},
                             labels, masks, dens, 3)
    assert good["object_accuracy"] == 1.0 and good["mIoU"] == 1.0
    assert good["pixel_accuracy"] == 1.0 and good["density_cc"] == pytest.approx(1.0)
    bad = score_predictions({"probabilities": np.eye(3)[(labels + 1) % 3], "masks": ~masks,
                             "densities": -dens}, labels, masks, dens, 3)
    assert bad["object_accuracy"] == 0.0 and bad["class_mean_accuracy"] == 0.0
    assert bad["mIoU"] == 0.0 and bad["density_cc"] == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    """One small simulated tomogram with its truth (particle table, instance map)."""
    out = tmp_path_factory.mktemp("sim")
    sim = simulate_tomogram(seed=3, size_xyz=(96, 96, 48),
                            config=SimulationConfig(crowding=0.12), tomo_name="t3")
    write_simulation(sim, out, name="t3")
    return out


@pytest.fixture(scope="module")
def tiny_model(sim_dir, tmp_path_factory):
    """A tiny classifier trained for a few real steps through the CLI (fast, not good)."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    tomo, parts = str(sim_dir / "t3.mrc"), str(sim_dir / "t3_particles.csv")
    code = main(["train", "classifier", "--tomograms", tomo, "--particles", parts,
                 "--instances", str(sim_dir / "t3_instances.mrc"), "--val-tomograms", tomo,
                 "--val-particles", parts, "--out", str(out), "--max-steps", "4",
                 "--config", TINY, "--threads", "1"])
    assert code == 0
    return out


def test_training_writes_card_and_resumes(tiny_model, sim_dir, tmp_path):
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    truth = pd.read_csv(sim_dir / "t3_particles.csv")
    assert card["classes"] == sorted(truth["class"].unique())
    section = card["classifier"]
    assert section["kind"] == "cryovis-classifier" and section["box"] == 16
    assert section["loss_weights"] == {"class": 1.0, "mask": 10.0, "density": 1.0}
    val = section["validation"]
    assert 0.0 <= val["object_accuracy"] <= 1.0 and 0.0 <= val["mIoU"] <= 1.0
    assert card["training"]["steps_run"] == 4
    # --resume continues the same run to more steps
    copy = tmp_path / "tiny"
    for suffix in (".pt", ".json", ".state.pt"):
        shutil.copy(str(tiny_model) + suffix, str(copy) + suffix)
    tomo, parts = str(sim_dir / "t3.mrc"), str(sim_dir / "t3_particles.csv")
    assert main(["train", "classifier", "--tomograms", tomo, "--particles", parts,
                 "--out", str(copy), "--max-steps", "6", "--config", TINY, "--resume",
                 "--threads", "1"]) == 0
    assert json.loads(copy.with_suffix(".json").read_text())["training"]["steps_run"] == 6


def test_classify_round_trip_with_masks_densities_and_features(tiny_model, sim_dir, tmp_path):
    from formats import read_volume

    tomo, parts = str(sim_dir / "t3.mrc"), sim_dir / "t3_particles.csv"
    truth = pd.read_csv(parts)
    out = tmp_path / "classified.star"
    feats = tmp_path / "features.csv"
    assert main(["classify", tomo, str(parts), "--model", str(tiny_model), "--out", str(out),
                 "--masks-out", str(tmp_path / "masks"), "--density-out",
                 str(tmp_path / "dens"), "--features-out", str(feats), "--threads", "1"]) == 0
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    got = read_particles(out, tomograms=tmp_path / "classified_tomograms.star")
    assert len(got) == len(truth)
    assert set(got["class"]) <= set(card["classes"])
    np.testing.assert_allclose(got[["x", "y", "z"]].to_numpy(),
                               truth[["x", "y", "z"]].to_numpy(), atol=1e-3)
    prob = got["rlnMaxValueProbDistribution"].to_numpy(float)
    assert np.all(prob >= 1 / len(card["classes"]) - 1e-6) and np.all(prob <= 1)
    masks = sorted((tmp_path / "masks").glob("*.mrc"))
    dens = sorted((tmp_path / "dens").glob("*.mrc"))
    assert len(masks) == len(dens) == len(truth)
    m = read_volume(masks[0])
    assert m.data.shape == (16, 16, 16) and m.voxel_size == pytest.approx(15.0)
    assert set(np.unique(m.data)) <= {0, 1}
    table = pd.read_csv(feats)
    assert len(table) == len(truth) and f"f{card['network']['hidden'] - 1}" in table
    assert (tmp_path / "features_features.png").stat().st_size > 1000
    # classes come back in CSV too, with the probability column under its own name
    csv_out = tmp_path / "classified.csv"
    assert main(["classify", tomo, str(parts), "--model", str(tiny_model), "--out",
                 str(csv_out), "--threads", "1"]) == 0
    got = pd.read_csv(csv_out)
    assert "class_probability" in got and list(got["picked_class"]) == list(truth["class"])


def test_bad_inputs_exit_2_before_work(tiny_model, sim_dir, tmp_path, capsys):
    from cryoet_integration.picking.learned import default_picker_path

    tomo, parts = str(sim_dir / "t3.mrc"), str(sim_dir / "t3_particles.csv")
    out = tmp_path / "o.csv"

    def run(*args):
        code = main(["classify", *args, "--out", str(out), "--threads", "1"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
        return err

    assert "not found" in run(tomo, parts, "--model", str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    shutil.copy(tiny_model.with_suffix(".json"), broken.with_suffix(".json"))
    broken.with_suffix(".pt").write_bytes(b"not a torch file")
    assert "broken.pt" in run(tomo, parts, "--model", str(broken))
    assert "not a subtomogram classifier" in run(tomo, parts, "--model",
                                                 str(default_picker_path()))
    table = read_particles(parts)
    xyz = table[["x", "y", "z"]].to_numpy()
    vs = float(table["voxel_size"].iloc[0])
    far = xyz.copy()
    far[0, 0] = 500.0
    write_particles(tmp_path / "far.csv", make_table(far, voxel_size=vs,
                                                     classes=list(table["class"])), format="csv")
    assert "outside the tomogram" in run(tomo, str(tmp_path / "far.csv"), "--model",
                                         str(tiny_model))
    # picks listed at another voxel size are physical positions: rescaled, not refused
    write_particles(tmp_path / "other.csv", make_table(xyz / 2, voxel_size=2 * vs),
                    format="csv")
    assert main(["classify", tomo, str(tmp_path / "other.csv"), "--model", str(tiny_model),
                 "--out", str(out), "--threads", "1"]) == 0
    assert np.allclose(read_particles(out)[["x", "y", "z"]].to_numpy(), xyz, atol=1e-3)
