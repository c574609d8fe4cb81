"""The learned picker: targets, peak extraction, masks, training and picking end to end on a
small simulated tomogram, and the bad inputs of `cryovis pick` / `cryovis train picker`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.picking import masks  # noqa: E402
from cryoet_integration.picking.peaks import (  # noqa: E402
    PeakSettings,
    find_candidates,
    select,
    suppress_close,
)
from cryoet_integration.picking.targets import (  # noqa: E402
    ball_maps,
    estimate_radius,
    parse_radius_options,
    prepare_particles,
)
from cryoet_integration.simulate import (  # noqa: E402
    SimulationConfig,
    simulate_tomogram,
    write_simulation,
)
from formats import Volume, make_table, read_particles, write_particles, write_volume  # noqa: E402

TINY = json.dumps({"network": {"base_channels": 4, "depth": 2, "deep_supervision": False},
                   "patch_size": [32, 32, 32], "batch_size": 2, "lr": 3e-3, "precision": "fp32",
                   "validate_every": 10, "val_crop": [32, 32, 32], "augment": {}})


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    """Two small simulated tomograms (SHREC-like conditions, fiducials on) with truth."""
    out = tmp_path_factory.mktemp("sim")
    for seed in (3, 4):
        cfg = SimulationConfig(fiducials_per_angst2=400.0 / 1e8, crowding=0.12)
        sim = simulate_tomogram(seed=seed, size_xyz=(96, 96, 48), config=cfg,
                                tomo_name=f"t{seed}")
        write_simulation(sim, out, name=f"t{seed}")
    return out


@pytest.fixture(scope="module")
def tiny_picker(sim_dir, tmp_path_factory):
    """A tiny picker trained for a few steps through the CLI (fast, not good)."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    code = main(["train", "picker", "--tomograms", str(sim_dir / "t3.mrc"),
                 "--particles", str(sim_dir / "t3_particles.csv"), "--val-tomograms",
                 str(sim_dir / "t4.mrc"), "--val-particles", str(sim_dir / "t4_particles.csv"),
                 "--membranes", str(sim_dir / "t3_membranes.mrc"), "--val-membranes",
                 str(sim_dir / "t4_membranes.mrc"), "--radius", "ribosome=100",
                 "--out", str(out), "--max-steps", "20", "--config", TINY, "--no-progress"])
    assert code == 0
    return out


# ------------------------------------------------------------------ targets and peaks

def test_ball_maps_radii_and_nearest_wins():
    xyz = np.array([[10.0, 10.0, 10.0], [15.0, 10.0, 10.0]])
    labels, inst = ball_maps((20, 20, 30), xyz, np.array([1, 2]), np.array([4.0, 4.0]))
    assert labels[10, 10, 6] == 1 and labels[10, 10, 5] == 0  # radius 4 along x
    assert labels[10, 10, 12] == 1 and labels[10, 10, 13] == 2  # overlap: nearer centre
    assert inst[10, 10, 19] == 2 and inst[10, 10, 20] == 0
    assert set(np.unique(inst)) == {0, 1, 2}


def test_prepare_particles_counts_outside_and_single_class():
    table = make_table(np.array([[1.0, 2.0, 3.0], [50.0, 2.0, 3.0], [-3.0, 0.0, 0.0]]),
                       voxel_size=10.0)
    pl = prepare_particles(table, (10, 20, 30), 10.0, "p.csv")
    assert pl.skipped == 2 and len(pl.xyz) == 1
    assert pl.classes == ["particle"]
    assert any("outside" in n for n in pl.notes) and any("no classes" in n for n in pl.notes)
    # a list at 5 Å per voxel lands at half the coordinates of a 10 Å tomogram
    half = prepare_particles(make_table(np.array([[8.0, 8.0, 8.0]]), voxel_size=5.0),
                             (10, 20, 30), 10.0, "q.csv")
    np.testing.assert_allclose(half.xyz, [[4.0, 4.0, 4.0]])


