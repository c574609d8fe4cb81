"""3D segmentation networks: a residual 3D U-Net and the Residual Symmetric U-Net.

Both take ``(B, C, D, H, W)`` tensors (``D, H, W`` = ``z, y, x`` voxels) and return logits of
the same spatial size. A one-class model has 1 output channel (sigmoid); a K-class model has
K + 1 channels (softmax, channel 0 = background).

Input sizes must be multiples of ``net.size_multiple`` = ``(mz, my, mx)`` voxels:

* ``unet3d``: ``2 ** (depth - 1)`` on every axis (isotropic stride-2 downsampling).
* ``rsunet``: ``1`` in z and ``2 ** (depth - 1)`` in y and x, because the Residual Symmetric
  U-Net (Lee et al. 2017, used by Nano-Oetzi) never downsamples z: the z axis of a tomogram is
  the one degraded by the missing wedge.

With ``deep_supervision`` the network returns, in training mode only, a list
``[full-resolution logits, 1/2-resolution logits, ...]`` (one per decoder level, coarser last);
in eval mode it always returns the full-resolution tensor.

Speed on a CPU (``benchmarks/bench_engine.py``, docs/segmentation.md): the networks keep their
activations in the ``channels_last_3d`` layout, in which oneDNN convolves and transposed-
convolves without reordering every tensor, and instance norm runs as ``group_norm`` with one
group per channel (the same arithmetic; PyTorch's ``instance_norm`` is a reshaped batch norm
and three times slower in that layout). Both keep the parameter names, so model files are
unchanged; inputs may come in either layout and outputs are returned contiguous.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]

DEFAULTS: dict[str, Any] = {
    "arch": "unet3d",
    "in_channels": 1,
    "out_channels": 1,
    "base_channels": 16,
    "depth": 4,
    "residual": True,
    "norm": "instance",
    "deep_supervision": True,
    "max_channels": 320,
    "widths": None,
}


MEMORY_FORMAT = torch.channels_last_3d


class InstanceNorm(nn.InstanceNorm3d):
    """Affine instance norm computed as a group norm with one group per channel: identical
    statistics and parameters (state-dict keys ``weight``, ``bias``), faster on a CPU in the
    ``channels_last_3d`` layout, which it keeps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def _weight_grad_by_planes(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor,
                           stride: Triple, padding: Triple) -> torch.Tensor:
    """Weight gradient of a 3D convolution as a sum of 2D ones, one per depth tap.

    Output plane ``z`` of a 3D convolution is the sum over depth taps ``a`` of 2D
    convolutions of input plane ``stride_z * z + a`` (after padding) with ``weight[:, :, a]``,
    so the gradient of ``weight[:, :, a]`` is a 2D weight gradient with the output planes as
    the batch. oneDNN has direct kernels for that on AVX2 CPUs, while its 3D weight gradient
    there unfolds the whole volume first (im2col) and ran 5x slower (bench_engine.py)."""
    kd = weight.shape[2]
    sd, sh, sw = stride
    pd, ph, pw = padding
    xp = F.pad(x, (0, 0, 0, 0, pd, pd)) if pd else x
    d_out = grad.shape[2]
    taps = []
    for a in range(kd):
        total = None
        for n in range(x.shape[0]):
            planes = xp[n, :, a:a + sd * (d_out - 1) + 1:sd].transpose(0, 1)
            g = torch.ops.aten.convolution_backward(
                grad[n].transpose(0, 1), planes, weight[:, :, a], None, [sh, sw], [ph, pw],
                [1, 1], False, [0, 0], 1, [False, True, False])[1]
            total = g if total is None else total + g
        taps.append(total)
    return torch.stack(taps, dim=2)


