"""``cryovis demo``: the main job on embedded data (see ``cryoet_integration.demo``)."""

from __future__ import annotations

from pathlib import Path

from ..demo import DEMO_SEED
from ..errors import require_engine
from .options import CREATES_DIRS, add_threads, check_output_folder, use_threads
from .progress import Report


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", help="simulate, segment, pick, classify, orient, average, export and render "
                     "one tomogram",
        description="Run the whole pipeline on a simulated tomogram (no user data needed): "
                    "membranes, picks, classes, orientations of one class, its average, "
                    "RELION 5 and Dynamo files, a view and a turntable, each scored against "
                    "the ground truth and the baselines; writes summary.json and prints a "
                    "summary table.")
    p.add_argument("--out", type=Path, default=Path("demo_out"),
                   help=f"output folder (default demo_out; {CREATES_DIRS})")
    p.add_argument("--seed", type=int, default=None, help=f"simulator seed (default {DEMO_SEED})")
    p.add_argument("--force", action="store_true", help="redo a demo in an existing folder")
    add_threads(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    require_engine("torch", "scipy", "skimage")
    from ..demo import run_demo

    out = check_output_folder(args.out)
    report = Report("demo")
    with use_threads(args.threads), report.bar("segmenting tiles") as update:
        summary = run_demo(out, seed=DEMO_SEED if args.seed is None else args.seed,
                           overwrite=args.force, log=report.say, progress=update)
    print_summary(summary)
    report.summary(f"demo in {out} (summary.json, view.png, turntable.gif)")
    return 0


def _fmt(value, digits: int = 3, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def summary_rows(summary: dict) -> list[tuple[str, str, str, str, str]]:
    """(step, wall seconds, CPU seconds, what it scored, the baseline or reference) per step
    of the demo."""
    sec = summary["seconds"]
    seg, pick = summary["segmentation"], summary["picking"]
    base, cls = summary["baselines"], summary["classification"]
    ori, avg = summary["orientation"], summary["average"]
    rows = [
        ("simulate", f"{summary['size_xyz'][0]}x{summary['size_xyz'][1]}x"
                     f"{summary['size_xyz'][2]} at {summary['voxel_size_angst']:.2f} Å", ""),
        ("segment", f"membrane Dice {_fmt(seg['dice'])}, Surface-Dice "
                    f"{_fmt(seg.get('surface_dice'))}",
         f"threshold baseline Dice {_fmt(base['threshold_membranes']['dice'])}"),
        ("membranes", f"{summary['membranes']['instances']} surfaces, Dice "
                      f"{_fmt(summary['membranes']['dice_fitted'])}", ""),
        ("pick", f"F1 {_fmt(pick['F1'])} (P {_fmt(pick['precision'])}, R "
                 f"{_fmt(pick['recall'])})",
         f"blob picker F1 {_fmt(base['blob_picker']['F1'])}"),
        ("classify", f"class macro F1 {_fmt(cls['F1_macro'])}",
         f"picker's classes {_fmt(cls['picker_F1_macro'])}"),
    ]
    if "skipped" in ori:
        rows.append(("orient", ori["skipped"], ""))
    else:
        rows += [
            ("orient", f"{ori['n_picks']} {ori['class']} ({ori['symmetry']}): median error "
                       f"{_fmt(ori['median_deg'], 1, '°')} over {ori['n_matched']} true hits; "
                       f"{ori['duplicates_removed']} duplicate picks removed",
             f"grid {ori['angular_step_deg']:g}°, {ori['orientations']} orientations"),
            ("export", "RELION 5 + Dynamo", ""),
            ("average", f"{avg['n_particles']} particles, half maps FSC 0.143 "
                        f"{_fmt(avg['fsc0143_angst'], 1, ' Å')}",
             f"vs true map: cc {_fmt(avg['correlation_with_truth'])}, FSC 0.5 "
             f"{_fmt(avg['fsc05_with_truth_angst'], 1, ' Å')}"),
        ]
    rows += [("baselines", "blob picker, thresholded density", ""),
             ("render", "view.png", ""), ("turntable", "turntable.gif", "")]
    cpu = summary["cpu_seconds"]
    return [(step, f"{sec[step]:.1f}" if step in sec else "",
             f"{cpu[step]:.1f}" if step in cpu else "", score, ref)
            for step, score, ref in rows]


def print_summary(summary: dict) -> None:
    """The demo's summary as rich tables on stderr: steps (seconds, scores, baselines) and
    the files written."""
    from rich.console import Console
    from rich.table import Table

    steps = Table(title="cryovis demo", title_justify="left")
    for col, justify in (("step", "left"), ("s", "right"), ("CPU s", "right"), ("result", "left"),
                         ("baseline / reference", "left")):
        steps.add_column(col, justify=justify)
    for row in summary_rows(summary):
        steps.add_row(*row)
    load = ", ".join(f"{v:.1f}" for v in summary["load_average"])
    steps.add_row("total", f"{summary['total_seconds']:.1f}",
                  f"{summary['total_cpu_seconds']:.1f}", f"load average at the end {load}", "")
    files = Table(title="files written", title_justify="left")
    files.add_column("what")
    files.add_column("path")
    for key, path in summary["files"].items():
        if isinstance(path, str):
            files.add_row(key, path)
    console = Console(stderr=True, width=120)
    console.print(steps)
    console.print(files)
