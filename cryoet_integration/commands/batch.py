"""``cryovis batch``: run segment, pick or render over many tomograms on dask.distributed.

``cryovis batch COMMAND 'GLOB' --out DIR [--scheduler ADDRESS] [--workers N] [-- OPTIONS]``
runs ``cryovis COMMAND TOMO --out DIR/<stem>.<ext> OPTIONS`` for every tomogram, one dask
task each, on an in-process LocalCluster of N worker processes or on the cluster whose
scheduler is at ADDRESS. OPTIONS are the single command's own ({stem} and {out} in them are
replaced per tomogram). A manifest in DIR makes the batch resumable: re-running skips
finished tomograms and redoes failed or changed ones. Per-tomogram errors are reported at
the end; the batch goes on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CryovisError, require_engine
from .options import add_force, add_json, check_output_folder, write_json_result
from .progress import Report


def register(subparsers) -> None:
    from ..batch.commands import COMMANDS

    parser = subparsers.add_parser(
        "batch", help="run segment, pick or render over many tomograms (dask.distributed)",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    base = type(parser)

    class BatchParser(base):  # type: ignore[misc, valid-type]
        """The single command's options are everything after ``--``, untouched."""

        def parse_known_args(self, args=None, namespace=None):
            args = list(sys.argv[1:] if args is None else args)
            rest: list[str] = []
            if "--" in args:
                cut = args.index("--")
                args, rest = args[:cut], args[cut + 1:]
            namespace, extras = super().parse_known_args(args, namespace)
            namespace.options = rest
            return namespace, extras

    sub = parser.add_subparsers(dest="batch_command", metavar="COMMAND",
                                parser_class=BatchParser)
    sub.required = True
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help,
                           description=f"{command.help}: cryovis {command.name} TOMO --out "
                           f"DIR/<stem>{command.output} OPTIONS for every tomogram GLOB names",
                           epilog=f"-- OPTIONS: everything after -- goes to cryovis "
                           f"{command.name} (see cryovis {command.name} --help); {{stem}} and "
                           "{out} in them are replaced per tomogram")
        p.add_argument("inputs", metavar="GLOB",
                       help="tomograms: a quoted glob of files or OME-Zarr .zarr folders "
                       "('**' recursive), or a copick project's configuration JSON")
        p.add_argument("--out", required=True, metavar="DIR",
                       help="output folder (outputs, logs/, the manifest); created if missing")
        p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="an existing dask scheduler, e.g. tcp://host:8786 (default: a "
                       "LocalCluster in this process)")
        p.add_argument("--workers", type=int, default=2, metavar="N",
                       help="LocalCluster worker processes (default 2)")
        p.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                       help="CPU threads of each worker's tomogram (default: local CPUs / N; "
                       "on --scheduler: the worker's OMP_NUM_THREADS or dask thread count)")
        if command.output != "/":
            p.add_argument("--ext", default=None, metavar="SUFFIX",
                           help=f"extension of each output (default {command.output}"
                           f"{'; .csv for a copick project' if command.name == 'pick' else ''})")
        copick = p.add_argument_group("copick projects (GLOB is the configuration JSON)")
        copick.add_argument("--copick-user", default="cryovis", metavar="USER",
                            help="user id of the picks and segmentations written back "
                            "(default cryovis)")
        copick.add_argument("--copick-session", default="0", metavar="SESSION",
                            help="session id of what is written back (default 0)")
        copick.add_argument("--copick-voxel-spacing", type=float, default=None, metavar="A",
                            help="the runs' voxel spacing to read (default: each run's "
                            "finest)")
        copick.add_argument("--tomo-type", default=None,
                            help="tomogram type to read, e.g. wbp, denoised (default: the "
                            "first by name)")
        add_json(p, "the batch summary")
        add_force(p)
        p.set_defaults(func=run, options=[])


def run(args: argparse.Namespace) -> int:
    require_engine("torch", "scipy")
    require_engine("distributed", extra="batch")
    from formats import is_copick_project

    from ..batch.cluster import connect, dashboard_link
    from ..batch.commands import COMMANDS
    from ..batch.manifest import Manifest
    from ..batch.run import expand_inputs, plan_batch, run_batch
    from ..batch.summary import print_summary, summary_json

    command = COMMANDS[args.batch_command]
    if args.workers < 1 or (args.threads_per_worker is not None and args.threads_per_worker < 1):
        raise CryovisError("--workers and --threads-per-worker must be >= 1")
    report = Report(f"batch {command.name}")
    out_dir = check_output_folder(args.out)
    project = deliver = None
    suffix = getattr(args, "ext", None)
    if suffix is not None and not suffix.startswith("."):
        suffix = f".{suffix}"
    if is_copick_project(args.inputs):
        from ..batch.copick import open_copick

        project = open_copick(args.inputs, args.copick_user, args.copick_session,
                              args.copick_voxel_spacing, args.tomo_type)
        inputs = project.inputs()
        if command.name == "pick":
            suffix = suffix or ".csv"  # read back into copick without a tomograms.star

        def deliver(item, summary: dict) -> list[str]:
            return project.write_back(command.name, item.stem, summary)
    else:
        inputs = expand_inputs(args.inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir)
    try:
        plan = plan_batch(command, inputs, out_dir, list(args.options), args.force, manifest,
                          suffix)
        skipped = sum(item.action == "skip" for item in plan.items)
        report.say(f"{len(plan.items)} tomogram(s): {len(plan.items) - skipped} to run, "
                   f"{skipped} finished before (manifest {manifest.path})")
        client = cluster = None
        try:
            if skipped < len(plan.items):
                client, cluster = connect(args.scheduler, args.workers,
                                          args.threads_per_worker)
                n = len(client.scheduler_info().get("workers", {}))
                where = args.scheduler or f"a LocalCluster of {args.workers} process(es)"
                report.say(f"{n} worker(s) on {where}")
                link = dashboard_link(client)
                if link:
                    report.say(f"dashboard: {link}")
            with report.bar("tomograms") as update:
                outcomes = run_batch(plan, client, manifest, progress=update,
                                     on_result=lambda o: o.status == "failed" and report.say(
                                         f"{Path(o.input).name}: {o.error}"),
                                     deliver=deliver)
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
    finally:
        manifest.close()
    print_summary(command, outcomes)
    result = summary_json(command, out_dir, outcomes)
    write_json_result(args, result)
    counts = result["counts"]
    report.summary(f"{counts.get('done', 0)} done, {counts.get('skipped', 0)} skipped, "
                   f"{counts.get('failed', 0)} failed; outputs in {out_dir}")
    failed = [o.rc for o in outcomes if o.status == "failed"]
    return (2 if 2 in failed else 1) if failed else 0
