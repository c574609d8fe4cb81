"""``cryovis batch`` on this machine: throughput, per-task overhead, and the memory of
segmenting a tomogram larger than the memory it may use.

    .venv/bin/python benchmarks/bench_batch.py [--n 4] [--size 128x128x64]
        [--big 1024x1024x512] [--memory MIB] [--big-minutes M] [--skip-big] [--skip-batch]
        [--work DIR]

(a) throughput: ``cryovis batch segment`` of N simulated tomograms (10 Å, the model's voxel
    size) on a LocalCluster of 1 worker and of 2 workers (each worker the host's CPUs / N
    threads): tomograms per hour and the 2-vs-1 ratio.
(b) overhead per task: the 1-worker batch's wall time per tomogram (cluster start included)
    vs running ``cryovis segment`` on each tomogram alone as its own process (Python
    start-up and model loading included), with the same threads: ratio - 1 (goal <= 5 %).
    Also the in-worker task time vs the single command's own time in a warm process.
(c) peak resident memory (VmHWM) of ``cryovis segment`` with its default settings (its
    ``--memory`` budget, 512 MiB) on a BIG float32 tomogram (default 1024x1024x512 =
    2 GiB, written slab by slab here) vs its size (goal <= 25 %); the output is checked
    (shape, finite, probabilities). On a slow machine the segmentation is stopped after
    ``--big-minutes`` and reported with the tiles it did.
Every ratio's baseline is measured in this same run. The machine may be shared: run it
niced and read the load average printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load() -> str:
    """The 1, 5 and 15 minute load averages (other users of the machine)."""
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def make_tomograms(work: Path, n: int, size_xyz: tuple[int, int, int]) -> list[Path]:
    """N simulated tomograms at 10 Å (the membrane model's voxel size: no resampling)."""
    import dataclasses

    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from formats import write_volume

    folder = work / "tomos"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"tomo_{i:02d}.mrc"
        if not path.exists():
            cfg = dataclasses.replace(SimulationConfig.randomised(100 + i), voxel_size=10.0)
            write_volume(path, simulate_tomogram(seed=100 + i, size_xyz=size_xyz,
                                                 config=cfg).tomogram)
        paths.append(path)
    return paths


def cryovis(*args: str) -> float:
    """Wall seconds of ``cryovis ARGS`` as its own process (must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cryoet_integration.cli", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cryovis {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def task_seconds(out: Path) -> list[float]:
    with sqlite3.connect(out / "cryovis_batch.sqlite") as db:
        return [r[0] for r in db.execute("SELECT seconds FROM tasks WHERE status='done'")]


def bench_batch(work: Path, tomos: list[Path]) -> dict:
    from cryoet_integration.commands.options import available_cpus

    cpus = available_cpus()
    pattern = str(tomos[0].parent / "tomo_*.mrc")
    result: dict = {"n": len(tomos), "cpus": cpus, "load_before": load()}
    single_out = work / "single"
    single_out.mkdir(exist_ok=True)
    singles = [cryovis("segment", str(t), "--out", str(single_out / t.name), "--force",
                       "--threads", str(cpus)) for t in tomos]
    for workers in (1, 2):
        out = work / f"batch{workers}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        wall = cryovis("batch", "segment", pattern, "--out", str(out), "--workers",
                       str(workers), "--threads-per-worker", str(max(1, cpus // workers)))
        result[f"workers_{workers}"] = {
            "wall_s": round(wall, 1), "tomograms_per_hour": round(3600 * len(tomos) / wall, 1),
            "task_s_mean": round(float(np.mean(task_seconds(out))), 2)}
    warm = _warm_single(tomos, work, cpus)
    one, two = result["workers_1"], result["workers_2"]
    result["throughput_ratio_2_vs_1"] = round(two["tomograms_per_hour"]
                                              / one["tomograms_per_hour"], 3)
    result["single_process_s_mean"] = round(float(np.mean(singles)), 2)
    result["batch_1_worker_s_per_tomogram"] = round(one["wall_s"] / len(tomos), 2)
    result["overhead_end_to_end"] = round(one["wall_s"] / sum(singles) - 1, 3)
    result["single_warm_s_mean"] = round(warm, 2)
    result["overhead_in_worker"] = round(one["task_s_mean"] / warm - 1, 3)
    result["load_after"] = load()
    return result


def _warm_single(tomos: list[Path], work: Path, cpus: int) -> float:
    """Mean seconds of ``cryovis segment`` in one warm process (model cached after the
    first), the in-process baseline of a batch task, first tomogram not counted."""
    code = textwrap.dedent(f"""
        import sys, time, json
        sys.path.insert(0, {str(ROOT)!r})
        from cryoet_integration.cli import main
        from cryoet_integration.segmentation.checkpoint import keep_models_loaded
        keep_models_loaded()
        times = []
        for t in {[str(t) for t in tomos]!r}:
            t0 = time.perf_counter()
            assert main(["segment", t, "--out", {str(work / 'warm')!r} + "/" +
                         t.split("/")[-1], "--force", "--threads", "{cpus}"]) == 0
            times.append(time.perf_counter() - t0)
        print("BENCH", json.dumps(times))
    """)
    (work / "warm").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    times = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH")][-1][6:])
    return float(np.mean(times[1:] if len(times) > 1 else times))


def make_big(path: Path, size_xyz: tuple[int, int, int]) -> None:
    """A float32 tomogram of ``size_xyz`` voxels at 10 Å, written slab by slab: noise with
    dark membrane-like sheets (so the model has something to find)."""
    import mrcfile

    from formats import release_pages

    if path.exists():
        return
    nx, ny, nz = size_xyz
    tmp = path.with_suffix(".part.mrc")
    with mrcfile.new_mmap(str(tmp), (nz, ny, nx), mrc_mode=2, overwrite=True) as m:
        m.voxel_size = 10.0
        y = np.arange(ny, dtype=np.float32)[:, None]
        x = np.arange(nx, dtype=np.float32)[None, :]
        for z0 in range(0, nz, 16):
            z1 = min(z0 + 16, nz)
            rng = np.random.default_rng(z0)
            block = rng.normal(size=(z1 - z0, ny, nx)).astype(np.float32)
            for k in range(z0, z1):
                sheet = np.sin((x + 0.5 * y + 3.0 * k) / 40.0)
                block[k - z0] -= 2.5 * np.exp(-(sheet / 0.15) ** 2)
            m.data[z0:z1] = block
            release_pages(m.data)
        m.update_header_stats = lambda: None  # the stats scan would read it all again
    os.replace(tmp, path)


def bench_big(work: Path, size_xyz: tuple[int, int, int], threads: int, memory: float | None,
              minutes: float) -> dict:
    """Peak RSS of ``cryovis segment`` with its default settings (``--memory`` when given)
    on the big tomogram, vs the tomogram's size.

    A run longer than ``minutes`` is stopped and reported as such, with the tiles it did:
    the streamed run's memory is periodic in the bands of tile rows along z (the blended
    cells of one band and the overlap the next shares), so once the first band has been
    written and the second begun, later bands touch as much memory again.
    """
    big = work / f"big_{'x'.join(map(str, size_xyz))}.mrc"
    make_big(big, size_xyz)
    size_mb = big.stat().st_size / 2**20
    out, summary = work / "big_membranes.mrc", work / "big_membranes.json"
    extra = [] if memory is None else ["--memory", f"{memory:g}"]
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from cryoet_integration.cli import main
        rc = main(["segment", {str(big)!r}, "--out", {str(out)!r}, "--force",
                   "--threads", "{threads}", "--json", {str(summary)!r}, *{extra!r}])
        assert rc == 0
    """)
    result = {"size_xyz": list(size_xyz), "tomogram_mb": round(size_mb), "memory": memory,
              "threads": threads, "load_before": load()}
    t0 = time.perf_counter()
    log = work / "big_segment.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                stderr=err, text=True)
        peak = 0.0
        while proc.poll() is None and time.perf_counter() - t0 < 60 * minutes:
            time.sleep(2)
            peak = max(peak, _hwm_mb(proc.pid))
            said = log.read_text().strip().splitlines()
            print(f"  {time.perf_counter() - t0:6.0f} s, peak so far {peak:.0f} MiB, "
                  f"load {load()}: {said[-1] if said else ''}", flush=True)
        finished = proc.poll() is not None
        if not finished:
            proc.kill()
        proc.wait()
    if finished and proc.returncode != 0:
        raise RuntimeError(log.read_text()[-3000:])
    said = [ln for ln in log.read_text().splitlines() if "tiles" in ln or "streaming" in ln]
    result.update(segment_finished=finished, segment_seconds=round(time.perf_counter() - t0),
                  plan=next((ln for ln in said if "streaming" in ln), ""),
                  segment_progress=said[-1] if said else "", segment_peak_rss_mb=round(peak),
                  segment_peak_vs_size=round(peak / size_mb, 3), load_after=load())
    if finished:
        result["summary"] = json.loads(summary.read_text())
        _check_big_output(out, size_xyz)
    return result


