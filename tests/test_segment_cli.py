"""``cryovis segment``: the shipped model end to end, K-class naming, masks, bad input."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.segmentation.checkpoint import (  # noqa: E402
    default_model_path,
    read_card,
    save_model,
)
from cryoet_integration.segmentation.networks import build_network  # noqa: E402
from formats.volume import Volume, read_volume, write_volume  # noqa: E402


def _tomogram(path, shape=(24, 40, 36), voxel_size=13.7, origin=(10.0, 20.0, 30.0)):
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    data[10:13] -= 2.0  # a dark slab, like a membrane in the x-y plane
    write_volume(path, Volume(data, voxel_size=voxel_size, origin=origin))
    return path


def test_shipped_model_card_is_complete():
    card = read_card(default_model_path())
    assert card["classes"] == ["membrane"] and card["voxel_size"] > 0
    assert default_model_path().stat().st_size < 20 * 2**20
    for key in ("recipe", "cpu_hours", "steps", "data"):
        assert key in card["training"], key


def test_segment_default_model_writes_probability_map(tmp_path, capsys):
    tomo = _tomogram(tmp_path / "tomo.mrc")
    out = tmp_path / "membranes.mrc"
    assert main(["segment", str(tomo), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rescaled"] is True
    with mrcfile.open(out) as m:
        assert m.data.shape == (24, 40, 36) and m.data.dtype == np.float32
        assert float(m.voxel_size.x) == pytest.approx(13.7, abs=1e-3)
        assert 0.0 <= float(m.data.min()) and float(m.data.max()) <= 1.0
    vol = read_volume(out)
    assert vol.origin == pytest.approx((10.0, 20.0, 30.0))
    # Existing output is not replaced without --force.
    before = out.read_bytes()
    assert main(["segment", str(tomo), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    mask = tmp_path / "mask.mrc"
    assert main(["segment", str(tomo), "--out", str(mask), "--threshold", "0.5",
                 "--labels-out", str(tmp_path / "lab.mrc")]) == 0
    m = read_volume(mask).data
    assert set(np.unique(m).tolist()) <= {0, 1}
    np.testing.assert_array_equal(m, read_volume(tmp_path / "lab.mrc").data)


def test_k_class_model_writes_one_map_per_class(tmp_path, capsys):
    net = build_network({"base_channels": 4, "depth": 2, "out_channels": 3})
    save_model(tmp_path / "two", net, {"classes": ["ribosome", "membrane"], "voxel_size": 10.0})
    tomo = _tomogram(tmp_path / "t.mrc", voxel_size=10.0)
    assert main(["segment", str(tomo), "--model", str(tmp_path / "two.pt"),
                 "--out", str(tmp_path / "seg.mrc"),
                 "--labels-out", str(tmp_path / "labels.mrc"), "--tile", "16",
                 "--overlap", "4"]) == 0
    capsys.readouterr()
    assert not (tmp_path / "seg.mrc").exists()
    a = read_volume(tmp_path / "seg_ribosome.mrc").data
    b = read_volume(tmp_path / "seg_membrane.mrc").data
    labels = read_volume(tmp_path / "labels.mrc").data
    assert a.shape == b.shape == labels.shape == (24, 40, 36)
    assert np.all(a + b <= 1.0 + 1e-5) and set(np.unique(labels).tolist()) <= {0, 1, 2}
    # argmax over background, class 1, class 2
    bg = 1.0 - a - b
    expected = np.argmax(np.stack([bg, a, b]), axis=0)
    assert (labels == expected).mean() > 0.99


def test_bad_inputs_one_line_errors(tmp_path, capsys):
    flat = tmp_path / "flat.mrc"
    write_volume(flat, Volume(np.zeros((1, 32, 32), np.float32), voxel_size=10.0))
    assert main(["segment", str(flat), "--out", str(tmp_path / "o.mrc")]) == 2
    assert "3D tomogram" in capsys.readouterr().err
    nan = tmp_path / "nan.mrc"
    data = np.zeros((8, 8, 8), np.float32)
    data[0, 0, 0] = np.nan
    write_volume(nan, Volume(data, voxel_size=10.0))
    assert main(["segment", str(nan), "--out", str(tmp_path / "o.mrc")]) == 2
    assert "NaN" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    (tmp_path / "wrong.json").write_text(json.dumps(
        {"format": "cryovis-segmenter", "version": 1, "classes": ["membrane"],
         "voxel_size": 10.0, "network": {"arch": "rsunet", "base_channels": 4, "depth": 2}}))
    assert main(["segment", str(nan), "--model", str(wrong), "--out",
                 str(tmp_path / "o.mrc")]) == 2
    err = capsys.readouterr().err
    assert "wrong.pt" in err and "do not match" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mrc").exists()
