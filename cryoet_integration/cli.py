"""The ``cryovis`` command line: one subcommand per capability.

Each subcommand lives in ``cryoet_integration/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Command modules import their heavy dependencies inside ``func`` so that ``cryovis --help``,
``info`` and ``convert`` work with the base install.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

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
    "classify",
    "membranes",
    "extract",
    "average",
    "pseudolabel",
    "train",
    "render",
    "batch",
    "demo",
]


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands whose module is absent are skipped)."""
    parser = _Parser(
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
    """Run ``cryovis``; returns the exit status (0 ok, 1 internal error, 2 bad input).

    Bad input is what the project itself refuses (CryovisError, FormatError): one line, exit
    2. Anything else is a failure of ours or of the machine (a bug, a full disk): one line,
    exit 1, with the traceback written to a log file (or shown with ``--debug``).
    """
    from formats import FormatError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cryovis: interrupted", file=sys.stderr)
        return 130
    except (CryovisError, FormatError) as exc:
        if args.debug:
            raise
        print(f"cryovis {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
        if args.debug:
            raise
        log = _write_traceback(args.command)
        where = f"traceback in {log}" if log else "rerun with --debug for the traceback"
        if isinstance(exc, OSError) and exc.filename:
            what = f"{exc.strerror or type(exc).__name__}: {_target_name(exc.filename)}"
            print(f"cryovis {args.command}: error: {what} ({where})", file=sys.stderr)
        else:
            print(f"cryovis {args.command}: internal error: {type(exc).__name__}: "
                  f"{_one_line(exc)} ({where}; please report it)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _target_name(filename: str) -> str:
    """The file a user named, for the hidden temporary ``.NAME.XXXX.partSUFFIX`` of an
    atomic write (``formats``' naming) or any other path."""
    path = Path(str(filename))
    match = re.fullmatch(r"\.(.+)\.[^.]+\.part(\.[^.]*)?", path.name)
    return str(path.with_name(match.group(1) + (match.group(2) or ""))) if match else str(path)


def _write_traceback(command: str) -> Path | None:
    """Write the current exception's traceback to a log file; its path, or None."""
    text = traceback.format_exc()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (Path.home() / ".cache" / "cryovis" / "logs",
                   Path(tempfile.gettempdir())):
        log = folder / f"cryovis-{command}-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            log.write_text(f"cryovis {__version__}: {' '.join(sys.argv)}\n{text}")
        except OSError:
            continue
        return log
    return None


if __name__ == "__main__":
    sys.exit(main())
