"""Benchmark the segmentation core: network size and speed, bf16 autocast, augmentation.

For the default membrane networks (``unet3d`` = the issue's 1.4M-parameter U-Net, 4 levels,
16 channels, InstanceNorm, residual; and ``rsunet``) it measures the parameter count, the eval
forward time of one 64^3 and one 128^3 tile in float32 and under bf16 autocast (RATIO
fp32/bf16), and one training iteration (forward, Dice+BCE+Surface-Dice loss with deep
supervision, backward, Adam step) on a batch of 2 64^3 patches, fp32 vs bf16. Augmentation is
reported in ms per patch (default config, 64^3 and 96^3) and as a RATIO to the training
iteration it feeds. Preprocessing of a 256x256x128 tomogram (Fourier rescaling 10 -> 13 Å,
amplitude matching, Wiener deconvolution) is timed with a RATIO to ``scipy.ndimage.zoom``
(linear) doing the same rescaling.

Run: .venv/bin/python benchmarks/bench_segcore.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cryoet_integration.segmentation.augment import Augmenter
from cryoet_integration.segmentation.losses import build_loss
from cryoet_integration.segmentation.networks import build_network, count_parameters


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_time(net, size: int, bf16: bool, repeats: int) -> float:
    x = torch.randn(1, 1, size, size, size)
    net.eval()

    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(x)
    return best_time(run, repeats)


def train_time(net, bf16: bool, repeats: int) -> float:
    x = torch.randn(2, 1, 64, 64, 64)
    target = (torch.rand(2, 64, 64, 64) > 0.9).long()
    loss_fn = build_loss({"dice": 1.0, "bce": 1.0, "surface_dice": 1.0})
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net.train()

    def run():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss_fn(out, target).backward()
        opt.step()
    return best_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64^3 only, one repeat")
    args = parser.parse_args()
    torch.set_num_threads(2)
    repeats = 1 if args.quick else 3
    sizes = (64,) if args.quick else (64, 128)
    train_seconds = {}
    for arch in ("unet3d", "rsunet"):
        torch.manual_seed(0)
        net = build_network({"arch": arch})
        print(f"{arch}: {count_parameters(net):,} parameters, size multiple "
              f"{net.size_multiple} (z, y, x)")
        for size in sizes:
            t32 = forward_time(net, size, False, repeats)
            t16 = forward_time(net, size, True, repeats)
            print(f"  eval forward {size}^3: fp32 {t32:.2f} s, bf16 {t16:.2f} s, "
                  f"RATIO fp32/bf16 = {t32 / t16:.2f}")
        t32 = train_time(net, False, repeats)
        t16 = train_time(net, True, repeats)
        train_seconds[arch] = t32
        print(f"  train iteration (2 x 64^3, deep supervision, Dice+BCE+SurfDice, Adam): "
              f"fp32 {t32:.2f} s, bf16 {t16:.2f} s, RATIO fp32/bf16 = {t32 / t16:.2f}")
    rng = np.random.default_rng(0)
    aug = Augmenter(None, seed=0)
    for size in (64, 96):
        image = rng.normal(size=(size,) * 3).astype(np.float32)
        label = (image > 1).astype(np.int64)
        n = 10 if args.quick else 40
        start = time.perf_counter()
        for _ in range(n):
            aug(image, label)
        ms = (time.perf_counter() - start) / n * 1e3
        batch_ms = 2 * ms  # two patches per iteration
        print(f"augmentation {size}^3 (default config): {ms:.1f} ms/patch; RATIO to the unet3d "
              f"train iteration (2 patches): {batch_ms / 1e3 / train_seconds['unet3d']:.3f}")

    preprocess_timings()


def preprocess_timings() -> None:
    from scipy import ndimage

    from cryoet_integration.preprocess import (
        match_amplitude_spectrum,
        rescale_to_voxel_size,
        wiener_deconvolve,
    )

    tomo = np.random.default_rng(1).normal(size=(128, 256, 256)).astype(np.float32)
    reference = ndimage.gaussian_filter(tomo[:64, :128, :128], 1.0)
    start = time.perf_counter()
    ndimage.zoom(tomo, 10 / 13, order=1)
    t_zoom = time.perf_counter() - start
    for name, fn in (("Fourier rescale 10->13 A", lambda: rescale_to_voxel_size(tomo, 10, 13)),
                     ("amplitude matching", lambda: match_amplitude_spectrum(tomo, reference)),
                     ("Wiener deconvolution", lambda: wiener_deconvolve(tomo, 10.0, 4.0))):
        start = time.perf_counter()
        fn()
        t = time.perf_counter() - start
        print(f"preprocess 256x256x128: {name} {t:.2f} s; RATIO to ndimage.zoom rescale "
              f"({t_zoom:.2f} s) = {t / t_zoom:.2f}")


if __name__ == "__main__":
    main()
