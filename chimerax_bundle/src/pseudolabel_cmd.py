"""``cryovis pseudolabel``: soft class maps of a tomogram from a few strokes (weak classifier).

Strokes come as an integer label map volume open in ChimeraX (0 = unlabelled, 1..K =
classes, on the tomogram's grid), as marker sets placed on the tomogram's planes with
ChimeraX's marker mouse modes (one marker set per class, the class named by the set's
name), or both. Markers go from scene coordinates to the tomogram's voxel indices through
its scene position and grid (origin, voxel size) and are painted as balls by the engine's
own rasteriser (``cryoet_integration.pseudolabel.strokes``, in-process) into one stroke map
with the label map's strokes. The engine program then runs ``cryovis pseudolabel TOMO
--labels STROKES.mrc --classes ... --out SOFT.mrc --json SUMMARY`` (random forest on the
ilastik features, class priors by EM), or applies a saved classifier (``--classifier``),
and the K soft maps come back as one volume per class under a grouping model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    EnumOf,
    FloatArg,
    ListOf,
    ModelArg,
    ModelsArg,
    OpenFileNameArg,
    PositiveIntArg,
    SaveFileNameArg,
    StringArg,
)
from chimerax.core.errors import UserError

from . import engine, volumes

ROLE = "cryovis pseudolabel"
PRIORS = ("auto", "estimate", "strokes")
CLASSIFIER_SUFFIX = ".npz"  # the engine's saved-classifier format (arrays, no pickle)
# The engine writes <stem>_<class>.mrc and takes the names as arguments: one word each,
# and not a number (a coordinate file's numeric classes are label values, not names).
CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*")
DEFAULT_RADIUS_VOXELS = 2.0  # the engine's --point-radius default


def cryovis_pseudolabel(session, tomogram, labels=None, strokes=None, classifier=None,
                        classes=None, radius=None, save_classifier=None, priors="auto",
                        trees=None, threads=None, force=False, wait=None):
    """Soft class maps of ``tomogram`` from strokes; returns the new volumes (class order),
    or the job id while it runs.

    Args:
        labels: integer label map volume on the tomogram's grid, 0 = unlabelled.
        strokes: marker sets, one per class, named by their class.
        classifier: a classifier saved with ``saveClassifier`` (``.npz``) to apply instead.
        classes: names of the label map's values in increasing order (default classV);
            with marker sets only, the class order (the sets' names).
        radius: Å, radius of the ball painted at each marker (default 2 voxels).
        save_classifier: save the trained forest there (``.npz``; ``force`` replaces it).
        priors: ``auto``, ``estimate`` or ``strokes`` (the engine's ``--priors``).
        trees, threads: random-forest trees and CPU threads of the engine.
    """
    tomo = volumes.require_volume(tomogram, ROLE)
    vs = volumes.voxel_size(tomo)
    painted = labels is not None or strokes is not None
    if not painted and classifier is None:
        raise UserError(f"{ROLE}: no labels: give 'labels #MAP' (0 = unlabelled), 'strokes "
                        "#MARKERS,...' (one marker set per class) or 'classifier FILE'")
    if classifier is not None:
        if painted or classes or save_classifier:
            raise UserError(f"{ROLE}: classifier applies a saved classifier; labels, "
                            "strokes, classes and saveClassifier are for training one")
    if radius is not None and (strokes is None or radius < 0):
        raise UserError(f"{ROLE}: radius (Å, >= 0) is for marker strokes")
    if save_classifier is not None:
        save_classifier = Path(save_classifier).expanduser().resolve()
        if save_classifier.suffix.lower() != CLASSIFIER_SUFFIX:
            raise UserError(f"{ROLE}: saveClassifier {save_classifier}: the file must end "
                            f"in {CLASSIFIER_SUFFIX}")
        if save_classifier.exists() and not force:
            raise UserError(f"{ROLE}: saveClassifier {save_classifier} exists (add 'force "
                            "true' to replace it)")
    if painted:
        stroke_map, names = _stroke_map(tomo, vs, labels, strokes, classes, radius)
        source = _describe(stroke_map, labels, strokes)
    else:
        source = f"classifier {classifier}"

    def prepare(folder: Path):
        from formats import Volume, write_volume

        args = ["pseudolabel", volumes.to_file(tomo, folder), "--out", folder / "soft.mrc",
                "--priors", priors]
        if painted:
            path = folder / "strokes.mrc"
            write_volume(path, Volume(stroke_map, voxel_size=vs,
                                      origin=tuple(float(o) for o in tomo.data.origin)))
            args += ["--labels", path, "--classes", *names]
        else:
            args += ["--classifier", Path(classifier).expanduser().resolve()]
        for option, value in (("--save-classifier", save_classifier), ("--trees", trees),
                              ("--threads", threads)):
            if value is not None:
                args += [option, value]
        if force:
            args.append("--force")
        return args

    def read(job: engine.Job, summary: dict, folder: Path):
        return volumes.read_class_maps(summary, tomo), summary

    def apply(result) -> None:
        maps, summary = result
        created = volumes.add_class_maps(session, tomo, maps, f"{tomo.name} pseudo-labels")
        fractions = summary.get("fractions") or {}
        parts = [f"#{v.id_string} {name}" + (" (hidden)" if volumes.is_background(name)
                                              else "")
                 + (f" {100 * fractions[name]:.1f} %" if name in fractions else "")
                 for v, name in zip(created, maps)]
        saved = f"; classifier saved to {save_classifier}" if save_classifier else ""
        session.logger.info(f"{ROLE}: {len(created)} soft class maps of #{tomo.id_string} "
                            f"from {source}: {', '.join(parts)}{saved}")
        priors_used = summary.get("priors")
        if priors_used:
            session.logger.info(f"{ROLE}: class priors re-estimated on the tomogram: " + ", ".join(
                f"{n} {100 * p:.1f} %" for n, p in zip(maps, priors_used)))
        apply.result = created

    apply.result = None
    job = engine.start_engine_job(session, f"pseudolabel #{tomo.id_string}", prepare, read,
                                  apply, wait)
    return apply.result if job.applied else job.id


def _stroke_map(tomo, vs: float, labels, strokes, classes, radius
                ) -> tuple[np.ndarray, list[str]]:
    """The stroke map ``[z, y, x]`` (int16, 0 = unlabelled) of the label map and marker
    sets, and the class names of its values in increasing order. UserError (one line) for
    anything that cannot train a classifier, before any engine work."""
    weak = _engine_module("cryoet_integration.pseudolabel.weak")
    # float32 until the engine's checks (whole numbers, >= 0, two classes) have passed:
    # exact for any label a label map can sensibly hold
    stroke_map = np.zeros(tuple(int(n) for n in tomo.data.size[::-1]), np.float32)
    if classes and len(set(classes)) != len(classes):
        raise UserError(f"{ROLE}: classes {', '.join(classes)}: names must differ")
    value_of: dict[str, int] = {}
    what = "the marker strokes"
    if labels is not None:
        lab = volumes.require_volume(labels, f"{ROLE} labels")
        if lab is tomo:
            raise UserError(f"{ROLE}: the label map cannot be the tomogram itself")
        volumes.check_same_grid(tomo, [lab], f"{ROLE} labels")
        stroke_map[:] = lab.full_matrix()
        what = f"labels #{lab.id_string} ({lab.name})" + (" with the marker strokes"
                                                          if strokes is not None else "")
        values = np.unique(stroke_map[stroke_map > 0])
        names = list(classes) if classes else [f"class{v:g}" for v in values]
        if len(names) != len(values):
            raise UserError(f"{ROLE}: classes: {len(names)} names for the {len(values)} "
                            f"labels of #{lab.id_string} "
                            f"({', '.join(f'{v:g}' for v in values)})")
        value_of = dict(zip(names, (int(v) for v in values)))
    if strokes is not None:
        sets = _marker_sets(strokes)
        marker_names = list(dict.fromkeys(ms.name for ms in sets))
        if labels is None and classes:
            if sorted(classes) != sorted(marker_names):
                raise UserError(f"{ROLE}: classes {', '.join(classes)} are not the marker "
                                f"sets' names ({', '.join(marker_names)})")
            marker_names = list(classes)
        for name in marker_names:
            value_of.setdefault(name, max(value_of.values(), default=0) + 1)
    for name in value_of:
        if not CLASS_NAME.fullmatch(name):
            raise UserError(f"{ROLE}: class name {name!r} must be one word of letters, "
                            "digits and _.+-, starting with a letter (rename the marker "
                            "set, e.g. 'rename #5 membrane')")
    if strokes is not None:
        _paint_markers(stroke_map, tomo, vs, sets, marker_names, value_of, radius)
    try:
        present = _call(weak.stroke_classes, stroke_map, what)
    except UserError as exc:
        if strokes is not None and "one class only" in str(exc):
            raise UserError(f"{exc} (a marker set's name is its class: 'rename #N "
                            "membrane')") from None
        raise
    if present.max() > np.iinfo(np.int16).max:
        raise UserError(f"{ROLE}: {what}: label {present.max()} is too large")
    by_value = {v: n for n, v in value_of.items()}
    return stroke_map.astype(np.int16), [by_value[int(v)] for v in present]


def _marker_sets(models) -> list:
    """The marker sets among ``models`` (one-line UserError for another kind of model or
    an empty set)."""
    from chimerax.markers import MarkerSet

    sets = [m for m in models if isinstance(m, MarkerSet)]
    for m in models:
        if not isinstance(m, MarkerSet) and not any(m in s.all_models() for s in sets):
            raise UserError(f"{ROLE} strokes: #{m.id_string} ({m.name}) is a "
                            f"{type(m).__name__}, not a marker set")
    if not sets:
        raise UserError(f"{ROLE} strokes: no marker set given")
    for ms in sets:
        if ms.num_atoms == 0:
            raise UserError(f"{ROLE} strokes: marker set #{ms.id_string} ({ms.name}) has no "
                            "markers")
    return sets


def _paint_markers(stroke_map: np.ndarray, tomo, vs: float, sets, names: list[str],
                   value_of: dict[str, int], radius: float | None) -> None:
    """Paint the markers of ``sets`` into ``stroke_map`` with their classes' values: their
    scene coordinates as the tomogram's voxel indices (written as a coordinate file, which
    the engine's rasteriser reads as `cryovis pseudolabel --labels FILE.csv` would)."""
    import tempfile

    from formats import make_table, write_particles

    strokes_mod = _engine_module("cryoet_integration.pseudolabel.strokes")
    to_ijk = (tomo.scene_position * tomo.data.ijk_to_xyz_transform).inverse()
    limits = np.array(tomo.data.size, float) - 0.5
    xyz, classes = [], []
    for ms in sets:
        ijk = to_ijk.transform_points(ms.atoms.scene_coords)
        outside = np.any((ijk < -0.5) | (ijk > limits), axis=1)
        if outside.any():
            i = int(np.argmax(outside))
            raise UserError(f"{ROLE} strokes: marker {i + 1} of #{ms.id_string} ({ms.name}) "
                            f"at voxel {', '.join(f'{v:.1f}' for v in ijk[i])} lies outside "
                            f"the tomogram #{tomo.id_string} "
                            f"({' x '.join(str(int(n)) for n in tomo.data.size)} voxels)")
        xyz.append(ijk)
        classes += [ms.name] * len(ijk)
    table = make_table(np.concatenate(xyz), voxel_size=vs, classes=classes,
                       tomo_name=tomo.name)
    r = DEFAULT_RADIUS_VOXELS if radius is None else radius / vs
    with tempfile.TemporaryDirectory(prefix="cryovis-strokes-") as tmp:
        path = Path(tmp) / "markers.csv"
        write_particles(path, table, format="csv")
        raster, order = _call(strokes_mod.rasterise_points, path, stroke_map.shape, vs, r,
                              names)
    lut = np.array([0] + [value_of[n] for n in order], np.int16)
    painted = raster > 0
    # markers are painted after the label map: where they overlap, the markers' class wins
    stroke_map[painted] = lut[raster[painted]]


def _describe(stroke_map: np.ndarray, labels, strokes) -> str:
    from chimerax.markers import MarkerSet

    n_sets = sum(isinstance(m, MarkerSet) for m in strokes or [])
    parts = ([f"label map #{labels.id_string}"] if labels is not None else []) + \
        ([f"{n_sets} marker set(s)"] if strokes is not None else [])
    n = int(np.count_nonzero(stroke_map))
    return f"{' and '.join(parts)} ({n} painted voxels, {100 * n / stroke_map.size:.3f} %)"


def _engine_module(name: str):
    module = engine.in_process(name)
    if module is None:
        raise UserError(f"{ROLE}: the engine's {name} is not importable in ChimeraX's Python "
                        "(install cryoet-integration into it, see 'help cryovis')")
    return module


def _call(func, *args):
    """``func(*args)`` with the engine's CryovisError as a one-line UserError."""
    from cryoet_integration.errors import CryovisError

    try:
        return func(*args)
    except CryovisError as exc:
        raise UserError(f"{ROLE}: {engine.one_line(exc)}") from None


pseudolabel_desc = CmdDesc(
    required=[("tomogram", ModelArg)],
    keyword=[("labels", ModelArg), ("strokes", ModelsArg), ("classifier", OpenFileNameArg),
             ("classes", ListOf(StringArg)), ("radius", FloatArg),
             ("save_classifier", SaveFileNameArg), ("priors", EnumOf(PRIORS)),
             ("trees", PositiveIntArg), ("threads", PositiveIntArg), ("force", BoolArg),
             ("wait", BoolArg)],
    synopsis="soft class maps of a tomogram from a few strokes (label map or marker sets)",
    url="help:user/commands/cryovis_pseudolabel.html")
