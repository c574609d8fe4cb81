"""The segmentation engine at the machine's limit (issue 10), in one run.

    .venv/bin/python benchmarks/bench_engine.py [--baseline REV] [--quick] [--train-steps N]

Reports, for this working tree and for the baseline git revision ``REV`` (default: the
commit before the speed work, extracted to a temporary folder and run in its own processes
with the same data):

(1) the CPU: native bf16 or not (lscpu flags ``avx512_bf16`` / ``amx_bf16``), load average;
(2) the shipped network's FLOPs (``torch.utils.flop_counter.FlopCounterMode``) and FLOP rate
    per tile size and precision, against the bare conv3d rate at the same widths (every
    convolution of that forward re-run alone on a tensor of its input's shape and layout) and
    at a large width (128 -> 128 channels, 3x3x3, 32^3: the practical peak). RATIO network /
    bare >= 0.7 is the target;
(3) the time split by layer type (``torch.profiler``, self CPU time) of one forward;
(4) whole-tomogram ``cryovis segment`` of a 256x256x128 simulated tomogram: wall time and
    peak memory (the process's own VmHWM), RATIO baseline / current, and the Dice between
    the two masks (probability > 0.5); start-up: ``cryovis segment --help`` and the import
    of the engine;
(5) training steps per second at the default-membrane recipe's patch, batch, loss and
    augmentation (``train_segmenter``, no validation), RATIO current / baseline, and the mean
    loss of each third of that short run (same seed, same data) for both.

Timings on a shared machine are noisy: the ratios, measured in this one run, are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "65785d7"  # main before issue 10 (14.1x MemBrain-seg, 9.0 GFLOP/s per 64^3 tile)
TOMO_XYZ = (256, 256, 128)
TRAIN_XYZ = (160, 160, 96)
LARGE_WIDTH = 128


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------- workers (engine in sys.path)

def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive creation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _conv_calls(net, x):
    """Every Conv3d / ConvTranspose3d call of one forward: (module, input shape, layout)."""
    import torch
    from torch import nn

    calls, hooks = [], []
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: calls.append(
                    (mod, tuple(args[0].shape),
                     args[0].is_contiguous(memory_format=torch.channels_last_3d)))))
    with torch.inference_mode():
        net(x)
    for h in hooks:
        h.remove()
    return calls


def _bare_conv_seconds(calls, bf16: bool, repeats: int) -> tuple[float, float]:
    """Summed best time and FLOPs of the network's convolutions, each run alone."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    total_s = total_flops = 0.0
    dtype = torch.bfloat16 if bf16 else torch.float32
    for mod, shape, channels_last in calls:
        fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        x = torch.randn(shape).to(dtype).contiguous(memory_format=fmt)
        w = mod.weight.detach().to(dtype).contiguous(memory_format=fmt)
        b = None if mod.bias is None else mod.bias.detach().to(dtype)
        if isinstance(mod, nn.ConvTranspose3d):
            def run(x=x, w=w, b=b, mod=mod):
                return F.conv_transpose3d(x, w, b, stride=mod.stride)
        else:
            def run(x=x, w=w, b=b, mod=mod):
                return F.conv3d(x, w, b, stride=mod.stride, padding=mod.padding)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as fc:
                run()
            total_flops += fc.get_total_flops()
            total_s += best_time(run, repeats)
    return total_s, total_flops


def _categorise(name: str) -> str:
    for key, cat in (("conv", "convolution"), ("norm", "normalisation"),
                     ("leaky", "activation"), ("sigmoid", "activation"), ("cat", "concat"),
                     ("add", "add"), ("copy", "copy/layout"), ("contiguous", "copy/layout"),
                     ("clone", "copy/layout"), ("reorder", "copy/layout")):
        if key in name:
            return cat
    return "other"


