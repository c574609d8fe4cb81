"""Losses: finite gradients, ignore label, perfect predictions, deep supervision."""

import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.segmentation.losses import (  # noqa: E402
    LOSSES,
    build_loss,
    downsample_target,
    soft_skeleton,
)


def _membrane_target(batch=1, shape=(12, 16, 16), classes=1):
    """A slab 'membrane' 3 voxels thick (label 1) and, for classes=2, a blob (label 2)."""
    t = torch.zeros((batch, *shape), dtype=torch.long)
    t[:, :, 6:9, :] = 1
    if classes == 2:
        t[:, 2:5, 2:6, 2:6] = 2
    return t


def _perfect_logits(target, channels):
    if channels == 1:
        return (target.float()[:, None] * 2 - 1) * 30
    return torch.nn.functional.one_hot(target.clamp(min=0), channels).movedim(-1, 1) * 60.0 - 30


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("channels", [1, 3])
def test_finite_gradients_and_ignore(name, channels):
    torch.manual_seed(0)
    target = _membrane_target(batch=2, classes=1 if channels == 1 else 2)
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[:, :, :, :5] = True
    target[ignore] = -1
    loss_fn = build_loss({name: 1.0}, ignore_index=-1)

    base = torch.randn(2, channels, 12, 16, 16)
    logits_a = base.clone().requires_grad_(True)
    loss_a = loss_fn(logits_a, target)
    loss_a.backward()
    assert torch.isfinite(loss_a) and torch.isfinite(logits_a.grad).all()
    assert logits_a.grad.abs().sum() > 0

    changed = base.clone()
    changed[ignore[:, None].expand_as(changed)] = torch.randn(int(ignore.sum()) * channels) * 10
    logits_b = changed.requires_grad_(True)
    loss_b = loss_fn(logits_b, target)
    loss_b.backward()
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    keep = ~ignore[:, None].expand_as(base)
    assert torch.allclose(logits_a.grad[keep], logits_b.grad[keep], atol=1e-7)
    assert (logits_b.grad[~keep] == 0).all()


@pytest.mark.parametrize("name", ["dice", "surface_dice", "tversky", "bce", "mse"])
@pytest.mark.parametrize("channels", [1, 3])
def test_perfect_prediction_near_zero(name, channels):
    target = _membrane_target(classes=1 if channels == 1 else 2)
    target[:, :, :, :3] = -1
    loss = build_loss({name: 1.0})(_perfect_logits(target, channels), target)
    assert float(loss) < 0.02


def test_wrong_prediction_scores_high():
    target = _membrane_target()
    wrong = torch.zeros_like(target)
    wrong[:, :, 1:4, :] = 1
    for name in ["dice", "surface_dice"]:
        assert float(build_loss({name: 1.0})(_perfect_logits(wrong, 1), target)) > 0.9


def test_surface_dice_tolerates_thickness_dice_does_not():
    """MemBrain's motivation: a thicker prediction of the right surface keeps Surface-Dice."""
    target = _membrane_target(shape=(24, 16, 16))
    thick = torch.zeros_like(target)
    thick[:, :, 4:11, :] = 1
    logits = _perfect_logits(thick, 1)
    sd = float(build_loss({"surface_dice": 1.0})(logits, target))
    d = float(build_loss({"dice": 1.0})(logits, target))
    assert sd < 0.25 < d


def test_soft_skeleton_thins_a_slab():
    x = torch.zeros(1, 1, 16, 16, 16)
    x[..., 5:10, :, :] = 1
    skel = soft_skeleton(x, iterations=3)
    profile = skel[0, 0, :, 8, 8]
    assert profile[7] > 0.9 and profile[:5].sum() == 0 and profile[10:].sum() == 0
    assert skel.sum() < 0.5 * x.sum()


def test_soft_targets_for_one_class():
    target = torch.rand(1, 8, 8, 8)
    target[0, 0] = -1
    logits = torch.logit(target.clamp(0.01, 0.99))[:, None].requires_grad_(True)
    loss = build_loss({"mse": 1.0, "adaptive_wing": 1.0})(logits, target)
    loss.backward()
    assert loss.item() < 0.05 and torch.isfinite(logits.grad).all()


def test_deep_supervision_list():
    target = _membrane_target(shape=(16, 16, 16))
    target[:, :2] = -1
    outs = [torch.randn(1, 1, 16, 16, 16, requires_grad=True),
            torch.randn(1, 1, 8, 8, 8, requires_grad=True),
            torch.randn(1, 1, 16, 4, 4, requires_grad=True)]  # rsunet-like: z not pooled
    loss_fn = build_loss()
    loss = loss_fn(outs, target)
    loss.backward()
    assert all(torch.isfinite(o.grad).all() and o.grad.abs().sum() > 0 for o in outs)
    assert set(loss_fn.last_terms) == {"dice", "bce", "surface_dice"}
    perfect = [_perfect_logits(downsample_target(target, o.shape[2:]), 1) for o in outs]
    assert float(build_loss({"dice": 1.0})(perfect, target)) < 0.02


def test_downsample_target_keeps_thin_structures_and_ignore():
    t = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    t[0, 1, :, :] = 1
    t[0, 2:, 2:, 2:] = -1
    small = downsample_target(t, (2, 2, 2))
    assert (small[0, 0] == 1).all()
    assert small[0, 1, 1, 1] == -1 and small[0, 1, 0, 0] == 0
    assert downsample_target(t, (2, 2, 2), "nearest")[0, 0, 0, 0] == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown"):
        build_loss({"focal": 1.0})
    with pytest.raises(ValueError, match="options"):
        build_loss({"dice": 1.0}, iterations=3)
    with pytest.raises(ValueError, match="labels"):
        build_loss({"dice": 1.0})(torch.zeros(1, 3, 4, 4, 4), torch.full((1, 4, 4, 4), 3))
    with pytest.raises(ValueError, match="one-class"):
        build_loss({"dice": 1.0})(torch.zeros(1, 1, 4, 4, 4), torch.full((1, 4, 4, 4), 2))
    with pytest.raises(ValueError, match="target"):
        build_loss({"dice": 1.0})(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 4, 4, 2))


def test_bf16_autocast_loss_is_float32():
    net_out = torch.randn(1, 1, 8, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    loss = build_loss()(net_out, _membrane_target(shape=(8, 8, 8)))
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(net_out.grad.float()).all()
