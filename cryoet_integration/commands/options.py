"""The options and checks every ``cryovis`` command shares: one parser for each idea.

Commands add their options with the ``add_*`` helpers and check their inputs and outputs
with the ``check_*`` helpers *before* any expensive work, so that bad input ends in one
line naming the path and nothing is written. The meanings are the same in every command:

* sizes are ``XxYxZ`` voxels (or ``WxH`` pixels for images): :func:`size_arg`;
* ``--tilt-range MIN MAX``: two numbers, degrees;
* ``--json [OUT]``: results as JSON on stdout (no ``OUT``, or ``-``) or in the file ``OUT``;
  readable progress and summaries always go to stderr;
* ``--force``: replace existing outputs (never replaced otherwise);
* missing output folders are created (commands say so in their help);
* ``--threads N``: CPU threads, by default the CPUs this process may use
  (``OMP_NUM_THREADS`` if set, else the scheduler's affinity mask);
* ``--device auto|cpu|cuda|cuda:N``: where torch computes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import CryovisError

CREATES_DIRS = "missing folders are created"
# The volume files ``formats.write_volume`` writes (MRC family, EM, TIFF).
VOLUME_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".em", ".tif", ".tiff")


def size_arg(names: str = "XxYxZ", minimum: int = 1):
    """An argparse ``type`` that parses ``AxBxC`` into a tuple of ints, each >= ``minimum``.

    ``names`` is the expected form (``"XxYxZ"`` voxels, ``"WxH"`` pixels); its number of
    ``x``-separated parts is the number of values.
    """
    n = len(names.split("x"))

    def parse(text: str) -> tuple[int, ...]:
        try:
            parts = tuple(int(p) for p in text.lower().split("x"))
        except ValueError:
            parts = ()
        if len(parts) != n or min(parts) < minimum:
            raise argparse.ArgumentTypeError(
                f"expected {names}, each a whole number >= {minimum} (got '{text}')")
        return parts

    parse.__name__ = names  # argparse names the type in its error messages
    return parse


def add_tilt_range(parser: argparse.ArgumentParser, help: str) -> None:
    """``--tilt-range MIN MAX`` (degrees); ``help`` says what it is for."""
    parser.add_argument("--tilt-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help=help)


def add_json(parser: argparse.ArgumentParser, what: str = "the results") -> None:
    """``--json [OUT]``: JSON on stdout, or in the file OUT."""
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT",
                        help=f"write {what} as JSON to OUT (no OUT or '-': stdout)")


def json_file(args: argparse.Namespace) -> Path | None:
    """The file ``--json OUT`` names, or None (no ``--json``, or JSON to stdout)."""
    value = getattr(args, "json", None)
    return None if value in (None, "-") else Path(value)


def json_to_stdout(args: argparse.Namespace) -> bool:
    """Whether ``--json`` sends the JSON to stdout."""
    return getattr(args, "json", None) == "-"


def write_json_result(args: argparse.Namespace, result: Any) -> None:
    """Honour ``--json``: print ``result`` to stdout or write it to the file OUT."""
    from ..json_output import write_json

    if getattr(args, "json", None) is not None:
        write_json(args.json, result, overwrite=getattr(args, "force", False))


def read_config(text: str, option: str = "--config") -> dict:
    """The JSON object ``option`` gives, as a file name or inline text."""
    path = Path(text)
    try:
        data = json.loads(path.read_text() if path.is_file() else text)
    except (OSError, json.JSONDecodeError) as exc:
        raise CryovisError(f"{option}: not a JSON object or file ({exc})") from None
    if not isinstance(data, dict):
        raise CryovisError(f"{option}: expected a JSON object")
    return data


def add_training_budget(parser: argparse.ArgumentParser, config_example: str) -> None:
    """``--config JSON``, ``--minutes N``, ``--max-steps N``, ``--resume``: how every
    ``cryovis train`` kind is configured and budgeted; ``config_example`` is a JSON object
    shown in the help."""
    parser.add_argument("--config", default=None, metavar="JSON",
                        help=f"training options as a JSON file or string, e.g. "
                        f"'{config_example}'")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop this session after N minutes (state saved; --resume "
                        "continues)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="total optimisation steps")
    parser.add_argument("--resume", action="store_true", help="continue from MODEL.state.pt")


def check_training_budget(args: argparse.Namespace) -> None:
    """Refuse ``--max-steps`` / ``--minutes`` that cannot train (before any work: a recipe
    simulates its data first)."""
    if args.max_steps is not None and args.max_steps < 1:
        raise CryovisError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.minutes is not None and not args.minutes > 0:
        raise CryovisError(f"--minutes must be > 0, got {args.minutes:g}")


def training_config(args: argparse.Namespace, config: dict, **overrides: Any) -> dict:
    """``config`` updated by ``--config``, then by ``--max-steps`` and the ``overrides``
    given on the command line (``None`` = not given)."""
    if args.config:
        config.update(read_config(args.config))
    given = {"max_steps": args.max_steps, **overrides}
    config.update({k: v for k, v in given.items() if v is not None})
    return config


def add_force(parser: argparse.ArgumentParser) -> None:
    """``--force``."""
    parser.add_argument("--force", action="store_true", help="replace existing outputs")


PRIOR_RULES = ("auto", "estimate", "strokes")


def add_priors(parser: argparse.ArgumentParser) -> None:
    """``--priors auto|estimate|strokes``: the class-prior rule of the weak classifier and of
    networks trained on its soft labels (``pseudolabel.priors``; docs/pseudolabel.md)."""
    parser.add_argument("--priors", choices=PRIOR_RULES, default="auto",
                        help="class priors: estimate them on this tomogram (EM), or keep the "
                        "training mix (the strokes', or for a network its training labels'); "
                        "auto (default) estimates only on the painted tomogram itself and "
                        "keeps the mix on any other, where EM was measured to erase the rare "
                        "classes (docs/pseudolabel.md)")


def available_cpus() -> int:
    """CPUs this process may use: ``OMP_NUM_THREADS`` if set, else its affinity mask."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (default: :func:`available_cpus`, shown as the number)."""
    n = available_cpus()
    parser.add_argument("--threads", type=_positive_int, default=n, metavar="N",
                        help=f"CPU threads (default: the {n} CPUs this process may use)")


