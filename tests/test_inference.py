"""Tiled inference: tiling plans, blending, rescaling, padding and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.errors import CryovisError  # noqa: E402
from cryoet_integration.preprocess import robust_normalize  # noqa: E402
from cryoet_integration.segmentation.checkpoint import load_model, save_model  # noqa: E402
from cryoet_integration.segmentation.inference import (  # noqa: E402
    axis_plan,
    blend_window,
    overlap_factor,
    predict_probabilities,
    segment_volume,
)
from cryoet_integration.segmentation.networks import build_network  # noqa: E402
from formats import Volume  # noqa: E402


class PointwiseNet(torch.nn.Module):
    """A 1x1x1 convolution: its output at a voxel depends on that voxel only, so tiling
    cannot change it and blended tiles must reproduce one forward pass exactly."""

    def __init__(self, weight: float = 1.7, bias: float = -0.3, multiple=(8, 8, 8)):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(weight)
            self.conv.bias.fill_(bias)
        self.size_multiple = multiple
        self.config = {"out_channels": 1}

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("n,tile,overlap,multiple", [
    (256, 128, 16, 8), (100, 64, 16, 8), (37, 64, 16, 8), (129, 128, 32, 16), (500, 96, 8, 1)])
def test_axis_plan_covers_with_overlap(n, tile, overlap, multiple):
    plan = axis_plan(n, tile, overlap, multiple)
    assert plan.tile % multiple == 0 and plan.tile <= max(tile, multiple * -(-n // multiple))
    covered = np.zeros(plan.padded, dtype=int)
    for s in plan.starts:
        covered[s:s + plan.tile] += 1
    assert covered[:n].min() >= 1 and plan.starts[-1] + plan.tile == plan.padded
    for a, b in zip(plan.starts, plan.starts[1:]):
        assert a + plan.tile - b >= overlap


def test_adaptive_tiles_keep_overlap_cost_low():
    # 256 voxels: three 96-voxel tiles (1.125x) rather than three 128-voxel ones (1.5x).
    assert axis_plan(256, 128, 16, 8).tile == 96
    assert overlap_factor((128, 256, 256), 128, 16, (8, 8, 8)) < 1.3


def test_blend_window_positive_and_flat_inside():
    w = blend_window((32, 24, 40), 8)
    assert w.min() > 0 and w[16, 12, 20] == 1.0
    assert w[0, 12, 20] < 0.05


def test_blending_reproduces_single_forward():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(41, 53, 66)).astype(np.float32)
    net = PointwiseNet().eval()
    tiled = predict_probabilities(net, image, tile=16, overlap=6)
    with torch.no_grad():
        whole = torch.sigmoid(net(torch.from_numpy(image)[None, None]))[0].numpy()
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # A real U-Net on a volume within one tile is one forward pass too.
    unet = build_network({"base_channels": 4, "depth": 3, "deep_supervision": False}).eval()
    small = image[:32, :32, :32]
    with torch.no_grad():
        ref = torch.sigmoid(unet(torch.from_numpy(np.ascontiguousarray(small))[None, None]))
    np.testing.assert_allclose(predict_probabilities(unet, small, tile=32), ref[0].numpy(),
                               atol=1e-5)


def test_tta_of_pointwise_net_is_identity_and_out_array_used():
    image = np.random.default_rng(1).normal(size=(20, 24, 28)).astype(np.float32)
    net = PointwiseNet().eval()
    out = np.empty((1, 20, 24, 28), dtype=np.float32)
    res = predict_probabilities(net, image, tile=16, overlap=4, tta=True, out=out)
    assert res is out
    np.testing.assert_allclose(out, predict_probabilities(net, image, tile=16, overlap=4),
                               atol=1e-5)


def _smooth_volume(shape, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 3).astype(np.float32) * 20


def test_rescaling_round_trip_matches_native_prediction():
    net = PointwiseNet(weight=1.0, bias=0.0).eval()
    card = {"voxel_size": 10.0, "classes": ["membrane"]}
    data = _smooth_volume((48, 64, 56))
    seg = segment_volume(Volume(data, voxel_size=5.0), net, card, tile=32, overlap=8)
    assert seg.info["rescaled"] and seg.info["working_shape_zyx"] == [24, 32, 28]
    assert seg.probabilities.shape == (1, 48, 64, 56) and seg.voxel_size == 5.0
    native = 1 / (1 + np.exp(-robust_normalize(data)))
    # Fourier resampling is periodic, so only the interior is compared.
    inner = (slice(8, -8),) * 3
    assert np.abs(seg.probabilities[0][inner] - native[inner]).mean() < 0.03
    same = segment_volume(Volume(data, voxel_size=10.0), net, card)
    assert not same.info["rescaled"]
    np.testing.assert_allclose(same.probabilities[0], native, atol=1e-5)


def test_memmap_output(tmp_path):
    net = PointwiseNet().eval()
    card = {"voxel_size": 10.0, "classes": ["membrane"]}
    data = _smooth_volume((16, 20, 24))
    a = segment_volume(Volume(data, voxel_size=10.0), net, card, memmap_dir=tmp_path)
    b = segment_volume(Volume(data, voxel_size=10.0), net, card)
    assert isinstance(a.probabilities, np.memmap)
    np.testing.assert_allclose(np.asarray(a.probabilities), b.probabilities)


def test_tiny_volume_is_padded_not_a_crash():
    net = build_network({"base_channels": 4, "depth": 4}).eval()
    card = {"voxel_size": 10.0, "classes": ["membrane"]}
    seg = segment_volume(Volume(np.random.default_rng(2).normal(size=(3, 9, 5)), voxel_size=10),
                         net, card)
    assert seg.probabilities.shape == (1, 3, 9, 5)
    assert np.isfinite(seg.probabilities).all()


def test_bad_inputs_give_clear_errors(tmp_path):
    net = PointwiseNet().eval()
    card = {"voxel_size": 10.0, "classes": ["membrane"]}
    with pytest.raises(CryovisError, match="3D tomogram"):
        segment_volume(Volume(np.zeros((32, 32), np.float32), 10.0, path="img.mrc"), net, card)
    bad = np.zeros((8, 8, 8), np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(CryovisError, match="NaN"):
        segment_volume(Volume(bad, 10.0, path="nan.mrc"), net, card)
    # Weights of one architecture under a card that names another.
    rsunet = build_network({"arch": "rsunet", "base_channels": 4, "depth": 2})
    save_model(tmp_path / "m", rsunet, {"classes": ["membrane"], "voxel_size": 10.0})
    card_path = tmp_path / "m.json"
    text = card_path.read_text().replace('"rsunet"', '"unet3d"')
    card_path.write_text(text)
    with pytest.raises(CryovisError, match="do not match"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(CryovisError, match="model card not found"):
        load_model(tmp_path / "absent.pt")