def test_parse_radius_options_rejects_malformed():
    assert parse_radius_options(["ribosome=120", "barrel = 60"]) == {"ribosome": 120.0,
                                                                       "barrel": 60.0}
    for bad in (["ribosome"], ["=4"], ["a=-1"], ["a=x"]):
        with pytest.raises(Exception, match="CLASS=RADIUS"):
            parse_radius_options(bad)


def test_estimate_radius_finds_ball_size():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.3, (48, 64, 64)).astype(np.float32)
    centres = np.array([[16.0, 16.0, 16.0], [44.0, 40.0, 30.0], [20.0, 46.0, 24.0]])
    z, y, x = np.mgrid[:48, :64, :64]
    for c in centres:
        image[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= 36] -= 2.0
    assert 40 <= estimate_radius(image, centres, 10.0) <= 85  # true radius 60 Å


def _blobs(shape, centres, radius, channel, n_channels):
    probs = np.zeros((n_channels,) + shape, np.float32)
    probs[0] = 1.0
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    for c, k in zip(centres, channel):
        p = np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * radius ** 2))
        probs[k] = np.maximum(probs[k], p)
    probs[0] = np.clip(1 - probs[1:].sum(0), 0, 1)
    return probs


def test_peaks_recover_positions_classes_and_drop_gold():
    centres = [(10.0, 12.0, 8.0), (30.0, 30.0, 20.0), (30.0, 10.0, 12.0)]
    probs = _blobs((32, 40, 40), centres, 3.0, [1, 2, 3], 4)
    cands = find_candidates(probs, [1, 2], [1, 2, 3], np.array([4.0, 4.0, 4.0]), sigma=1.0)
    kept = select(cands, PeakSettings(threshold=0.3, min_core=0.2), excluded_classes={2})
    got = sorted((tuple(np.round(cands.xyz[i]).astype(int)), int(cands.class_index[i]))
                 for i in kept)
    # channel 3 (index 2: gold) is dropped; the others keep their class
    assert got == [((10, 12, 8), 0), ((30, 30, 20), 1)]


def test_nms_merges_fragments_of_one_particle():
    # two maxima 3 voxels apart inside one particle of radius 6
    probs = _blobs((24, 32, 32), [(14.0, 16.0, 12.0), (17.0, 16.0, 12.0)], 2.0, [1, 1], 2)
    cands = find_candidates(probs, [1], [1], np.array([6.0]), sigma=0.0)
    assert len(select(cands, PeakSettings(threshold=0.3, min_core=0.0, nms_factor=0.8))) == 1
    assert len(select(cands, PeakSettings(threshold=0.3, min_core=0.0, nms_factor=0.1))) == 2



def test_suppress_close_keeps_the_first_of_each_cluster_with_its_own_radius():
    # given best first: 1 is within 2 of 0; 3 is 3 from 2, inside 2's radius 4 only
    xyz = np.array([[0, 0, 0], [1.5, 0, 0], [10, 0, 0], [13, 0, 0], [30, 0, 0]], float)
    assert suppress_close(xyz, 2.0).tolist() == [0, 2, 3, 4]
    assert suppress_close(xyz, np.array([2.0, 2.0, 4.0, 2.0, 2.0])).tolist() == [0, 2, 4]
    # the order decides which one of a close pair stays
    assert suppress_close(xyz[[1, 0]], 2.0).tolist() == [0]
    assert suppress_close(xyz, 2.0, max_kept=2).tolist() == [0, 2]
    assert suppress_close(np.zeros((0, 3)), 2.0).tolist() == []

# ------------------------------------------------------------------ masks and polarity