@contextlib.contextmanager
def use_threads(n: int) -> Iterator[None]:
    """Limit torch (if installed) and scipy's FFTs to ``n`` threads inside the block."""
    import scipy.fft

    try:
        import torch
    except ImportError:
        torch = None
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with scipy.fft.set_workers(n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (checked by ``segmentation.device.resolve_device``)."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="torch device: auto (the GPU when there is one), cpu, cuda, cuda:N")


def _writable_folder(folder: Path, target: Path | None = None) -> None:
    """Raise CryovisError naming ``target`` (or the folder) unless ``folder`` is, or can be
    created as, a folder this process can write into."""
    name = target if target is not None else folder
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise CryovisError(f"{name}: cannot create the folder {folder} ({existing} is a file)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError:
        raise CryovisError(f"{name}: cannot write into the folder {existing}") from None


def check_output(path: str | Path, force: bool, suffixes: Sequence[str] | None = None,
                 what: str = "output") -> Path:
    """Refuse, before any work, an output file that could not be written.

    A folder given as a file, an extension not in ``suffixes`` (lower case, with the dot),
    an existing file without ``force`` and an output folder that is not writable each give
    a one-line CryovisError naming the path. A missing folder is fine (it is created by
    :func:`make_folders` when the command writes).
    """
    target = Path(path)
    if target.is_dir():
        raise CryovisError(f"{target}: is a folder; the {what} must be a file name")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise CryovisError(f"{target}: unknown {what} extension '{target.suffix or '(none)'}' "
                           f"(expected {', '.join(suffixes)})")
    if target.exists() and not force:
        raise CryovisError(f"{target}: file exists (use --force to replace it)")
    _writable_folder(target.parent, target)
    return target


def check_outputs(paths: Iterable[str | Path | None], force: bool) -> list[Path]:
    """:func:`check_output` for each given path (None skipped); also refuses duplicates."""
    checked = [check_output(p, force) for p in paths if p is not None]
    seen: set[Path] = set()
    for p in checked:
        if p.resolve() in seen:
            raise CryovisError(f"{p}: named as two different outputs")
        seen.add(p.resolve())
    return checked


def check_output_folder(path: str | Path) -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CryovisError(f"{folder}: exists and is not a folder")
    _writable_folder(folder)
    return folder


def make_folders(paths: Iterable[str | Path | None]) -> None:
    """Create the missing parent folders of checked output files."""
    for p in paths:
        if p is not None:
            Path(p).parent.mkdir(parents=True, exist_ok=True)


def read_input_volume(path: str | Path, voxel_size: float | None = None,
                      what: str = "volume", ndim: int | None = 3,
                      target_voxel_size: float | None = None,
                      mmap: bool | None = None) -> Any:
    """Read a volume that a command computes on: ``ndim``-dimensional and finite.

    The finiteness scan is ``formats``' (slab by slab, so a memory map is not loaded whole);
    a NaN or infinite voxel is bad input, refused with the file name and the count. For a
    multiscale OME-Zarr the level nearest ``target_voxel_size`` (Å, e.g. the model's) is
    read, lazily. ``mmap``: as ``formats.read_volume`` (``True``: nothing is loaded).
    """
    from formats import check_finite, read_volume

    volume = read_volume(path, mmap=mmap, voxel_size=voxel_size,
                         target_voxel_size=target_voxel_size)
    if ndim is not None and volume.data.ndim != ndim:
        raise CryovisError(f"{path}: expected a {ndim}D {what}, got shape "
                           f"{tuple(volume.data.shape)}")
    check_finite(volume)
    return volume


def check_same_grid(reference: Any, reference_path: str | Path, other: Any,
                    other_path: str | Path) -> None:
    """Refuse two volumes whose shapes ``[z, y, x]`` or voxel sizes (Å, 0.1 %) differ.

    A voxel size of 0 (unknown) matches any.
    """
    if tuple(other.data.shape) != tuple(reference.data.shape):
        raise CryovisError(f"{other_path}: shape {tuple(other.data.shape)} (z, y, x) does not "
                           f"match {reference_path}'s {tuple(reference.data.shape)}")
    a, b = float(reference.voxel_size), float(other.voxel_size)
    if a > 0 and b > 0 and abs(a - b) > 1e-3 * a:
        raise CryovisError(f"{other_path}: voxel size {b:g} Å does not match "
                           f"{reference_path}'s {a:g} Å")
