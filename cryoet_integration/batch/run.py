"""Run one single command over many tomograms on dask.distributed, resumably.

:func:`plan_batch` expands the inputs, parses the single command's options with its own
parser and decides from the manifest which tomograms are finished (same input, same
parameters, outputs unchanged) and which are (re)done; :func:`run_batch` submits those, one
dask task per tomogram, records every result in the manifest as it arrives and collects the
per-tomogram errors instead of stopping.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CryovisError
from .commands import BatchCommand, check_options, command_argv
from .manifest import Manifest, Record, params_hash

# Parsed options that do not change a command's results (so changing them redoes nothing).
_NOT_PARAMETERS = ("tomogram", "out", "json", "force", "threads", "device", "func", "debug",
                   "command")


@dataclass
class Item:
    """One tomogram of a batch: its input, name, ``--out`` and what is to be done."""

    input: str
    stem: str
    out: Path
    action: str  # "run" or "skip"
    force: bool = False
    record: Record | None = None


@dataclass
class BatchPlan:
    """What a batch will do: the command, its options, the parameter hash and the items."""

    command: BatchCommand
    out_dir: Path
    options: list[str]
    params: str
    items: list[Item] = field(default_factory=list)


def input_stem(path: str) -> str:
    """A tomogram's name: the file name without its volume suffix (``.ome.zarr`` counts as
    one)."""
    name = Path(path.rstrip("/")).name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def expand_inputs(pattern: str) -> list[tuple[str, str]]:
    """``(path, name)`` of the tomograms ``pattern`` names (a glob, ``**`` recursive; files
    and ``.zarr`` folders), sorted; CryovisError when none."""
    paths = sorted(glob.glob(pattern, recursive=True))
    found = [p for p in paths if Path(p).is_file() or
             (Path(p).is_dir() and p.rstrip("/").lower().endswith(".zarr"))]
    if not found:
        raise CryovisError(f"{pattern}: matches no tomogram (quote the pattern so the shell "
                           "does not expand it)")
    return [(os.path.abspath(p), input_stem(p)) for p in found]


def plan_batch(command: BatchCommand, inputs: list[tuple[str, str]], out_dir: Path,
               options: list[str], force: bool, manifest: Manifest,
               suffix: str | None = None) -> BatchPlan:
    """Check the options and the inputs and decide, per tomogram, to skip or run it.

    ``inputs`` are ``(path, name)``; outputs are ``DIR/<name><suffix>`` (``suffix``: the
    command's own by default). A tomogram is skipped when the manifest holds it as done
    with the same parameters and neither the input nor an output changed since. Outputs a
    previous batch of this manifest wrote are replaced when redone; any other existing
    output only with ``force`` (the single command refuses it otherwise, and that tomogram
    fails with its message).
    """
    parsed = check_options(command, options)
    params = params_hash({"command": command.name, **{
        k: v for k, v in vars(parsed).items() if k not in _NOT_PARAMETERS}})
    plan = BatchPlan(command, out_dir, options, params)
    stems: dict[str, str] = {}
    for path, stem in inputs:
        if stem in stems:
            raise CryovisError(f"{path}: same name '{stem}' as {stems[stem]} (their outputs "
                               "would collide); batch them into different --out folders")
        stems[stem] = path
        record = manifest.get(command.name, path)
        done = record is not None and record.finished(params)
        plan.items.append(Item(path, stem, command.output_for(out_dir, stem, suffix),
                               "skip" if done and not force else "run",
                               force=force or record is not None, record=record))
    return plan


@dataclass
class Outcome:
    """The result of one tomogram in this run (``status``: done, failed or skipped)."""

    input: str
    stem: str
    status: str
    seconds: float | None
    outputs: list[str]
    error: str | None
    scores: dict[str, Any]
    rc: int = 0
    cpu_seconds: float | None = None  # of this run's task (None: skipped or lost)


def _scores(command: BatchCommand, summary: dict[str, Any] | None) -> dict[str, Any]:
    return {k: summary[k] for k in command.scores if summary and k in summary}


def run_batch(plan: BatchPlan, client: Any, manifest: Manifest,
              progress: Callable[[int, int], None] | None = None,
              on_result: Callable[[Outcome], None] | None = None,
              deliver: Callable[[Item, dict[str, Any]], list[str]] | None = None
              ) -> list[Outcome]:
    """Submit every tomogram to be run, one task each, and record the results as they come.

    A task whose worker dies is rescheduled by dask (its output is written atomically, so
    the dead attempt leaves no partial file); a task that fails (bad input, a bug) is
    recorded with the command's one-line error and the others go on. ``deliver(item,
    summary)`` is called with the single command's JSON summary of each finished tomogram
    (e.g. to store it in a copick project) and returns what it wrote; its CryovisError
    fails that tomogram.
    """
    from distributed import as_completed

    from .tasks import run_one

    outcomes: dict[str, Outcome] = {}
    for item in plan.items:
        if item.action == "skip" and item.record is not None:
            rec = item.record
            outcomes[item.input] = Outcome(item.input, item.stem, "skipped", rec.seconds,
                                           list(rec.outputs), None,
                                           _scores(plan.command, rec.summary))
    todo = [item for item in plan.items if item.action == "run"]
    logs = plan.out_dir / "logs"
    futures = {}
    for item in todo:
        manifest.submit(plan.command.name, item.input, plan.params)
        argv = command_argv(plan.command, item.input, item.out, plan.options, item.stem,
                            plan.out_dir)
        future = client.submit(run_one, plan.command.name, argv, item.force,
                               str(logs / f"{item.stem}.log"), key=f"cryovis-{plan.command.name}"
                               f"-{item.stem}-{plan.params}-{time.time_ns()}", pure=False,
                               retries=0)
        futures[future] = item
    done = len(outcomes)
    total = len(plan.items)
    if progress is not None:
        progress(done, total)
    for future in as_completed(list(futures)) if futures else ():
        item = futures.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a task lost (e.g. killed too often)
            result = {"status": "failed", "rc": 1, "outputs": {}, "summary": None,
                      "seconds": None, "error": f"task lost: {type(exc).__name__}: {exc}"}
        if deliver is not None and result["status"] == "done":
            try:
                result["summary"] = {**(result.get("summary") or {}),
                                     "delivered": deliver(item, result.get("summary") or {})}
            except CryovisError as exc:
                result.update(status="failed", rc=2, error=f"{item.stem}: {exc}")
        manifest.finish(plan.command.name, item.input, result)
        outcome = Outcome(item.input, item.stem, result["status"], result.get("seconds"),
                          list(result["outputs"]), result.get("error"),
                          _scores(plan.command, result.get("summary")), int(result["rc"]),
                          result.get("cpu_seconds"))
        outcomes[item.input] = outcome
        done += 1
        if progress is not None:
            progress(done, total)
        if on_result is not None:
            on_result(outcome)
    return [outcomes[item.input] for item in plan.items]