class _PlaneGradConv3d(torch.autograd.Function):
    """``F.conv3d`` whose weight gradient is computed by :func:`_weight_grad_by_planes`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, bias is not None)
        return F.conv3d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        xg, wg = x.to(grad.dtype), weight.to(grad.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, xg, wg, None, list(stride), list(padding), [1, 1, 1], False, [0, 0, 0],
                1, [True, False, False])[0].to(x.dtype)
        grad_w = _weight_grad_by_planes(xg, grad, wg, stride, padding).to(weight.dtype)
        grad_b = grad.sum((0, 2, 3, 4)).to(weight.dtype) if has_bias else None
        return grad_x, grad_w, grad_b, None, None


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` with two CPU fast paths, same parameters and results:

    * a one-channel input is convolved as one matrix product of its shifted copies (im2col)
      with the weights, giving a ``channels_last_3d`` output: PyTorch sends a one-channel 3D
      convolution of a single volume to its slow reference kernel (0.7 GFLOP/s measured);
    * in training on a CPU, the weight gradient of a kernel with more than one tap is
      computed plane by plane (:func:`_weight_grad_by_planes`).
    """

    def _plain(self) -> bool:
        return (self.padding_mode != "zeros" or self.dilation != (1, 1, 1)
                or self.groups != 1 or isinstance(self.padding, str))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._plain():
            return super().forward(x)
        if self.in_channels == 1 and self.stride == (1, 1, 1):
            return self._im2col(x)
        if x.device.type == "cpu" and torch.is_grad_enabled() and self.weight.requires_grad \
                and math.prod(self.kernel_size) > 1:
            # under autocast F.conv3d in forward casts; backward computes in the grad's dtype
            return _PlaneGradConv3d.apply(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)

    def _im2col(self, x: torch.Tensor) -> torch.Tensor:
        (kd, kh, kw), (pd, ph, pw) = self.kernel_size, self.padding
        d, h, w = (n + 2 * p - k + 1 for n, p, k in zip(x.shape[2:], self.padding,
                                                          self.kernel_size))
        xp = F.pad(x[:, 0], (pw, pw, ph, ph, pd, pd))
        cols = torch.stack([xp[:, a:a + d, b:b + h, c:c + w] for a in range(kd)
                            for b in range(kh) for c in range(kw)], dim=-1)
        y = cols @ self.weight.reshape(self.out_channels, -1).t().to(cols.dtype)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.permute(0, 4, 1, 2, 3)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use instance, batch, group or none")


def _widths(base: int, depth: int, max_channels: int, widths: list[int] | None) -> list[int]:
    """Feature maps per level: ``widths`` if given, else ``min(base * 2**i, max_channels)``."""
    if widths is None:
        widths = [min(base * 2 ** i, max_channels) for i in range(depth)]
    elif len(widths) != depth:
        raise ValueError(f"widths {list(widths)} must have depth={depth} entries")
    if depth < 2 or min(widths) < 1:
        raise ValueError(f"need depth >= 2 and positive widths, got {list(widths)}")
    return [int(w) for w in widths]


