"""The ``cryovis`` command line: one subcommand per capability.

Each subcommand lives in ``cryoet_integration/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Command modules import their heavy dependencies inside ``func`` so that ``cryovis --help``,
``info`` and ``convert`` work with the base install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import CryovisError

# Order is the order in `cryovis --help`.
COMMAND_MODULES = [
    "info",
    "convert",
    "simulate",
    "evaluate",
    "segment",
    "pick",
    "train",
    "render",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands whose module is absent are skipped)."""
    parser = argparse.ArgumentParser(
        prog="cryovis",
        description="Segment, pick, render and convert cryo-electron tomograms.",
    )
    parser.add_argument("--version", action="version", version=f"cryovis {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cryoet_integration.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cryoet_integration.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cryovis``; returns the exit status (0 ok, 1 internal error, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cryovis: interrupted", file=sys.stderr)
        return 130
    except (CryovisError, ValueError, OSError) as exc:
        # FormatError is a ValueError; OSError covers unreadable paths and full disks.
        if args.debug:
            raise
        print(f"cryovis {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
        if args.debug:
            raise
        print(f"cryovis {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)}"
              " (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
