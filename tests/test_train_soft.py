"""The strong classifier: training on K soft maps (cryovis pseudolabel's output), regression
for 2 classes, cross-entropy for 3, 2-class -> 3-class transfer, and segment's K-class output
numbered as the strokes were."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.segmentation.checkpoint import load_model  # noqa: E402
from cryoet_integration.segmentation.classmaps import (  # noqa: E402
    class_map_paths,
    find_class_maps,
    write_manifest,
)
from cryoet_integration.segmentation.data import load_pair  # noqa: E402
from cryoet_integration.segmentation.train import train_segmenter  # noqa: E402
from formats import Volume, read_volume, write_volume  # noqa: E402

CONFIG = json.dumps({"network": {"base_channels": 4, "depth": 2, "deep_supervision": False},
                     "patch_size": [16, 16, 16], "batch_size": 2, "lr": 1e-2,
                     "precision": "fp32", "augment": {"rotate": {"p": 0}}})
VS = 10.0


def _scene(folder, seed: int, names: list[str], values: list[int] | None = None):
    """A dark shell (membrane) and bright blobs (particles) in noise; soft maps for ``names``
    (the first is background) written as a pseudo-label family with its manifest."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:24, :32, :32]
    r = np.sqrt((z - 12) ** 2 + (y - 16) ** 2 + (x - 15) ** 2)
    membrane = np.abs(r - 9) < 1.5
    particle = ((z - 12) ** 2 + (y - 5) ** 2 + (x - 26) ** 2) < 9
    image = (-2.0 * membrane + 2.0 * particle + rng.normal(0, 0.6, r.shape)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    tomo = folder / f"tomo{seed}.mrc"
    write_volume(tomo, Volume(image, voxel_size=VS))
    fg = [membrane, particle][: len(names) - 1]
    maps = [~np.any(fg, axis=0)] + fg
    soft = np.stack([0.1 + 0.8 * m for m in maps]).astype(np.float32)
    soft /= soft.sum(0)
    out = folder / f"soft{seed}.mrc"
    for k, path in enumerate(class_map_paths(out, names).values()):
        write_volume(path, Volume(soft[k], voxel_size=VS))
    write_manifest(out, names, values or list(range(1, len(names) + 1)))
    return tomo, out


def _train(tomo, soft, model, *extra) -> int:
    return main(["train", "segmenter", "--tomograms", str(tomo), "--pseudolabels", str(soft),
                 "--out", str(model), "--max-steps", "4", "--no-progress", "--threads", "1",
                 "--config", CONFIG, *extra])


def test_three_class_soft_maps_train_with_cross_entropy_and_segment_as_painted(tmp_path):
    names = ["background", "membrane", "particle"]
    tomo, soft = _scene(tmp_path, 0, names, values=[1, 2, 4])
    model = tmp_path / "net3"
    assert _train(tomo, soft, model) == 0
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["classes"] == names and card["label_values"] == [1, 2, 4]
    assert card["output"] == "softmax" and card["loss"] == {"ce": 1.0}
    assert card["network"]["out_channels"] == 3
    assert np.isclose(sum(card["train_priors"]), 1.0)
    out = tmp_path / "seg" / "s.mrc"
    assert main(["segment", str(tomo), "--model", str(model), "--out", str(out),
                 "--labels-out", str(tmp_path / "lab.mrc"), "--threads", "1"]) == 0
    family = find_class_maps(out)
    assert family.names == names and family.values == [1, 2, 4]
    probs = np.stack([np.asarray(read_volume(p).data) for p in family.paths])
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    labels = np.asarray(read_volume(tmp_path / "lab.mrc").data)
    assert set(np.unique(labels)) <= {1, 2, 4}
    np.testing.assert_array_equal(labels, np.array([1, 2, 4])[np.argmax(probs, 0)])
    # the weak classifier's prior rule, on the network's posteriors
    assert main(["segment", str(tomo), "--model", str(model), "--out", str(tmp_path / "e.mrc"),
                 "--priors", "estimate", "--threads", "1", "--json",
                 str(tmp_path / "e.json")]) == 0
    assert np.isclose(sum(json.loads((tmp_path / "e.json").read_text())["priors"]), 1.0)


def test_two_class_regression_and_transfer_to_three_classes(tmp_path):
    tomo2, soft2 = _scene(tmp_path, 1, ["background", "membrane"])
    base = tmp_path / "net2"
    assert _train(tomo2, soft2, base) == 0
    card = json.loads(base.with_suffix(".json").read_text())
    assert card["output"] == "regression" and card["loss"] == {"regression": 1.0}
    assert card["network"]["out_channels"] == 1
    out = tmp_path / "r.mrc"
    # fp32 on every CPU: the comparison below is with the float32 raw output (a CPU with
    # native bf16 would otherwise segment in bf16 by default)
    assert main(["segment", str(tomo2), "--model", str(base), "--out", str(out),
                 "--threads", "1", "--precision", "fp32"]) == 0
    maps = [np.asarray(read_volume(p).data) for p in find_class_maps(out).paths]
    np.testing.assert_allclose(maps[0] + maps[1], 1.0, atol=1e-6)
    # within float rounding of the tile blending
    assert min(m.min() for m in maps) >= -1e-6 and max(m.max() for m in maps) <= 1 + 1e-6
    # the raw output clipped to [0, 1] is the second class's probability
    net, _ = load_model(base)
    from cryoet_integration.preprocess import robust_normalize
    from cryoet_integration.segmentation.inference import predict_probabilities

    image = robust_normalize(np.asarray(read_volume(tomo2).data))
    np.testing.assert_allclose(predict_probabilities(net, image, output="regression")[1],
                               maps[1], atol=1e-5)

    tomo3, soft3 = _scene(tmp_path, 2, ["background", "membrane", "particle"])
    family = find_class_maps(soft3)
    config = {**json.loads(CONFIG), "classes": family.names, "label_values": family.values,
              "soft_target": "ce", "loss": {"ce": 1.0}, "voxel_size": VS}
    vol = load_pair(tomo3, family, VS, (16, 16, 16), soft_target="ce")
    moved = tmp_path / "net3"
    # no optimisation step: the saved model holds exactly the transferred weights
    train_segmenter([vol], [], moved, config, init_from=base, session_steps=0,
                    progress=False, threads=1)
    old, _ = load_model(base)
    new, new_card = load_model(moved)
    assert new_card["training"]["transferred_from"]["output_heads"] == "replaced"
    for key, value in old.state_dict().items():
        if key.startswith("heads."):
            assert new.state_dict()[key].shape[0] == 3
        else:
            torch.testing.assert_close(new.state_dict()[key], value)
    # and from the command line, training on
    assert _train(tomo3, soft3, tmp_path / "cli3", "--from", str(base)) == 0
    card = json.loads((tmp_path / "cli3.json").read_text())
    assert card["training"]["transferred_from"]["classes"] == ["background", "membrane"]


def test_bad_pseudolabel_inputs_fail_before_training(tmp_path, capsys):
    tomo, soft = _scene(tmp_path / "a", 3, ["background", "membrane", "particle"])
    tomo_b, soft_b = _scene(tmp_path / "b", 4, ["background", "membrane"])
    out = tmp_path / "m"
    assert main(["train", "segmenter", "--tomograms", str(tomo), str(tomo_b),
                 "--pseudolabels", str(soft), str(soft_b), "--out", str(out),
                 "--config", CONFIG]) == 2
    assert "differ" in capsys.readouterr().err
    # a class map of another shape
    bad = find_class_maps(soft).paths[1]
    write_volume(bad, Volume(np.zeros((8, 8, 8), np.float32), voxel_size=VS), overwrite=True)
    assert _train(tomo, soft, out) == 2
    assert "shape" in capsys.readouterr().err
    # --from a model that works at another voxel size
    base = tmp_path / "base"
    assert _train(tomo_b, soft_b, base, "--voxel-size", "10") == 0
    assert _train(tomo_b, soft_b, out, "--from", str(base), "--voxel-size", "20") == 2
    assert "voxel" in capsys.readouterr().err
    wider = json.dumps({**json.loads(CONFIG), "network": {"base_channels": 6, "depth": 2,
                                                          "deep_supervision": False}})
    assert main(["train", "segmenter", "--tomograms", str(tomo_b), "--pseudolabels",
                 str(soft_b), "--out", str(out), "--from", str(base), "--config", wider]) == 2
    assert "base_channels" in capsys.readouterr().err
    assert not out.with_suffix(".pt").exists()


def test_chunks_cover_each_volume_once_per_epoch_and_resume_exactly(tmp_path):
    from cryoet_integration.segmentation.data import ChunkSampler, TrainVolume, chunk_grid

    starts = chunk_grid((40, 50, 30), (16, 16, 16), (4, 4, 4))
    for axis, n in enumerate((40, 50, 30)):
        edges = sorted({s[axis] for s in starts})
        assert edges[0] == 0 and edges[-1] + 16 == n
        assert all(b - a <= 12 for a, b in zip(edges, edges[1:]))  # >= 4 voxels overlap
    vols = [TrainVolume(f"v{i}", np.arange(n ** 3, dtype=np.float32).reshape((n,) * 3),
                        np.zeros((n,) * 3, np.int8), np.zeros(0, np.int64))
            for i, n in enumerate((24, 40))]

    def sampler(drawn=0, rng_seed=5):
        return ChunkSampler(vols, (8, 8, 8), (16, 16, 16), (4, 4, 4),
                            np.random.default_rng(rng_seed), seed=3, drawn=drawn)

    first = sampler()
    n = len(first.chunks)
    assert n == 8 + 27  # 2^3 chunks of the 24-voxel volume, 3^3 of the 40-voxel one
    tiles = [first.sample()[0] for _ in range(n)]
    # every chunk once in the epoch: each tile lies in the chunk its position says
    order = first._order(0)
    for tile, c in zip(tiles, order):
        i, start, size = first.chunks[c]
        corner = np.unravel_index(int(tile[0, 0, 0]), vols[i].image.shape)
        assert all(s <= q <= s + z - 8 for q, s, z in zip(corner, start, size))
    # resuming after k tiles with the saved generator gives the same next tiles
    a = sampler()
    for _ in range(5):
        a.sample()
    state = a.rng.bit_generator.state
    b = sampler(drawn=5)
    b.rng.bit_generator.state = state
    for _ in range(n):
        np.testing.assert_array_equal(a.sample()[0], b.sample()[0])

    tomo, soft = _scene(tmp_path, 5, ["background", "membrane", "particle"])
    model = tmp_path / "chunked"
    extra = json.dumps({**json.loads(CONFIG), "chunk_size": [16, 24, 24],
                        "normalisation": "minmax"})
    assert main(["train", "segmenter", "--tomograms", str(tomo), "--pseudolabels", str(soft),
                 "--out", str(model), "--max-steps", "2", "--no-progress", "--threads", "1",
                 "--config", extra]) == 0
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["normalise"] == "minmax" and card["training"]["config"]["chunk_size"]
