"""Training: loss goes down, checkpoints round-trip, resume continues exactly, CLI, recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.segmentation.checkpoint import (  # noqa: E402
    load_model,
    load_training_state,
    save_model,
)
from cryoet_integration.segmentation.data import (  # noqa: E402
    PatchSampler,
    load_pair,
    pseudolabels_to_labels,
)
from cryoet_integration.segmentation.networks import build_network  # noqa: E402
from cryoet_integration.segmentation.recipes import get_recipe  # noqa: E402
from cryoet_integration.segmentation.train import resolve_config, train_segmenter  # noqa: E402
from formats import Volume, write_volume  # noqa: E402

TINY = {"network": {"base_channels": 4, "depth": 2, "deep_supervision": True},
        "patch_size": [16, 16, 16], "batch_size": 2, "lr": 1e-2, "precision": "fp32",
        "validate_every": 5, "val_crop": [16, 32, 32], "augment": {"rotate": {"p": 0}}}


def _membrane_pair(tmp_path, seed: int, voxel_size: float = 10.0):
    """A dark shell and a dark slab in noise, with their label map, as MRC files."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:32, :40, :40]
    r = np.sqrt((z - 16) ** 2 + (y - 20) ** 2 + (x - 18) ** 2)
    label = ((np.abs(r - 11) < 1.5) | (np.abs(z - 4) < 1.5)).astype(np.int8)
    image = (-2.0 * label + rng.normal(0, 0.7, label.shape)).astype(np.float32)
    t, lab = tmp_path / f"t{seed}.mrc", tmp_path / f"l{seed}.mrc"
    write_volume(t, Volume(image, voxel_size=voxel_size))
    write_volume(lab, Volume(label, voxel_size=voxel_size))
    return t, lab


def _volumes(tmp_path):
    cfg = resolve_config(TINY)
    pairs = [_membrane_pair(tmp_path, s) for s in (0, 1)]
    return [load_pair(t, lab, cfg["voxel_size"], (16, 16, 16)) for t, lab in pairs]


def test_tiny_training_reduces_loss_and_writes_outputs(tmp_path):
    train, val = _volumes(tmp_path)
    out = tmp_path / "model"
    summary = train_segmenter([train], [val], out, {**TINY, "max_steps": 40}, progress=False)
    assert summary["steps"] == 40 and summary["best_val_dice"] > 0
    loss = json.loads(load_training_state(out)["history"])["loss"]
    assert np.mean(loss[-8:]) < 0.8 * np.mean(loss[:8])
    for name in ("model.pt", "model.json", "model.state.pt", "model_loss.png"):
        assert (tmp_path / name).stat().st_size > 0
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["classes"] == ["membrane"] and card["voxel_size"] == 10.0
    assert card["training"]["cpu_hours"] > 0 and card["network"]["base_channels"] == 4


def test_checkpoint_round_trip_weights_only(tmp_path):
    net = build_network({"base_channels": 4, "depth": 2}).eval()
    save_model(tmp_path / "m.pt", net, {"classes": ["a", "b"], "voxel_size": 12.0})
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(state) == set(net.state_dict())
    loaded, card = load_model(tmp_path / "m")
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert card["classes"] == ["a", "b"] and card["network"] == net.config
    with pytest.raises(Exception, match="exists"):
        save_model(tmp_path / "m.pt", net, {"classes": ["a"], "voxel_size": 12.0})


def test_resume_continues_exactly(tmp_path):
    train, val = _volumes(tmp_path)
    cfg = {**TINY, "max_steps": 8}
    straight = train_segmenter([train], [val], tmp_path / "a", cfg, progress=False)
    first = train_segmenter([train], [val], tmp_path / "b", cfg, progress=False,
                            session_steps=5)
    assert first["steps"] == 5 and first["stop"] == "session steps"
    with pytest.raises(FileExistsError):
        train_segmenter([train], [val], tmp_path / "b", cfg, progress=False)
    resumed = train_segmenter([train], [val], tmp_path / "b", cfg, progress=False, resume=True)
    assert resumed["steps"] == straight["steps"] == 8
    a, b = load_training_state(tmp_path / "a"), load_training_state(tmp_path / "b")
    assert json.loads(a["history"])["loss"] == pytest.approx(json.loads(b["history"])["loss"],
                                                              rel=1e-5)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key])


def test_patch_sampler_and_pseudolabels(tmp_path):
    train, _ = _volumes(tmp_path)
    sampler = PatchSampler([train], (16, 16, 16), 1.0, np.random.default_rng(0))
    hits = [int((sampler.sample()[1] > 0).any()) for _ in range(10)]
    assert sum(hits) == 10
    soft = np.array([0.0, 0.29, 0.5, 0.71, 1.0])
    assert pseudolabels_to_labels(soft).tolist() == [0, 0, -1, 1, 1]


def test_labels_rescaled_with_tomogram(tmp_path):
    t, lab = _membrane_pair(tmp_path, 3, voxel_size=5.0)
    vol = load_pair(t, lab, 10.0, (16, 16, 16))
    assert vol.image.shape == (16, 20, 20) and vol.label.shape == (16, 20, 20)
    assert 0 < (vol.label == 1).mean() < 0.5