def test_polarity_detection_and_gold_mask(sim_dir):
    from cryoet_integration.preprocess import robust_normalize
    from formats import read_volume

    vol = read_volume(sim_dir / "t3.mrc")
    image = robust_normalize(np.asarray(vol.data))
    assert masks.detect_polarity(image) == "dark"
    assert masks.detect_polarity(-image) == "light"
    truth = pd.read_csv(sim_dir / "t3_particles.csv")
    gold = masks.gold_mask(image, float(vol.voxel_size))
    ijk = np.rint(truth[["x", "y", "z"]].to_numpy()).astype(int)
    on_gold = gold[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    is_gold = (truth["class"] == "fiducial").to_numpy()
    assert is_gold.sum() >= 2
    assert on_gold[is_gold].mean() >= 0.9
    assert on_gold[~is_gold].mean() <= 0.2


def test_slab_mask_excludes_empty_slices():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 0.05, (40, 32, 32)).astype(np.float32)
    image[12:28] += rng.normal(0, 1.0, (16, 32, 32)).astype(np.float32)
    out = masks.slab_mask(image, 10.0, margin_angst=0.0)
    assert out[:8].all() and out[33:].all() and not out[14:26].any()
    assert not masks.slab_mask(rng.normal(0, 1, (20, 16, 16)).astype(np.float32), 10.0).any()


# ------------------------------------------------------------------ training and picking

