"""Segmentation speed and memory on a 256x256x128 simulated tomogram (10 Å voxels).

    .venv/bin/python benchmarks/bench_segment.py [--skip-membrain] [--work DIR]

(a) ``cryovis segment`` with the shipped model vs MemBrain-seg's own ``segment()`` (random-
    weight checkpoint of its default network, sliding window 160, no TTA), each in its own
    process: wall time and peak resident memory. MemBrain-seg lives in its own venv
    (``~/.cache/cryovis/envs/membrain``), created here when missing: python3.11 -m venv,
    ``pip install torch==2.13.0`` first, then ``pip install membrain-seg click``.
(b) tiling overhead: ``segment_volume`` (normalise, tiles, sigmoid, blending) vs the bare
    network forward over the same tiles, and how much the overlap multiplies computed voxels.
(c) bfloat16 vs float32 inference on the CPU: time ratio and output agreement.
Each ratio is measured in this one run. Pass ``--threads`` to match the CPU you have.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEMBRAIN_ENV = Path.home() / ".cache" / "cryovis" / "envs" / "membrain"
SIZE_XYZ = (256, 256, 128)


def make_tomogram(work: Path) -> Path:
    """A simulated 256x256x128 tomogram at 10 Å (so neither tool resamples it)."""
    import dataclasses

    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from formats import write_volume

    path = work / "bench_tomo.mrc"
    if not path.exists():
        cfg = dataclasses.replace(SimulationConfig.randomised(777), voxel_size=10.0)
        sim = simulate_tomogram(seed=777, size_xyz=SIZE_XYZ, config=cfg)
        write_volume(path, sim.tomogram)
    return path


def run_measured(python: str, code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; returns its wall time and peak RSS (MB).

    The peak is the child's own VmHWM: ``ru_maxrss`` would inherit this (larger) parent's
    high-water mark through fork + exec.
    """
    wrapper = code + textwrap.dedent("""
        import json
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
        print("BENCH", json.dumps({"peak_mb": int(hwm.split()[1]) / 1024}))
    """)
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", wrapper], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    return {"seconds": round(seconds, 1), **json.loads(line[6:])}


def ensure_membrain() -> str:
    python = MEMBRAIN_ENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["python3.11", "-m", "venv", str(MEMBRAIN_ENV)], check=True)
        pip = [str(MEMBRAIN_ENV / "bin" / "pip"), "install", "-q"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)  # pinned before membrain pulls one
        subprocess.run(pip + ["membrain-seg", "click"], check=True)
    return str(python)


def bench_membrain(tomo: Path, work: Path, threads: int) -> dict:
    python = ensure_membrain()
    ckpt = work / "membrain_random.ckpt"
    if not ckpt.exists():
        subprocess.run([python, "-c", textwrap.dedent(f"""
            import torch, pytorch_lightning
            from membrain_seg.segmentation.networks.inference_unet import (
                PreprocessedSemanticSegmentationUnet)
            model = PreprocessedSemanticSegmentationUnet()
            torch.save({{"state_dict": model.state_dict(),
                        "hyper_parameters": dict(model.hparams),
                        "pytorch-lightning_version": pytorch_lightning.__version__,
                        "epoch": 0, "global_step": 0}}, {str(ckpt)!r})
        """)], check=True)
    out = work / "membrain_out"
    out.mkdir(exist_ok=True)
    return run_measured(python, textwrap.dedent(f"""
        import torch
        torch.set_num_threads({threads})
        from membrain_seg.segmentation.segment import segment
        segment({str(tomo)!r}, {str(ckpt)!r}, {str(out)!r}, test_time_augmentation=False)
    """))


