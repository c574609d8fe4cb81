"""``cryovis demo``: the main job on embedded data (see ``cryoet_integration.demo``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import require_engine


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", help="simulate, segment, score, pick, export and render one tomogram",
        description="Run the whole pipeline on a simulated tomogram (no user data needed) "
                    "and write summary.json with the scores.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--seed", type=int, default=None, help="simulator seed")
    p.add_argument("--force", action="store_true", help="redo a demo in an existing folder")
    p.set_defaults(func=_run)


def _run(args) -> int:
    require_engine("torch", "scipy", "skimage")
    from ..demo import DEMO_SEED, run_demo

    run_demo(args.out, seed=DEMO_SEED if args.seed is None else args.seed,
             overwrite=args.force)
    return 0