def test_train_picker_card_and_pick_cli(tiny_picker, sim_dir, tmp_path, capsys):
    card = json.loads(tiny_picker.with_suffix(".json").read_text())
    picker = card["picker"]
    assert picker["kind"] == "cryovis-picker"
    assert "membrane" in card["classes"] and "fiducial" in picker["excluded_classes"]
    assert picker["radii_angst"]["ribosome"] == 100.0
    assert set(picker["peaks"]) == {"threshold", "sigma", "min_core", "nms_factor"}
    assert picker["validation"]["n_true"] > 0 and picker["tuned_on"] == ["t4"]
    out = tmp_path / "picks.csv"
    assert main(["pick", str(sim_dir / "t4.mrc"), "--model", str(tiny_picker), "--out",
                 str(out), "--threshold", "0.05", "--max-particles", "30",
                 "--json", str(tmp_path / "summary.json")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    picks = read_particles(out)
    assert len(picks) == summary["n_picks"] <= 30
    assert set(picks["class"]) <= set(picker["particle_classes"])
    assert np.all(np.diff(picks["score"].to_numpy()) <= 0)
    # outputs are never overwritten without --force
    assert main(["pick", str(sim_dir / "t4.mrc"), "--model", str(tiny_picker), "--out",
                 str(out)]) == 2


def test_pick_no_particles_writes_empty_valid_file(tiny_picker, sim_dir, tmp_path, capsys):
    out = tmp_path / "none.star"
    assert main(["pick", str(sim_dir / "t4.mrc"), "--model", str(tiny_picker), "--out",
                 str(out), "--min-score", "2"]) == 0
    assert "no particles found" in capsys.readouterr().err
    assert len(read_particles(out, tomograms=tmp_path / "none_tomograms.star")) == 0


def test_blob_method_and_roi(sim_dir, tmp_path):
    from formats import read_volume

    vol = read_volume(sim_dir / "t3.mrc")
    roi = np.zeros(vol.data.shape, np.int8)
    roi[:, :, :48] = 1
    write_volume(tmp_path / "roi.mrc", Volume(roi, voxel_size=vol.voxel_size))
    out = tmp_path / "blob.csv"
    assert main(["pick", str(sim_dir / "t3.mrc"), "--method", "blob", "--roi",
                 str(tmp_path / "roi.mrc"), "--out", str(out)]) == 0
    picks = read_particles(out)
    assert len(picks) > 0 and (picks["x"] < 48.5).all()


def test_bad_inputs_exit_2_with_one_line(tiny_picker, sim_dir, tmp_path, capsys):
    from cryoet_integration.segmentation.checkpoint import default_model_path

    tomo = str(sim_dir / "t4.mrc")
    # a membrane segmenter is not a picker
    assert main(["pick", tomo, "--model", str(default_model_path()), "--out",
                 str(tmp_path / "a.csv")]) == 2
    assert "not a picker" in capsys.readouterr().err
    # a tomogram too small for the network
    write_volume(tmp_path / "small.mrc", Volume(np.zeros((8, 40, 40), np.float32),
                                                voxel_size=10.0))
    assert main(["pick", str(tmp_path / "small.mrc"), "--model", str(tiny_picker), "--out",
                 str(tmp_path / "b.csv")]) == 2
    err = capsys.readouterr().err
    assert "small.mrc" in err and "at least 16" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.csv").exists()
    # a companion tomograms.star is never overwritten
    (tmp_path / "c_tomograms.star").write_text("data_\n")
    assert main(["pick", tomo, "--model", str(tiny_picker), "--out",
                 str(tmp_path / "c.star")]) == 2
    assert "c_tomograms.star" in capsys.readouterr().err
    assert not (tmp_path / "c.star").exists()
    # joining a project that does not list the tomogram
    sim_star = sim_dir / "tomograms.star"
    if sim_star.exists():
        assert main(["pick", tomo, "--model", str(tiny_picker), "--out",
                     str(tmp_path / "d.star"), "--tomograms", str(sim_star),
                     "--tomo-name", "nope"]) == 2
        assert "nope" in capsys.readouterr().err


def test_train_lists_outside_and_without_classes(sim_dir, tmp_path, capsys):
    truth = pd.read_csv(sim_dir / "t3_particles.csv")
    table = make_table(truth[["x", "y", "z"]].to_numpy(), voxel_size=10.0)
    far = make_table(np.array([[500.0, 500.0, 500.0]]), voxel_size=10.0)
    write_particles(tmp_path / "noclass.csv", pd.concat([table, far], ignore_index=True),
                    format="csv")
    code = main(["train", "picker", "--tomograms", str(sim_dir / "t3.mrc"), "--particles",
                 str(tmp_path / "noclass.csv"), "--val-tomograms", str(sim_dir / "t4.mrc"),
                 "--val-particles", str(sim_dir / "t4_particles.csv"), "--out",
                 str(tmp_path / "m"), "--max-steps", "2", "--config", TINY, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "validation lists hold class(es)" in err
    code = main(["train", "picker", "--tomograms", str(sim_dir / "t3.mrc"), "--particles",
                 str(tmp_path / "noclass.csv"), "--radius", "particle=60", "--out",
                 str(tmp_path / "m"), "--max-steps", "2", "--config", TINY, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    assert "1 of" in err and "outside the tomogram" in err and "one class" in err
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["picker"]["particle_classes"] == ["particle"]


def test_default_recipe_trains_on_random_shapes_and_holds_types_out():
    from cryoet_integration.picking.recipes import (
        HELD_OUT_CLASSES,
        get_recipe,
        simulation_config,
    )
    from cryoet_integration.simulate.shapes import RANDOM_SHAPE

    recipe = get_recipe("default-picker")
    sim = recipe["simulation"]
    assert sim["random_shape_fraction"] > 0 and RANDOM_SHAPE in recipe["radii_angst"]
    assert not set(sim["train_seeds"]) & set(sim["val_seeds"])
    assert not set(HELD_OUT_CLASSES) & set(recipe["radii_angst"])
    cfg = simulation_config(sim["train_seeds"][0], exclude_classes=sim["exclude_classes"],
                            random_shape_fraction=sim["random_shape_fraction"])
    assert cfg.random_shape_fraction == sim["random_shape_fraction"]
    assert all(cfg.class_weights[c] == 0 for c in HELD_OUT_CLASSES)
    assert all(w > 0 for c, w in cfg.class_weights.items() if c not in HELD_OUT_CLASSES)
    only_shapes = simulation_config(43000, only_classes=[], random_shape_fraction=1.0)
    assert not any(only_shapes.class_weights.values())