def _check_big_output(out: Path, size_xyz: tuple[int, int, int]) -> None:
    """The streamed output is a whole, finite probability map of the tomogram's shape."""
    from formats import check_finite, read_volume

    result = read_volume(out, mmap=True)
    assert result.data.shape == tuple(size_xyz[::-1]), result.data.shape
    check_finite(result)
    stats = result.metadata["header_stats"]
    assert 0.0 <= stats["min"] <= stats["max"] <= 1.0, stats


def _hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    hwm = [ln for ln in status.splitlines() if ln.startswith("VmHWM")]
    return int(hwm[0].split()[1]) / 1024 if hwm else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4, help="tomograms in the batch (default 4)")
    parser.add_argument("--size", default="128x128x64", help="their size XxYxZ")
    parser.add_argument("--big", default="1024x1024x512", help="the large tomogram XxYxZ")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the large segmentation (default: all CPUs)")
    parser.add_argument("--memory", type=float, default=None,
                        help="--memory of the large segmentation (default: the command's)")
    parser.add_argument("--big-minutes", type=float, default=300.0,
                        help="stop the large segmentation after this long and report the "
                        "peak over its first tiles (default 300)")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    from cryoet_integration.commands.options import available_cpus

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in (args.size, args.big)]
    if not args.skip_batch:
        tomos = make_tomograms(work, args.n, sizes[0])
        print("batch", json.dumps(bench_batch(work, tomos)), flush=True)
    if not args.skip_big:
        print("big", json.dumps(bench_big(work, sizes[1], args.threads or available_cpus(),
                                          args.memory, args.big_minutes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