def _pad(kernel: Triple) -> Triple:
    return tuple(k // 2 for k in kernel)  # type: ignore[return-value]


class ConvBlock(nn.Module):
    """Two conv-norm-LeakyReLU layers, optionally residual (projection when shapes change).

    The first convolution carries ``stride`` so downsampling costs no extra layer (nnU-Net).
    """

    def __init__(self, cin: int, cout: int, norm: str, residual: bool,
                 kernels: tuple[Triple, Triple] = ((3, 3, 3), (3, 3, 3)),
                 stride: Triple = (1, 1, 1)):
        super().__init__()
        k1, k2 = kernels
        bias = norm == "none"
        self.conv1 = Conv3d(cin, cout, k1, stride=stride, padding=_pad(k1), bias=bias)
        self.norm1 = _norm(norm, cout)
        self.conv2 = Conv3d(cout, cout, k2, padding=_pad(k2), bias=bias)
        self.norm2 = _norm(norm, cout)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip: nn.Module | None = None
        if residual:
            if cin == cout and stride == (1, 1, 1):
                self.skip = nn.Identity()
            else:
                self.skip = nn.Sequential(
                    Conv3d(cin, cout, 1, stride=stride, bias=bias), _norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.skip is not None:
            y += self.skip(x)  # in place: the norm keeps no use of its output
        return self.act(y)


class _SegNet(nn.Module):
    """Shared forward logic: encoder list, decoder list, one 1x1x1 head per decoder level."""

    size_multiple: Triple
    config: dict[str, Any]

    def _encode_decode(self, x: torch.Tensor, merge: Callable) -> torch.Tensor | list:
        x = x.contiguous(memory_format=MEMORY_FORMAT)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        outputs = []
        for up, block, head in zip(self.ups, self.decoder, self.heads):
            x = block(merge(up(x), skips.pop()))
            outputs.append((head, x))
        if self.training and self.deep_supervision:
            return [head(feat).contiguous() for head, feat in reversed(outputs)]
        head, feat = outputs[-1]
        return head(feat).contiguous()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, C, D, H, W)`` with divisible D, H, W."""
        if x.ndim != 5:
            raise ValueError(f"network input must be (B, C, D, H, W), got shape {tuple(x.shape)}")
        bad = [s % m for s, m in zip(x.shape[2:], self.size_multiple)]
        if any(bad):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} is not a multiple of "
                             f"{self.size_multiple} (z, y, x); pad the input")


class UNet3D(_SegNet):
    """Residual 3D U-Net (nnU-Net / MemBrain-seg style) with isotropic 2x downsampling.

    ``depth`` counts resolution levels (4 = three downsamplings); level ``i`` has
    ``min(base_channels * 2**i, max_channels)`` feature maps, or ``widths[i]`` if given.
    Downsampling is a stride-2 convolution, upsampling a stride-2 transposed convolution, skips
    are concatenated.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16,
                 depth: int = 4, residual: bool = True, norm: str = "instance",
                 deep_supervision: bool = True, max_channels: int = 320,
                 widths: list[int] | None = None):
        super().__init__()
        widths = _widths(base_channels, depth, max_channels, widths)
        self.deep_supervision = deep_supervision
        self.size_multiple = (2 ** (depth - 1),) * 3
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            stride = (1, 1, 1) if i == 0 else (2, 2, 2)
            self.encoder.append(ConvBlock(cin, w, norm, residual, stride=stride))
            cin = w
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        for i in range(depth - 2, -1, -1):
            self.ups.append(nn.ConvTranspose3d(widths[i + 1], widths[i], 2, stride=2))
            self.decoder.append(ConvBlock(2 * widths[i], widths[i], norm, residual))
            self.heads.append(nn.Conv3d(widths[i], out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        return self._encode_decode(x, lambda up, skip: torch.cat([up, skip], dim=1))


class RSUNet(_SegNet):
    """Residual Symmetric U-Net (Lee et al. 2017; Nano-Oetzi's "3D U-Net+ResNet").

    Each level is an anisotropic (1,3,3) convolution, a residual block of two (3,3,3)
    convolutions and another (1,3,3) convolution. Pooling and upsampling are (1,2,2) only (no
    z-downsampling); skips are added, not concatenated ("symmetric"). The input is embedded by
    a (1,5,5) convolution. Since z is never pooled, deep levels cost as much as the top one
    with doubling widths; Lee et al.'s slower growth is ``widths=[28, 36, 48, 64]``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16,
                 depth: int = 4, residual: bool = True, norm: str = "instance",
                 deep_supervision: bool = True, max_channels: int = 320,
                 widths: list[int] | None = None):
        super().__init__()
        widths = _widths(base_channels, depth, max_channels, widths)
        self.deep_supervision = deep_supervision
        self.size_multiple = (1, 2 ** (depth - 1), 2 ** (depth - 1))
        self.embed = nn.Sequential(
            Conv3d(in_channels, widths[0], (1, 5, 5), padding=(0, 2, 2)),
            _norm(norm, widths[0]), nn.LeakyReLU(0.01, inplace=True))
        self.encoder = nn.ModuleList()
        cin = widths[0]
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.MaxPool3d((1, 2, 2))]
            layers.append(self._module(cin, w, norm, residual))
            self.encoder.append(nn.Sequential(*layers))
            cin = w
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        for i in range(depth - 2, -1, -1):
            self.ups.append(nn.ConvTranspose3d(widths[i + 1], widths[i], (1, 2, 2),
                                               stride=(1, 2, 2)))
            self.decoder.append(self._module(widths[i], widths[i], norm, residual))
            self.heads.append(nn.Conv3d(widths[i], out_channels, 1))

    @staticmethod
    def _module(cin: int, cout: int, norm: str, residual: bool) -> nn.Module:
        bias = norm == "none"
        return nn.Sequential(
            Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1), bias=bias), _norm(norm, cout),
            nn.LeakyReLU(0.01, inplace=True),
            ConvBlock(cout, cout, norm, residual),
            Conv3d(cout, cout, (1, 3, 3), padding=(0, 1, 1), bias=bias), _norm(norm, cout),
            nn.LeakyReLU(0.01, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        return self._encode_decode(self.embed(x), torch.add)


NETWORKS: dict[str, type[_SegNet]] = {"unet3d": UNet3D, "rsunet": RSUNet}


def build_network(config: dict[str, Any] | None = None) -> _SegNet:
    """Build a network from a JSON-able config (keys of ``DEFAULTS``; missing keys default).

    The resolved config is stored as ``net.config`` so checkpoints can rebuild the network.
    Raises ``ValueError`` for an unknown ``arch`` or unknown keys.
    """
    cfg = {**DEFAULTS, **(config or {})}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown network config keys: {sorted(unknown)}")
    arch = cfg["arch"]
    if arch not in NETWORKS:
        raise ValueError(f"unknown arch {arch!r}: choose from {sorted(NETWORKS)}")
    kwargs = {k: v for k, v in cfg.items() if k != "arch"}
    net = NETWORKS[arch](**kwargs)
    net.config = cfg
    return net.to(memory_format=MEMORY_FORMAT)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