def bench_cryovis_cli(tomo: Path, work: Path, threads: int) -> dict:
    out = work / "cryovis_membranes.mrc"
    return run_measured(sys.executable, textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from cryoet_integration.cli import main
        rc = main(["segment", {str(tomo)!r}, "--out", {str(out)!r}, "--force",
                   "--threads", "{threads}"])
        assert rc == 0
    """))


def bench_tiling(tomo: Path, threads: int) -> dict:
    import torch

    from cryoet_integration.preprocess import robust_normalize
    from cryoet_integration.segmentation.checkpoint import load_model
    from cryoet_integration.segmentation.inference import (
        DEFAULT_OVERLAP,
        DEFAULT_TILE,
        overlap_factor,
        segment_volume,
        tiles,
    )
    from formats import read_volume

    torch.set_num_threads(threads)
    net, card = load_model()
    vol = read_volume(tomo)
    data = robust_normalize(vol.data)
    mult = tuple(net.size_multiple)
    plans, starts = tiles(data.shape, DEFAULT_TILE, DEFAULT_OVERLAP, mult)
    size = tuple(p.tile for p in plans)

    def bare(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            for z, y, x in starts:
                patch = np.ascontiguousarray(data[z:z + size[0], y:y + size[1], x:x + size[2]])
                net(torch.from_numpy(patch)[None, None])
        return time.perf_counter() - t0

    def full(bf16: bool):
        t0 = time.perf_counter()
        seg = segment_volume(vol, net, card, bf16=bf16)
        return time.perf_counter() - t0, seg.probabilities[0]

    bare(False)  # warm-up (allocator, oneDNN kernels)
    t_bare = bare(False)
    t_full, p32 = full(False)
    t_bare16 = bare(True)
    t_full16, p16 = full(True)
    m32, m16 = p32 > 0.5, p16 > 0.5
    agree = 2 * np.count_nonzero(m32 & m16) / max(1, np.count_nonzero(m32) + np.count_nonzero(m16))
    return {
        "tiles": len(starts), "tile_zyx": list(size),
        "overlap_factor": round(overlap_factor(data.shape, DEFAULT_TILE, DEFAULT_OVERLAP, mult), 3),
        "b_bare_forward_s": round(t_bare, 2), "b_segment_volume_s": round(t_full, 2),
        "b_ratio_tiling_overhead": round(t_full / t_bare, 3),
        "c_fp32_s": round(t_full, 2), "c_bf16_s": round(t_full16, 2),
        "c_bare_bf16_s": round(t_bare16, 2),
        "b_ratio_tiling_overhead_bf16": round(t_full16 / t_bare16, 3),
        "c_ratio_bf16_speedup": round(t_full / t_full16, 3),
        "c_max_abs_prob_diff": round(float(np.abs(p32 - p16).max()), 4),
        "c_mean_abs_prob_diff": round(float(np.abs(p32 - p16).mean()), 5),
        "c_mask_dice_bf16_vs_fp32": round(float(agree), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="segmentation benchmarks (a), (b), (c)")
    ap.add_argument("--work", default="/tmp/cryovis_bench_segment")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-membrain", action="store_true",
                    help="only (b) and (c) (MemBrain-seg takes minutes and 4.5 GB)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tomo = make_tomogram(work)
    results: dict = {"tomogram_xyz": SIZE_XYZ, "voxel_size": 10.0, "threads": args.threads,
                     "load_average_start": os.getloadavg()[0]}
    results.update(bench_tiling(tomo, args.threads))
    print(json.dumps(results), flush=True)
    results["a_cryovis"] = bench_cryovis_cli(tomo, work, args.threads)
    print(json.dumps(results["a_cryovis"]), flush=True)
    if not args.skip_membrain:
        results["a_membrain"] = bench_membrain(tomo, work, args.threads)
        results["a_ratio_speedup"] = round(results["a_membrain"]["seconds"]
                                           / results["a_cryovis"]["seconds"], 2)
        results["a_ratio_peak_memory"] = round(results["a_cryovis"]["peak_mb"]
                                               / results["a_membrain"]["peak_mb"], 3)
    results["load_average_end"] = os.getloadavg()[0]
    print("RESULT", json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
