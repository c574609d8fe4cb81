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
        "demo", help="simulate, segment, score, pick, export and render one tomogram",
        description="Run the whole pipeline on a simulated tomogram (no user data needed) "
                    "and write summary.json with the scores.")
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
        run_demo(out, seed=DEMO_SEED if args.seed is None else args.seed,
                 overwrite=args.force, log=report.say, progress=update)
    report.summary(f"demo in {out} (summary.json, view.png)")
    return 0
