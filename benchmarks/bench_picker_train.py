"""Benchmark: training throughput of the default-picker recipe's network vs the previous one.

One optimisation step (forward, loss, backward, AdamW) on a batch of random patches, for
the recipe's network and patch (``picking.recipes.DEFAULT_PICKER["train"]``) and, as the
baseline in the same run, the network of the first shipped picker (4-level U-Net, 12 base
channels, 48-voxel patches). Steps alternate between the two; the medians give steps/s
and the ratio. On a shared machine both slow down alike, so the ratio is the figure to
compare across runs.

    .venv/bin/python benchmarks/bench_picker_train.py [--steps 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

BASELINE = {"network": {"arch": "unet3d", "base_channels": 12, "depth": 4, "residual": True,
                        "norm": "instance", "deep_supervision": True},
            "patch_size": [48, 48, 48]}


def make_step(train: dict, n_classes: int, batch: int):
    """A closure running one optimisation step of ``train``'s network on random patches."""
    import torch

    from cryoet_integration.segmentation.networks import build_network, count_parameters

    net = build_network({**train["network"], "in_channels": 1, "out_channels": n_classes})
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, *train["patch_size"])
    target = torch.randint(0, n_classes, (batch, *train["patch_size"]))

    def step() -> float:
        t0 = time.perf_counter()
        out = net(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        loss = torch.nn.functional.cross_entropy(out.float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t0

    return step, count_parameters(net)


def main() -> None:
    import torch

    from cryoet_integration.picking.recipes import DEFAULT_PICKER

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_classes = len(DEFAULT_PICKER["radii_angst"]) + 2  # + membrane + background
    recipe_step, recipe_params = make_step(DEFAULT_PICKER["train"], n_classes, args.batch)
    base_step, base_params = make_step(BASELINE, n_classes, args.batch)
    recipe_step(), base_step()  # warm-up
    times: dict[str, list[float]] = {"recipe": [], "baseline": []}
    for _ in range(args.steps):
        times["recipe"].append(recipe_step())
        times["baseline"].append(base_step())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"recipe_s_per_step": round(med["recipe"], 3),
                      "baseline_s_per_step": round(med["baseline"], 3),
                      "recipe_steps_per_s": round(1 / med["recipe"], 3),
                      "speedup_vs_baseline": round(med["baseline"] / med["recipe"], 2),
                      "recipe_parameters": recipe_params, "baseline_parameters": base_params,
                      "threads": args.threads, "batch": args.batch}))


if __name__ == "__main__":
    main()
