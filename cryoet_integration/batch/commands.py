"""Which single commands ``cryovis batch`` runs, and how one tomogram maps onto each.

A batch subcommand is one :class:`BatchCommand` entry: the single command's name (its own
parser and ``run`` in ``cryoet_integration/commands/<name>.py`` do all the work), where its
per-tomogram output goes under ``--out DIR`` and which keys of its ``--json`` summary are
scores worth a column in the batch summary. Nothing else of a command is declared here: the
options after ``--`` are parsed by the single command's own parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import CryovisError

# Options that ``cryovis batch`` itself sets for every tomogram, so they may not come after
# ``--``. ``--threads`` may: it overrides the per-worker share batch gives each command.
BATCH_OWNED = ("--out", "--json", "--force")


@dataclass(frozen=True)
class BatchCommand:
    """One single command as a batch subcommand.

    ``output`` is the suffix of the per-tomogram output ``DIR/<stem><suffix>`` (e.g.
    ``.mrc``) or ``/`` for commands whose ``--out`` is a folder ``DIR/<stem>/``.
    ``scores`` names keys of the command's ``--json`` summary shown in the summary table.
    """

    name: str
    output: str
    help: str
    scores: tuple[str, ...] = ()

    def output_for(self, out_dir: Path, stem: str, suffix: str | None = None) -> Path:
        """The ``--out`` the single command gets for the tomogram named ``stem`` (``suffix``
        replaces the command's own, e.g. ``.tbl`` for Dynamo picks)."""
        if self.output == "/":
            return out_dir / stem
        return out_dir / f"{stem}{suffix or self.output}"


COMMANDS: dict[str, BatchCommand] = {c.name: c for c in (
    BatchCommand("segment", ".mrc", "segment every tomogram (cryovis segment)",
                 ("delivered",)),
    BatchCommand("pick", ".star", "pick particles in every tomogram (cryovis pick)",
                 ("n_picks", "per_class", "delivered")),
    BatchCommand("render", ".png", "render every tomogram (cryovis render)",
                 ("thresholds",)),
    # its inputs are segmentations (masks or probability maps), one output folder each
    BatchCommand("membranes", "/", "fit the membranes of every segmentation (cryovis "
                 "membranes)", ("info",)),
)}


def single_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``cryovis NAME`` itself (from the command's own ``register``)."""
    from ..cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # the one subparsers action
        if name in action.choices:
            return action.choices[name]
    raise CryovisError(f"cryovis {name} is not installed")


def command_argv(command: BatchCommand, tomogram: str, out: Path, options: list[str],
                 stem: str, out_dir: Path) -> list[str]:
    """The single command's argument list for one tomogram.

    ``{stem}`` (the tomogram's name) and ``{out}`` (the batch ``--out`` folder) in the
    options are replaced, so per-tomogram inputs and extra outputs can be named, e.g.
    ``-- --classes {out}/../seg/{stem}.mrc`` or ``-- --labels-out {out}/{stem}_labels.mrc``.
    """
    return [tomogram, "--out", str(out),
            *(o.replace("{stem}", stem).replace("{out}", str(out_dir)) for o in options)]


def check_options(command: BatchCommand, options: list[str]) -> argparse.Namespace:
    """Parse the options after ``--`` with the single command's parser, before any work.

    Returns the parsed options (parsed with a stand-in tomogram and output) so that the batch
    can record the parameters; a usage error is a one-line CryovisError.
    """
    for option in options:
        if option.split("=")[0] in BATCH_OWNED:
            raise CryovisError(f"{option.split('=')[0]} after --: cryovis batch sets it for "
                               "every tomogram (use the batch's own --out / --json / --force)")
    parser = single_parser(command.name)
    argv = command_argv(command, "TOMO", command.output_for(Path("DIR"), "STEM"), options,
                        "STEM", Path("DIR"))
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            return parser.parse_args(argv)
    except SystemExit:  # a usage error (one line from the house parser) or --help
        lines = said.getvalue().strip().splitlines() or [f"see cryovis {command.name} --help"]
        raise CryovisError(f"options after --: {lines[-1]}") from None
