"""Template matching: speed against a plain scipy.fft NCC, and accuracy on simulated data.

``speed`` (default): a 256x256x128 simulated tomogram and a 24^3 template (the simulator's
barrel at 10 Å/voxel, padded to 25^3 so that a voxel is its centre). The baseline, measured
in the same run on the same orientations, is the plain FFT normalised cross-correlation: the
tomogram spectrum and the local standard deviation precomputed, then per orientation a
scipy.ndimage rotation, the same Fourier weighting and normalisation, one full forward and
one full inverse scipy.fft of the tomogram size (float32, all cores). Prints time per
orientation of both, the ratio, the largest score-map difference, whether the top peaks
agree, the estimated time of the whole 12-degree search and the peak memory.

``accuracy``: simulated tomograms (randomised conditions at 12 Å/voxel, ribosome-rich),
the true ribosome template, a 12-degree search with and without local refinement; the picks
are exported to RELION 5 and Dynamo, read back, and compared with the simulator's truth:
recall of ribosomes and the median angular error of the found ones.

    nice -n 10 .venv/bin/python benchmarks/bench_template.py speed [--orientations 64]
    nice -n 10 .venv/bin/python benchmarks/bench_template.py accuracy [--n 3] [--figure PNG]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryoet_integration.commands.options import use_threads  # noqa: E402
from cryoet_integration.picking.template import (  # noqa: E402
    TemplateMatchOptions,
    angular_distance,
    match_template,
    prepare_template,
    uniform_grid,
)
from cryoet_integration.picking.template.engine import TemplateMatcher  # noqa: E402
from cryoet_integration.picking.template.filters import rotate  # noqa: E402
from cryoet_integration.picking.template.peaks import extract_peaks  # noqa: E402
from formats import (  # noqa: E402
    Volume,
    orientations,
    positions_voxels,
    read_particles,
    read_volume,
    write_particles,
    write_volume,
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class PlainNCC:
    """The baseline: full-size scipy.fft correlation per orientation (see module doc), on
    the same zero-padded grid as ours so that no correlation wraps around."""

    def __init__(self, matcher: TemplateMatcher) -> None:
        import scipy.fft as sfft

        self.m = matcher
        c = matcher.template.size // 2
        rolled = np.roll(matcher.filtered, (c, c, c), axis=(0, 1, 2))
        self.spectrum = sfft.rfftn(rolled)  # complex64
        self.inv_norm = matcher.inv_norm.cpu().numpy()
        self.pad = np.zeros(matcher.fft_shape, np.float32)

    def template(self, matrix: np.ndarray) -> np.ndarray:
        import scipy.fft as sfft

        t = self.m.template
        r = rotate(t.data, matrix)
        r = sfft.irfftn(sfft.rfftn(r) * t.weights, s=r.shape)
        mask = t.mask
        mean = (r * mask).sum() / mask.sum()
        r = (r - mean) * mask
        return (t.sign * r / np.sqrt((r * r).sum() / mask.sum())).astype(np.float32)

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        import scipy.fft as sfft

        n = self.m.template.size
        nz, ny, nx = self.m.shape
        self.pad[:n, :n, :n] = self.template(matrix)
        spec = np.conj(sfft.rfftn(self.pad)) * self.spectrum
        return sfft.irfftn(spec, s=self.m.fft_shape)[:nz, :ny, :nx] * self.inv_norm

    def search(self, matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        best = np.zeros(self.m.shape, np.float32)
        index = np.full(self.m.shape, -1, np.int32)
        for i, mat in enumerate(matrices):
            s = self.scores(mat)
            better = s > best
            best[better] = s[better]
            index[better] = i
        return best, index


def speed(args: argparse.Namespace) -> dict:
    from cryoet_integration.simulate.shapes import CLASSES, class_template

    vs = 10.0
    barrel = class_template(CLASSES["barrel"], vs)
    n, c = barrel.shape[0], barrel.shape[0] // 2
    tpl = np.ascontiguousarray(barrel[c - 12:c + 12, c - 12:c + 12, c - 12:c + 12])
    tomo = _synthetic_tomogram(tpl, (128, 256, 256), n_particles=40, seed=args.seed)
    print("256x256x128 tomogram (40 dark barrels in coloured noise); template 24^3 "
          f"(barrel {n}^3 cropped)", file=sys.stderr)
    opts = TemplateMatchOptions(angular_step_deg=12.0, tilt_range_deg=(-60, 60),
                                defocus_um=3.5)
    prepared = prepare_template(Volume(tpl, voxel_size=vs), vs, opts)
    grid = uniform_grid(12.0)
    rng = np.random.default_rng(0)
    subset = grid[rng.choice(len(grid), size=args.orientations, replace=False)]

    rss0 = peak_rss_mb()
    t0 = time.monotonic()
    matcher = TemplateMatcher(tomo, prepared, low_pass=0.25)
    setup_ours = time.monotonic() - t0
    matcher.search(subset[:matcher.default_batch()])  # warm-up (allocator, FFT plans)
    t0, c0 = time.monotonic(), time.process_time()
    ours = matcher.search(subset)
    t_ours = (time.monotonic() - t0) / len(subset)
    cpu_ours = (time.process_time() - c0) / len(subset)
    rss_ours = peak_rss_mb()

    t0 = time.monotonic()
    plain = PlainNCC(matcher)
    setup_plain = time.monotonic() - t0
    plain.scores(subset[0])
    t0, c0 = time.monotonic(), time.process_time()
    best, index = plain.search(subset)
    t_plain = (time.monotonic() - t0) / len(subset)
    cpu_plain = (time.process_time() - c0) / len(subset)

    valid = matcher.inv_norm.cpu().numpy() > 0
    diff = float(np.abs(best - ours.scores)[valid].max())
    same_index = float((index == ours.index)[valid & (best > 0.1)].mean())
    pk_plain, _ = extract_peaks(best, prepared.radius, threshold=0.0, max_peaks=20)
    pk_ours, _ = extract_peaks(ours.scores, prepared.radius, threshold=0.0, max_peaks=20)
    same_peaks = bool(np.array_equal(pk_plain, pk_ours))
    full_min = (setup_ours + t_ours * len(grid)) / 60.0
    out = {
        "tomogram": "256x256x128 float32", "template": "24^3 (25^3 internally)",
        "orientations_timed": len(subset), "grid_12deg": len(grid),
        "ours_s_per_orientation": round(t_ours, 4),
        "plain_scipy_s_per_orientation": round(t_plain, 4),
        "speedup": round(t_plain / t_ours, 2),
        "cpu_s_per_orientation": {"ours": round(cpu_ours, 4), "plain": round(cpu_plain, 4)},
        "cpu_speedup": round(cpu_plain / cpu_ours, 2),
        "full_12deg_search_estimate_min_from_cpu_time_on_2_idle_cores":
            round(cpu_ours * len(grid) / 2 / 60.0, 1),
        "setup_s": {"ours": round(setup_ours, 2), "plain": round(setup_plain, 2)},
        "max_score_difference": diff, "best_orientation_agreement": round(same_index, 4),
        "top20_peaks_identical": same_peaks,
        "full_12deg_search_estimate_min": round(full_min, 1),
        "peak_rss_mb": {"before_search": round(rss0), "after_ours": round(rss_ours)},
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "torch_threads": __import__("torch").get_num_threads(),
    }
    if args.full:
        # the subset's figures first: the whole search takes hours on a loaded machine
        print(json.dumps(out), file=sys.stderr, flush=True)
        t0 = time.monotonic()
        matcher.search(grid, progress=_progress)
        out["full_12deg_search_measured_min"] = round((time.monotonic() - t0 + setup_ours) / 60, 1)
        out["peak_rss_mb"]["after_full"] = round(peak_rss_mb())
    return out


def _synthetic_tomogram(tpl: np.ndarray, shape_zyx: tuple[int, int, int], n_particles: int,
                        seed: int) -> np.ndarray:
    """Dark copies of ``tpl`` at random positions and orientations in smooth noise (the
    timing does not depend on the content; the peaks give the comparison something to find)."""
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    vol = np.zeros(shape_zyx, np.float32)
    n = tpl.shape[0]
    for m in Rotation.random(n_particles, random_state=rng).as_matrix():
        z, y, x = (rng.integers(n, s - 2 * n) for s in shape_zyx)
        vol[z:z + n, y:y + n, x:x + n] -= rotate(tpl, m)
    noise = ndimage.gaussian_filter(rng.normal(size=shape_zyx).astype(np.float32), 1.0)
    vol = vol / vol.std() + 2.0 * noise / noise.std()
    return vol.astype(np.float32)


def _progress(done: int, total: int, seconds: float) -> None:
    if done % 200 == 0 or done == total:
        cpu = time.process_time()
        print(f"  {done}/{total} {seconds / done * 1000:.0f} ms/orientation (CPU {cpu:.0f} s "
              f"in all), ETA {seconds / done * (total - done) / 60:.1f} min, load "
              f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)


def _match(truth_xyz: np.ndarray, picks_xyz: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """Pairs (truth, pick) by distance within ``tol`` voxels (optimal assignment)."""
    from scipy.optimize import linear_sum_assignment

    if not len(truth_xyz) or not len(picks_xyz):
        return []
    d = np.linalg.norm(truth_xyz[:, None] - picks_xyz[None], axis=2)
    rows, cols = linear_sum_assignment(np.where(d <= tol, d, 1e6))
    return [(r, c) for r, c in zip(rows, cols) if d[r, c] <= tol]


def accuracy(args: argparse.Namespace) -> dict:
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from cryoet_integration.simulate.shapes import CLASSES, class_template

    vs = args.voxel_size
    work = Path(tempfile.mkdtemp(prefix="bench_template_"))
    print(f"work folder {work}", file=sys.stderr)
    per_tomo, errs = [], {"global": [], "refined_relion5": [], "refined_dynamo": []}
    n_true = n_found = n_true_inner = n_found_inner = n_picks = 0
    n_true_most = n_found_most = 0
    figure_data = None
    for i in range(args.n):
        seed = args.seed + i
        base = SimulationConfig.randomised(seed)
        weights = {k: (4.0 if k == "ribosome" else 1.0) for k in base.class_weights}
        cfg = dataclasses.replace(base, voxel_size=vs, class_weights=weights,
                                  crowding=min(max(base.crowding, 0.05), 0.12),
                                  measure_snr=False)
        t0 = time.monotonic()
        sim = simulate_tomogram(seed=seed, size_xyz=tuple(args.size), config=cfg)
        t_sim = time.monotonic() - t0
        # the user's view: the template as an MRC file, read back
        tpl_path = work / f"ribosome_{i}.mrc"
        write_volume(tpl_path, Volume(class_template(CLASSES["ribosome"], vs), voxel_size=vs))
        template = read_volume(tpl_path)
        opts = TemplateMatchOptions(
            angular_step_deg=args.step, tilt_range_deg=(cfg.tilt_min_deg, cfg.tilt_max_deg),
            defocus_um=cfg.defocus_angst / 1e4, voltage_kv=cfg.voltage_kv,
            cs_mm=cfg.cs_angst / 1e7,
            amplitude_contrast=cfg.amplitude_contrast, phase_flipped=cfg.phase_flip)
        prepared = prepare_template(template, vs, opts)
        t0 = time.monotonic()
        res = match_template(sim.tomogram, prepared, opts, progress=_progress)
        t_match = time.monotonic() - t0
        # kept so that the evaluation can be redone without the search
        write_particles(work / f"refined_{i}.csv", res.table, format="csv")
        write_particles(work / f"global_{i}.csv", res.unrefined, format="csv")
        write_particles(work / f"truth_{i}.csv", sim.particles, format="csv")
        write_volume(work / f"scores_{i}.mrc", Volume(res.search.scores, voxel_size=vs))
        truth = sim.particles[sim.particles["class"] == "ribosome"].reset_index(drop=True)
        t_xyz, t_mat = positions_voxels(truth), orientations(truth)
        shape_xyz = np.array(sim.tomogram.shape_xyz)
        inner = np.all((t_xyz >= prepared.radius) & (t_xyz < shape_xyz - prepared.radius), 1)
        # centre at least half the radius from every face: >= 84 % of the ball inside
        most = np.all((t_xyz >= prepared.radius / 2)
                      & (t_xyz <= shape_xyz - 1 - prepared.radius / 2), 1)
        tol = prepared.radius / 2
        g_pairs = _match(t_xyz, positions_voxels(res.unrefined), tol)
        errs["global"] += list(angular_distance(
            orientations(res.unrefined)[[c for _, c in g_pairs]],
            t_mat[[r for r, _ in g_pairs]])) if g_pairs else []
        size_txt = "x".join(str(s) for s in sim.tomogram.shape_xyz)
        for fmt, ext, ro in (("relion5", "star", {"tomo_size_xyz": size_txt,
                                                    "tilt_series_pixel_size": vs}),
                             ("dynamo", "tbl", {})):
            if not len(res.table):
                continue
            path = work / f"picks_{i}.{ext}"
            table = res.table.copy()
            table["tomo_name"] = f"tomo_{i}"
            write_particles(path, table, format=fmt, **ro)
            back = read_particles(path, format=fmt,
                                  **(ro if fmt == "relion5" else {"voxel_size": vs}))
            pairs = _match(t_xyz, positions_voxels(back), tol)
            if pairs:
                errs[f"refined_{fmt}"] += list(angular_distance(
                    orientations(back)[[c for _, c in pairs]], t_mat[[r for r, _ in pairs]]))
        pairs = _match(t_xyz, positions_voxels(res.table), tol)
        found = {r for r, _ in pairs}
        n_true += len(truth)
        n_found += len(found)
        n_true_inner += int(inner.sum())
        n_found_inner += sum(1 for r in found if inner[r])
        n_true_most += int(most.sum())
        n_found_most += sum(1 for r in found if most[r])
        n_picks += len(res.table)
        per_tomo.append({"seed": seed, "ribosomes": len(truth), "found": len(found),
                         "picks": len(res.table), "threshold": round(res.threshold, 4),
                         "sigma": round(res.sigma, 5),
                         "defocus_um": round(cfg.defocus_angst / 1e4, 2),
                         "tilt_range": [round(cfg.tilt_min_deg, 1), round(cfg.tilt_max_deg, 1)],
                         "phase_flip": cfg.phase_flip, "sirt": cfg.sirt_iterations,
                         "simulate_s": round(t_sim), "match_s": round(t_match)})
        print(json.dumps(per_tomo[-1]), file=sys.stderr, flush=True)
        if figure_data is None:
            figure_data = (sim, res, t_xyz)
    if args.figure and figure_data is not None:
        _figure(args.figure, *figure_data)
    med = {k: (round(float(np.median(v)), 2) if v else None) for k, v in errs.items()}
    return {"tomograms": per_tomo, "voxel_size": vs, "size": args.size,
            "ribosome_recall": round(n_found / max(n_true, 1), 3),
            "ribosome_recall_away_from_faces": round(n_found_inner / max(n_true_inner, 1), 3),
            "ribosome_recall_most_inside": round(n_found_most / max(n_true_most, 1), 3),
            "ribosomes_away_from_faces": n_true_inner, "ribosomes_most_inside": n_true_most,
            "ribosomes": n_true, "picks": n_picks,
            "ribosome_precision": round(n_found / max(n_picks, 1), 3),
            "median_angular_error_deg": med,
            "n_angles": {k: len(v) for k, v in errs.items()}}


def _figure(path: str, sim, res, t_xyz: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = int(np.median(t_xyz[:, 2])) if len(t_xyz) else sim.tomogram.data.shape[0] // 2
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.6))
    ax[0].imshow(sim.tomogram.data[z], cmap="gray")
    ax[0].set_title(f"tomogram, z = {z}")
    im = ax[1].imshow(res.search.scores[z], cmap="magma", vmin=0)
    ax[1].set_title("best NCC over 12° grid")
    fig.colorbar(im, ax=ax[1], fraction=0.046)
    ax[2].imshow(np.where(res.search.index[z] >= 0, res.search.index[z], np.nan),
                 cmap="twilight", interpolation="nearest")
    ax[2].set_title("best orientation (grid index)")
    for a in ax[:2]:
        near = np.abs(t_xyz[:, 2] - z) <= 3
        a.scatter(t_xyz[near, 0], t_xyz[near, 1], s=60, facecolors="none", edgecolors="cyan",
                  label="true ribosomes (|dz| <= 3)")
        p = positions_voxels(res.table)
        pn = np.abs(p[:, 2] - z) <= 3
        a.scatter(p[pn, 0], p[pn, 1], s=12, c="lime", marker="x", label="picks")
    ax[0].legend(loc="lower right", fontsize=7)
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    sp = sub.add_parser("speed")
    sp.add_argument("--orientations", type=int, default=64)
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--full", action="store_true", help="also run the whole 12-degree search")
    ac = sub.add_parser("accuracy")
    ac.add_argument("--n", type=int, default=3)
    ac.add_argument("--seed", type=int, default=100)
    ac.add_argument("--voxel-size", type=float, default=12.0)
    ac.add_argument("--step", type=float, default=12.0)
    ac.add_argument("--size", type=int, nargs=3, default=[160, 160, 80])
    ac.add_argument("--figure", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads and scipy workers, the same for both methods (on "
                        "an oversubscribed machine 1 wastes least)")
    args = parser.parse_args()
    if args.mode is None:
        args = parser.parse_args(["speed"])
    with use_threads(args.threads):
        result = speed(args) if args.mode == "speed" else accuracy(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
