"""Shapes, deep supervision, size checks and bf16 autocast of the segmentation networks."""

import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.segmentation.networks import (  # noqa: E402
    NETWORKS,
    build_network,
    count_parameters,
)


@pytest.mark.parametrize("arch", sorted(NETWORKS))
def test_shapes_and_deep_supervision(arch):
    torch.manual_seed(0)
    net = build_network({"arch": arch, "base_channels": 4, "depth": 3, "out_channels": 3})
    mz, my, mx = net.size_multiple
    assert (my, mx) == (4, 4)
    assert mz == (4 if arch == "unet3d" else 1)
    x = torch.randn(2, 1, 8, 16, 12)
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == 2
    assert outs[0].shape == (2, 3, 8, 16, 12)
    coarse_z = 4 if arch == "unet3d" else 8
    assert outs[1].shape == (2, 3, coarse_z, 8, 6)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 3, 8, 16, 12)
    assert torch.isfinite(out).all()


def test_rsunet_accepts_any_z_and_rejects_bad_xy():
    net = build_network({"arch": "rsunet", "base_channels": 4, "depth": 3}).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 5, 8, 8)).shape == (1, 1, 5, 8, 8)
        with pytest.raises(ValueError, match="multiple"):
            net(torch.randn(1, 1, 5, 10, 8))
        with pytest.raises(ValueError, match="B, C, D, H, W"):
            net(torch.randn(1, 8, 8, 8))


def test_unet_rejects_bad_z():
    net = build_network({"base_channels": 4, "depth": 3}).eval()
    with pytest.raises(ValueError, match="multiple"):
        net(torch.randn(1, 1, 6, 8, 8))


def test_no_deep_supervision_returns_tensor_in_training():
    net = build_network({"base_channels": 4, "depth": 2, "deep_supervision": False}).train()
    assert isinstance(net(torch.randn(1, 1, 4, 4, 4)), torch.Tensor)


def test_default_membrane_config_size_and_rebuild():
    net = build_network({"arch": "unet3d"})
    # the 1.4M-parameter U-Net of the issue: 4 levels, 16 base channels
    assert 1.3e6 < count_parameters(net) < 1.5e6
    clone = build_network(net.config)
    clone.load_state_dict(net.state_dict())


def test_bad_config():
    with pytest.raises(ValueError, match="arch"):
        build_network({"arch": "vnet"})
    with pytest.raises(ValueError, match="keys"):
        build_network({"channels": 3})
    with pytest.raises(ValueError, match="norm"):
        build_network({"norm": "layer"})
    with pytest.raises(ValueError, match="widths"):
        build_network({"depth": 3, "widths": [8, 16]})


def test_explicit_widths():
    net = build_network({"arch": "rsunet", "depth": 3, "widths": [6, 7, 9]})
    assert net.encoder[2][1][0].out_channels == 9
    outs = net.train()(torch.randn(1, 1, 4, 8, 8))
    assert [o.shape[1:] for o in outs] == [(1, 4, 8, 8), (1, 4, 4, 4)]


@pytest.mark.parametrize("arch", sorted(NETWORKS))
def test_bf16_autocast_matches_float32(arch):
    torch.manual_seed(1)
    net = build_network({"arch": arch, "base_channels": 4, "depth": 3}).eval()
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.shape == ref.shape
    assert torch.isfinite(low.float()).all()
    assert torch.corrcoef(torch.stack([ref.flatten(), low.float().flatten()]))[0, 1] > 0.98


def _reference_forward(net, x, monkeypatch):
    """``net(x)`` computed the way PyTorch's stock modules do it: contiguous NCDHW layout,
    ``nn.InstanceNorm3d`` and ``nn.Conv3d`` forwards (the engine before its fast paths)."""
    from torch import nn

    from cryoet_integration.segmentation import networks

    with monkeypatch.context() as m:
        m.setattr(networks, "MEMORY_FORMAT", torch.contiguous_format)
        m.setattr(networks.InstanceNorm, "forward", nn.InstanceNorm3d.forward)
        m.setattr(networks.Conv3d, "forward", nn.Conv3d.forward)
        out = net(x.contiguous())
    return out


@pytest.mark.parametrize("arch", sorted(NETWORKS))
def test_fast_paths_equal_stock_modules_forward_and_backward(arch, monkeypatch):
    torch.manual_seed(2)
    net = build_network({"arch": arch, "base_channels": 4, "depth": 3, "out_channels": 3})
    with torch.no_grad():  # non-trivial affine norm parameters
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 1, 8, 16, 16)
    net.eval()
    with torch.no_grad():
        fast = net(x)
        ref = _reference_forward(net, x, monkeypatch)
    assert fast.is_contiguous()
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    net.train()
    fast_grads = torch.autograd.grad(sum(o.square().sum() for o in net(x)), net.parameters())
    ref_out = _reference_forward(net, x, monkeypatch)
    ref_grads = torch.autograd.grad(sum(o.square().sum() for o in ref_out), net.parameters())
    scale = max(float(b.norm()) for b in ref_grads)
    for a, b in zip(fast_grads, ref_grads):
        # float32 sums over ~10^4 terms in another order: compare whole gradients (a conv
        # bias in front of a norm has a gradient of rounding noise only, hence the floor)
        assert (a - b).norm() <= 1e-4 * b.norm() + 1e-5 * scale


def test_shipped_model_gives_the_same_mask_as_stock_modules(monkeypatch):
    """The shipped membrane model through the fast paths: same mask (probability > 0.5 after
    the card's logit bias) as the stock PyTorch modules, on a membrane-like input."""
    from cryoet_integration.segmentation.checkpoint import load_model

    net, card = load_model()
    z, y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in (32, 64, 64)),
                             indexing="ij")
    shell = ((z - 16) ** 2 + (y - 30) ** 2 + (x - 34) ** 2).sqrt()
    image = -2.0 * ((shell - 14).abs() < 1.5).float() + 0.5 * torch.randn(32, 64, 64)
    inp = image[None, None]
    with torch.inference_mode():
        fast = net(inp) - card["logit_bias"]
        ref = _reference_forward(net, inp, monkeypatch) - card["logit_bias"]
    mf, mr = fast > 0, ref > 0
    assert mr.sum() > 100
    dice = 2 * (mf & mr).sum() / (mf.sum() + mr.sum())
    assert dice >= 0.999
    assert (fast - ref).abs().max() < 1e-2
