"""``cryovis pick --method template``: the checks before the search, and the search.

:func:`plan_template` reads and checks everything the search needs (template, mask,
positions, settings, outputs, a checkpoint to resume) and fails with one line before any
expensive work; :func:`run_template` runs the search with progress on stderr and writes the
score and orientation maps when asked. The library is ``picking.template``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CryovisError
from .geometry import read_picks
from .options import read_input_volume
from .progress import Report


@dataclasses.dataclass
class TemplateJob:
    """A checked template search: what to search with, and where its extra outputs go."""

    volume: Any
    prepared: Any
    options: Any
    grid: np.ndarray
    template_path: str
    classes: list[str]
    positions_xyz: np.ndarray | None
    position_classes: np.ndarray | None
    checkpoint: Path | None
    scores_out: Path | None
    angles_out: Path | None
    force: bool

    @property
    def outputs(self) -> list[Path]:
        """The map files the search writes (checked with the picks before any work)."""
        out = [p for p in (self.scores_out, self.angles_out) if p is not None]
        if self.angles_out is not None:
            out.append(angles_table(self.angles_out))
        return out


def angles_table(angles_out: Path) -> Path:
    """The CSV next to ``--angles-out`` whose row i holds orientation i."""
    return Path(str(angles_out) + ".angles.csv")


def plan_template(args, volume, device: str, plan) -> TemplateJob:
    """Check every input of ``--method template`` before the search (CryovisError: one line).

    ``volume`` is the tomogram (voxel size known), ``plan`` the picks' export plan.
    """
    from ..picking.masks import detect_polarity
    from ..picking.template import TemplateMatchOptions, check_options, check_sizes
    from ..picking.template import prepare_template as prepare
    from ..picking.template.engine import load_checkpoint
    from ..picking.template.match import fingerprint
    from ..picking.template.so3 import uniform_grid

    polarity = "light" if args.invert else args.polarity
    if polarity == "auto":
        polarity = detect_polarity(np.asarray(volume.data))
    options = TemplateMatchOptions(
        angular_step_deg=args.angular_step, symmetry=args.symmetry,
        low_pass_angst=args.low_pass, high_pass_angst=args.high_pass,
        tilt_range_deg=tuple(args.tilt_range) if args.tilt_range else None,
        defocus_um=args.defocus, voltage_kv=args.voltage, cs_mm=args.cs,
        amplitude_contrast=args.amplitude_contrast, phase_flipped=args.phase_flipped,
        polarity=polarity, n_false_positives=args.n_false_positives,
        threshold=args.threshold, max_picks=args.max_particles, refine=not args.no_refine,
        rescale_template=args.rescale_template, device=device, batch=args.batch)
    try:
        check_options(options)
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    template = read_input_volume(args.template, what="template")
    mask = read_input_volume(args.mask, what="template mask") if args.mask else None
    vs = float(volume.voxel_size)
    try:
        prepared = prepare(template, vs, options, mask=mask, name=str(args.template))
        check_sizes(volume.data.shape, prepared, name=str(args.template))
        grid = uniform_grid(options.angular_step_deg, options.symmetry)
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    positions = position_classes = None
    if args.positions is not None:
        from formats import positions_voxels

        table = read_picks(args.positions, volume, args, binning=args.binning, inside=True)
        positions = positions_voxels(table)
        position_classes = table["class"].astype(str).to_numpy() if "class" in table else None
    checkpoint = None
    if positions is None:
        checkpoint = Path(args.checkpoint) if args.checkpoint else \
            Path(str(plan.path) + ".tm-checkpoint.npz")
        if checkpoint.is_dir():
            raise CryovisError(f"{checkpoint}: is a folder; --checkpoint must be a file name")
        if checkpoint.exists():
            key = fingerprint(np.asarray(volume.data, dtype=np.float32), prepared, grid, options)
            try:
                load_checkpoint(checkpoint, key, tuple(volume.data.shape))
            except ValueError as exc:
                if not args.force:
                    raise CryovisError(f"{exc} (or pass --force)") from None
                checkpoint.unlink()
            except (OSError, KeyError) as exc:
                raise CryovisError(f"{checkpoint}: not a template-matching checkpoint "
                                   f"({exc})") from None
    name = Path(args.template).stem
    classes = list(dict.fromkeys(position_classes)) if position_classes is not None else [name]
    return TemplateJob(volume=volume, prepared=prepared, options=options, grid=grid,
                       template_path=str(args.template), classes=classes,
                       positions_xyz=positions, position_classes=position_classes,
                       checkpoint=checkpoint,
                       scores_out=Path(args.scores_out) if args.scores_out else None,
                       angles_out=Path(args.angles_out) if args.angles_out else None,
                       force=args.force)


def run_template(job: TemplateJob, report: Report) -> tuple[Any, dict]:
    """Search (global, or around ``job.positions_xyz``); returns the picks and a summary."""
    from formats import Volume, make_table, write_particles, write_volume

    from ..picking.template import match_template

    volume, prepared, options = job.volume, job.prepared, job.options
    shape = "x".join(str(n) for n in volume.data.shape[::-1])
    where = (f"around {len(job.positions_xyz)} given picks" if job.positions_xyz is not None
             else f"{shape} voxels")
    report.say(f"{job.template_path}: {prepared.size}^3 template, {len(job.grid)} "
               f"orientations ({options.angular_step_deg:g}° grid, {options.symmetry}), "
               f"{where}, dense matter {options.polarity}")
    if job.checkpoint is not None and job.checkpoint.exists():
        report.say(f"resuming from {job.checkpoint}")
    vs = float(volume.voxel_size)

    def write_maps(search, grid) -> None:
        if job.scores_out is not None:
            write_volume(job.scores_out, Volume(search.scores, voxel_size=vs),
                         overwrite=job.force)
        if job.angles_out is not None:
            write_volume(job.angles_out, Volume(search.index.astype(np.float32),
                                                voxel_size=vs), overwrite=job.force)
            # the CSV writer turns the matrices into RELION angles: row i is orientation i
            write_particles(angles_table(job.angles_out),
                            make_table(np.zeros((len(grid), 3)), matrices=grid),
                            format="csv", overwrite=job.force)

    with report.bar("orientations", len(job.grid)) as update:
        try:
            result = match_template(
                volume, prepared, options, positions_xyz=job.positions_xyz,
                checkpoint=job.checkpoint, progress=lambda done, total, _s: update(done, total),
                class_name=job.classes[0], on_search=write_maps)
        except ValueError as exc:
            raise CryovisError(str(exc)) from None
        except KeyboardInterrupt:
            if job.checkpoint is not None and job.checkpoint.exists():
                report.say(f"search state saved in {job.checkpoint}: rerun the same command "
                           "to resume")
            raise
    table = result.table
    if job.position_classes is not None and len(table) == len(job.position_classes):
        table["class"] = job.position_classes
    if job.checkpoint is not None and job.checkpoint.exists():
        job.checkpoint.unlink()
    info = {"n_picks": len(table), "polarity": options.polarity,
            "template": job.template_path, "angular_step_deg": options.angular_step_deg,
            "symmetry": options.symmetry, "orientations": len(result.grid),
            "score_cutoff": float(result.threshold) if np.isfinite(result.threshold) else None,
            "score_sigma": result.sigma, "refined": options.refine,
            "outputs_maps": [str(p) for p in job.outputs]}
    return table, info