def worker_network(tiles: list[tuple[int, int, int]], repeats: int,
                   precisions: list[str]) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from cryoet_integration.segmentation.checkpoint import load_model

    torch.set_num_threads(2)
    net, _ = load_model()
    rows = []
    for tile in tiles:
        x = torch.randn(1, 1, *tile)
        for bf16 in (p == "bf16" for p in precisions):
            def fwd(x=x, bf16=bf16):
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                            enabled=bf16):
                    return net(x)
            with FlopCounterMode(display=False) as fc:
                fwd()
            flops = fc.get_total_flops()
            seconds = best_time(fwd, repeats)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                calls = _conv_calls(net, x)
            conv_s, conv_flops = _bare_conv_seconds(calls, bf16, repeats)
            rows.append({"tile_zyx": list(tile), "precision": "bf16" if bf16 else "fp32",
                         "gflop": round(flops / 1e9, 2), "seconds": round(seconds, 3),
                         "gflops_per_s": round(flops / seconds / 1e9, 2),
                         "bare_conv_gflops_per_s": round(conv_flops / conv_s / 1e9, 2),
                         "ratio_network_to_bare": round(flops / seconds / (conv_flops / conv_s),
                                                        3),
                         "load": load_average()})
            print("  ", json.dumps(rows[-1]), file=sys.stderr, flush=True)
    x = torch.randn(1, 1, *tiles[-1])
    with torch.inference_mode():
        net(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            net(x)
    split: dict[str, float] = {}
    top = []
    for ev in prof.key_averages():
        if ev.self_cpu_time_total <= 0:
            continue
        cat = _categorise(ev.key.lower())
        split[cat] = split.get(cat, 0.0) + ev.self_cpu_time_total / 1e6
        top.append((ev.self_cpu_time_total / 1e6, ev.key))
    total = sum(split.values())
    return {"rows": rows, "profile_tile_zyx": list(tiles[-1]),
            "profile_fraction": {k: round(v / total, 3) for k, v in
                                 sorted(split.items(), key=lambda kv: -kv[1])},
            "profile_top_ops": [[k, round(s, 3)] for s, k in sorted(top, reverse=True)[:8]]}


def worker_peak(repeats: int, precisions: list[str]) -> dict:
    """Bare conv3d at the issue's 32 -> 32 on 64^3 and at a large width, both layouts."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    out = {}
    for name, cin, size in (("32ch_64^3", 32, 64), (f"{LARGE_WIDTH}ch_32^3", LARGE_WIDTH, 32)):
        flops = 2 * 27 * cin * cin * size ** 3
        for dtype in (torch.bfloat16 if p == "bf16" else torch.float32 for p in precisions):
            best = 0.0
            for fmt in (torch.contiguous_format, torch.channels_last_3d):
                x = torch.randn(1, cin, size, size, size).to(dtype).contiguous(memory_format=fmt)
                w = torch.randn(cin, cin, 3, 3, 3).to(dtype).contiguous(memory_format=fmt)
                with torch.inference_mode():
                    s = best_time(lambda x=x, w=w: F.conv3d(x, w, padding=1), repeats)
                best = max(best, flops / s / 1e9)
            out[f"{name}_{str(dtype).split('.')[-1]}_gflops_per_s"] = round(best, 2)
    return out


def worker_train(volumes: list[list[str]], steps: int, out_dir: str) -> dict:
    from cryoet_integration.segmentation.checkpoint import load_training_state
    from cryoet_integration.segmentation.data import load_pair
    from cryoet_integration.segmentation.recipes import get_recipe
    from cryoet_integration.segmentation.train import resolve_config, train_segmenter

    recipe = get_recipe("default-membrane")
    cfg = resolve_config(recipe)
    train = [load_pair(t, lab, cfg["voxel_size"], tuple(cfg["patch_size"]))
             for t, lab in volumes]
    out = Path(out_dir) / "model"
    start = time.perf_counter()
    train_segmenter(train, [], out, {**recipe, "max_steps": 10 * steps}, progress=False,
                    overwrite=True, threads=2, session_steps=steps)
    seconds = time.perf_counter() - start
    loss = json.loads(load_training_state(out)["history"])["loss"]
    third = max(1, len(loss) // 3)
    return {"steps": len(loss), "seconds": round(seconds, 1),
            "steps_per_s": round(len(loss) / seconds, 4),
            "loss_thirds": [round(sum(loss[i:i + third]) / len(loss[i:i + third]), 4)
                            for i in range(0, 3 * third, third)],
            "load": load_average()}


def worker_startup() -> dict:
    t0 = time.perf_counter()
    import cryoet_integration.segmentation.inference  # noqa: F401
    import cryoet_integration.segmentation.networks  # noqa: F401
    return {"import_engine_s": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------- driver

def run_worker(tree: Path, kind: str, args: dict, measure_memory: bool = False) -> dict:
    """Run a worker of this file with ``tree`` first on the path; returns its JSON."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(tree)!r})
        sys.path.insert(1, {str(Path(__file__).parent)!r})
        import bench_engine
        result = bench_engine.worker_{kind}(**json.loads({json.dumps(json.dumps(args))}))
        print("RESULT " + json.dumps(result))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tree)
    sys.stderr.write(proc.stderr[-2000:] if proc.returncode else proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"worker {kind} failed in {tree}")
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def run_cli(tree: Path, argv: list[str]) -> dict:
    """``cryovis ARGV`` with ``tree``'s engine: wall time and the process's own peak RSS."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tree)!r})
        from cryoet_integration.cli import main
        try:
            rc = main({argv!r})
        except SystemExit as exc:  # argparse's --help
            rc = exc.code or 0
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
        print("PEAK", int(hwm.split()[1]) / 1024, file=sys.stderr)
        sys.exit(rc)
    """)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"cryovis {argv[0]} failed in {tree}:\n{proc.stderr[-2000:]}")
    peak = float([ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK")][-1].split()[1])
    return {"seconds": round(seconds, 2), "peak_mb": round(peak), "load": load_average()}


def extract(rev: str, dest: Path) -> Path:
    """The files of git revision ``rev`` in ``dest`` (no checkout, no worktree)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def make_tomogram(work: Path) -> Path:
    """The benchmark tomogram, simulated at 10 Å so that nothing is resampled."""
    import dataclasses

    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from formats import write_volume

    tomo = work / "bench_tomo.mrc"
    if not tomo.exists():
        cfg = dataclasses.replace(SimulationConfig.randomised(777), voxel_size=10.0)
        write_volume(tomo, simulate_tomogram(seed=777, size_xyz=TOMO_XYZ, config=cfg).tomogram)
    return tomo


def make_training_pairs(work: Path) -> list[list[str]]:
    """Two simulated (tomogram, membrane mask) pairs of the recipe's kind."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram, write_simulation

    pairs = []
    for seed in (10000, 10001):
        name = f"train_{seed}"
        if not (work / f"{name}.json").exists():
            sim = simulate_tomogram(seed=seed, size_xyz=TRAIN_XYZ,
                                    config=SimulationConfig.randomised(seed), tomo_name=name)
            write_simulation(sim, work, name=name, overwrite=True)
        pairs.append([str(work / f"{name}.mrc"), str(work / f"{name}_membranes.mrc")])
    return pairs


def mask_dice(a: Path, b: Path) -> float:
    import numpy as np

    from formats import read_volume

    ma, mb = read_volume(a).data > 0.5, read_volume(b).data > 0.5
    return round(2 * float(np.count_nonzero(ma & mb))
                 / max(1, np.count_nonzero(ma) + np.count_nonzero(mb)), 5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    ap.add_argument("--work", default="/tmp/cryovis_bench_engine")
    ap.add_argument("--quick", action="store_true", help="one repeat, 64^3 tiles only")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--bf16", action="store_true",
                    help="also measure bf16 autocast where the CPU lacks native bf16")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["network", "segment", "train"], help="sections to leave out")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from cryoet_integration.segmentation.inference import native_bf16

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    trees = {"current": ROOT,
             "baseline": extract(args.baseline, Path(tempfile.mkdtemp(prefix="cryovis_base_")))}
    report: dict = {"baseline_rev": args.baseline, "native_bf16": native_bf16("cpu"),
                    "load_start": load_average()}
    print(json.dumps(report), flush=True)
    repeats = 1 if args.quick else 2
    # 128x96x96 is the tile of the 256x256x128 tomogram at the default tile size and overlap
    tiles = [[64, 64, 64]] if args.quick else [[64, 64, 64], [128, 96, 96]]
    # Emulated bf16 (no native support) runs oneDNN's reference kernels, orders of magnitude
    # slower; it is measured only where it is native, or when asked.
    precisions = ["fp32", "bf16"] if report["native_bf16"] or args.bf16 else ["fp32"]
    if "network" not in args.skip:
        report["peak_conv"] = run_worker(ROOT, "peak", {"repeats": repeats,
                                                        "precisions": precisions})
        print("peak conv3d", json.dumps(report["peak_conv"]), flush=True)
        for name, tree in trees.items():
            report[f"network_{name}"] = run_worker(tree, "network",
                                                   {"tiles": tiles, "repeats": repeats,
                                                    "precisions": precisions})
            print(f"network ({name})", json.dumps(report[f"network_{name}"], indent=1),
                  flush=True)
    if "segment" not in args.skip:
        tomo = make_tomogram(work)
        for name, tree in trees.items():
            out = work / f"seg_{name}.mrc"
            report[f"segment_{name}"] = run_cli(tree, ["segment", str(tomo), "--out", str(out),
                                                       "--force", "--threads", "2"])
            report[f"segment_help_{name}"] = run_cli(tree, ["segment", "--help"])
            report[f"startup_{name}"] = run_worker(tree, "startup", {})
            print(name, report[f"segment_{name}"], report[f"segment_help_{name}"],
                  report[f"startup_{name}"], flush=True)
        report["segment_ratio_speedup"] = round(report["segment_baseline"]["seconds"]
                                                / report["segment_current"]["seconds"], 2)
        report["segment_mask_dice_vs_baseline"] = mask_dice(work / "seg_current.mrc",
                                                            work / "seg_baseline.mrc")
        print("segment RATIO baseline/current", report["segment_ratio_speedup"],
              "mask Dice", report["segment_mask_dice_vs_baseline"], flush=True)
    if "train" not in args.skip:
        pairs = make_training_pairs(work)
        for name, tree in trees.items():
            out_dir = Path(tempfile.mkdtemp(prefix=f"cryovis_train_{name}_"))
            report[f"train_{name}"] = run_worker(tree, "train", {
                "volumes": pairs, "steps": args.train_steps, "out_dir": str(out_dir)})
            print(f"train ({name})", json.dumps(report[f"train_{name}"]), flush=True)
        report["train_ratio_steps_per_s"] = round(report["train_current"]["steps_per_s"]
                                                  / report["train_baseline"]["steps_per_s"], 2)
    report["load_end"] = load_average()
    print("RESULT", json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