def test_cli_train_and_resume(tmp_path, capsys):
    t, lab = _membrane_pair(tmp_path, 4)
    out = tmp_path / "cli_model"
    args = ["train", "segmenter", "--tomograms", str(t), "--labels", str(lab),
            "--out", str(out), "--max-steps", "3", "--no-progress",
            "--config", json.dumps({k: TINY[k] for k in ("network", "patch_size")})]
    assert main(args + ["--json", str(tmp_path / "r1.json")]) == 0
    assert json.loads((tmp_path / "r1.json").read_text())["steps"] == 3
    assert main(args) == 2  # exists: needs --resume or --force
    assert "exists" in capsys.readouterr().err
    resume = [a if a != "3" else "5" for a in args] + ["--resume"]
    assert main(resume + ["--json", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["steps"] == 5
    bad = tmp_path / "bad.mrc"
    write_volume(bad, Volume(np.zeros((8, 8, 8), np.int8), voxel_size=10.0))
    assert main(["train", "segmenter", "--tomograms", str(t), "--labels", str(bad),
                 "--out", str(tmp_path / "x"), "--max-steps", "1"]) == 2
    assert "shape" in capsys.readouterr().err



@pytest.mark.parametrize("kind", ["segmenter", "picker", "classifier"])
@pytest.mark.parametrize("budget", [["--max-steps", "0"], ["--minutes", "0"]])
def test_train_refuses_a_budget_that_cannot_train(kind, budget, tmp_path, capsys):
    """Every train kind shares one budget parser: zero steps or minutes is bad input (it
    was silently taken as 'not given' and trained the default number of steps)."""
    t = tmp_path / "t.mrc"
    write_volume(t, Volume(np.zeros((8, 8, 8), np.float32), voxel_size=10.0))
    data = ["--labels", str(t)] if kind == "segmenter" else ["--particles", str(tmp_path / "p.csv")]
    assert main(["train", kind, "--tomograms", str(t), *data, "--out",
                 str(tmp_path / "m"), *budget]) == 2
    err = capsys.readouterr().err.strip()
    assert budget[0] in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("m*"))


def test_default_membrane_recipe_is_consistent():
    recipe = get_recipe("default-membrane")
    cfg = resolve_config(recipe)
    assert cfg["network"]["out_channels"] == 1 and cfg["classes"] == ["membrane"]
    assert not set(recipe["simulation"]["train_seeds"]) & set(recipe["simulation"]["val_seeds"])
    assert min(recipe["simulation"]["train_seeds"]) > 0
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")


def test_validation_crop_finds_sparse_labels():
    from cryoet_integration.segmentation.data import TrainVolume
    from cryoet_integration.segmentation.train import _validation_crop

    label = np.zeros((32, 64, 64), np.int8)
    label[20:24, 50:60, 4:10] = 1
    vol = TrainVolume("v", np.zeros(label.shape, np.float32), label, np.flatnonzero(label))
    image, lab = _validation_crop(vol, [16, 32, 32], (8, 8, 8))
    assert image.shape == (16, 32, 32) and lab.sum() == label.sum()


def test_recipe_runs_minutes_long_and_resumes(tmp_path, capsys):
    """The default-membrane recipe end to end, shrunk: 1 small simulated tomogram each for
    training and validation, a few steps, then --resume (CI's version of the recipe)."""
    cache, out = tmp_path / "cache", tmp_path / "recipe_model"
    args = ["train", "segmenter", "--recipe", "default-membrane", "--n-train", "1",
            "--n-val", "1", "--sim-size", "128x128x64", "--cache", str(cache),
            "--out", str(out), "--max-steps", "4", "--no-progress"]
    assert main(args + ["--json", str(tmp_path / "r1.json")]) == 0
    assert json.loads((tmp_path / "r1.json").read_text())["steps"] == 4
    assert sorted(p.name for p in cache.glob("*.json")) == ["train_10000.json",
                                                            "val_10500.json"]
    resume = [a if a != "4" else "6" for a in args] + ["--resume"]
    assert main(resume + ["--json", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["steps"] == 6
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["recipe"] == "default-membrane"
    assert card["training"]["config"]["loss"] == get_recipe("default-membrane")["loss"]
    net, _ = load_model(out)
    assert sum(p.numel() for p in net.parameters()) > 1e6
    # the cache holds 128x128x64 tomograms: the full-size recipe must not reuse them
    assert main(["train", "segmenter", "--recipe", "default-membrane", "--n-train", "1",
                 "--n-val", "1", "--cache", str(cache), "--out", str(tmp_path / "other"),
                 "--max-steps", "1", "--no-progress"]) == 2
    assert "use another cache directory" in capsys.readouterr().err


def test_batch_stream_order_state_and_errors():
    from cryoet_integration.segmentation.data import BatchStream

    def stream(depth):
        rng = np.random.default_rng(5)
        return BatchStream(lambda: rng.integers(0, 1000, 3),
                           lambda: rng.bit_generator.state["state"]["state"], depth=depth)

    inline, ahead = stream(0), stream(2)
    start = inline.state()
    assert ahead.state() == start
    for _ in range(4):
        assert inline.next().tolist() == ahead.next().tolist()
        # the state is that after the batch handed out, not after those made ahead
        assert ahead.state() == inline.state() != start
    ahead.close()

    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("augmentation failed")
        return len(calls)

    broken = BatchStream(failing, lambda: None, depth=2)
    assert broken.next() == 1
    with pytest.raises(RuntimeError, match="augmentation failed"):
        broken.next()
    broken.close()


def test_prefetched_batches_train_like_inline_ones(tmp_path):
    train, val = _volumes(tmp_path)
    runs = {}
    for depth in (0, 2):
        out = tmp_path / f"d{depth}"
        train_segmenter([train], [], out, {**TINY, "max_steps": 4, "prefetch_batches": depth},
                        progress=False)
        runs[depth] = json.loads(load_training_state(out)["history"])["loss"]
    assert runs[0] == pytest.approx(runs[2], rel=1e-5)
