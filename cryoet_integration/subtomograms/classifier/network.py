"""The DSM-Net-style multi-task subtomogram network (Liu et al., paper 004).

One residual encoder is shared by three subnetworks, as in DSM-Net:

* classification: global average pooling of the deepest encoder features, a hidden fully
  connected layer (its activations are the *feature vector* used to cluster structures)
  and class logits;
* segmentation: the U-Net decoder of ``segmentation.networks.UNet3D`` (transposed
  convolutions, skip connections), two logits per voxel (background, particle);
* density recovery: a second decoder of the same shape with one output per voxel, the
  coarse density of the particle (dense matter positive, the training target's units).

The encoder, the segmentation decoder and their blocks are ``UNet3D``'s own
(``ConvBlock``, the norm choice, the fast ``Conv3d``); this module adds only the two
extra subnetworks. Inputs are ``(B, 1, D, H, W)`` boxes (``D, H, W`` = ``z, y, x``
voxels, each a multiple of ``size_multiple``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ...segmentation.networks import MEMORY_FORMAT, ConvBlock, UNet3D

ARCH = "dsmnet"
DEFAULTS: dict[str, Any] = {
    "arch": ARCH,
    "n_classes": 2,
    "widths": [16, 32, 64],
    "hidden": 128,
    "norm": "instance",
    "residual": True,
    "dropout": 0.3,
}


class DSMOutput(NamedTuple):
    """Outputs of :class:`DSMNet` for a batch of B boxes of D x H x W voxels."""

    class_logits: torch.Tensor   # (B, K)
    mask_logits: torch.Tensor    # (B, 2, D, H, W): background, particle
    density: torch.Tensor        # (B, 1, D, H, W)
    features: torch.Tensor       # (B, hidden)


class DSMNet(UNet3D):
    """Shared ``UNet3D`` encoder + segmentation decoder, with a classification head and a
    density-recovery decoder (see the module docstring)."""

    def __init__(self, n_classes: int, widths: list[int], hidden: int = 128,
                 norm: str = "instance", residual: bool = True, dropout: float = 0.3):
        super().__init__(in_channels=1, out_channels=2, depth=len(widths), residual=residual,
                         norm=norm, deep_supervision=False, widths=list(widths))
        self.classifier_hidden = nn.Sequential(nn.Linear(widths[-1], hidden),
                                               nn.LeakyReLU(0.01, inplace=True))
        self.classifier_out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.density_ups = nn.ModuleList()
        self.density_decoder = nn.ModuleList()
        for i in range(len(widths) - 2, -1, -1):
            self.density_ups.append(nn.ConvTranspose3d(widths[i + 1], widths[i], 2, stride=2))
            self.density_decoder.append(ConvBlock(2 * widths[i], widths[i], norm, residual))
        self.density_head = nn.Conv3d(widths[0], 1, 1)

    @staticmethod
    def _decode(x: torch.Tensor, skips: list[torch.Tensor], ups: nn.ModuleList,
                blocks: nn.ModuleList) -> torch.Tensor:
        for up, block, skip in zip(ups, blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> DSMOutput:  # type: ignore[override]
        self.check_input(x)
        x = x.contiguous(memory_format=MEMORY_FORMAT)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        deepest = skips.pop()
        features = self.classifier_hidden(deepest.mean(dim=(2, 3, 4)))
        seg = self._decode(deepest, skips, self.ups, self.decoder)
        dens = self._decode(deepest, skips, self.density_ups, self.density_decoder)
        return DSMOutput(self.classifier_out(features), self.heads[-1](seg).contiguous(),
                         self.density_head(dens).contiguous(), features)


def build_dsmnet(config: dict[str, Any]) -> DSMNet:
    """Build a :class:`DSMNet` from a JSON-able config (keys of ``DEFAULTS``; missing keys
    default). The resolved config is kept as ``net.config`` for the model card; unknown
    keys or another ``arch`` raise ``ValueError``."""
    cfg = {**DEFAULTS, **(config or {})}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown classifier network keys: {sorted(unknown)}")
    if cfg["arch"] != ARCH:
        raise ValueError(f"arch {cfg['arch']!r} is not a classifier network ({ARCH!r})")
    net = DSMNet(int(cfg["n_classes"]), list(cfg["widths"]), int(cfg["hidden"]), cfg["norm"],
                 bool(cfg["residual"]), float(cfg["dropout"]))
    net.config = cfg
    return net.to(memory_format=MEMORY_FORMAT)
