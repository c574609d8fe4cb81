"""``cryovis render``: segmentation-aware volume rendering of a tomogram and its class maps."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CryovisError, require_engine
from ..segmentation.classmaps import find_class_maps
from .options import (
    CREATES_DIRS,
    add_force,
    add_json,
    add_threads,
    check_output,
    check_output_folder,
    check_outputs,
    check_same_grid,
    json_file,
    make_folders,
    read_input_volume,
    size_arg,
    use_threads,
    write_json_result,
)
from .progress import Report

if TYPE_CHECKING:
    from ..rendering import Camera, RenderSettings, Scene


def _floats(text: str, n: int | None, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CryovisError(f"{what} must be comma-separated numbers, got '{text}'") from None
    if n is not None and len(values) != n:
        raise CryovisError(f"{what} needs {n} comma-separated numbers, got '{text}'")
    return values


def _thresholds(text: str | None, n: int) -> list[float | None] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if len(items) != n:
        raise CryovisError(f"--thresholds needs {n} values (one per class, number or 'auto'),"
                           f" got '{text}'")
    out: list[float | None] = []
    for t in items:
        if t.lower() == "auto":
            out.append(None)
            continue
        try:
            out.append(float(t))
        except ValueError:
            raise CryovisError(f"--thresholds: '{t}' is neither a number nor 'auto'") from None
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render", help="render a tomogram with its soft class maps (Nano-Ötzi style)",
        description="Segmentation-aware volume rendering: soft class maps modulated by the "
                    "inverted low-passed tomogram, automatic ramp transfer functions, ambient "
                    "occlusion, soft shadows and bloom; or plain DVR / MIP for comparison.")
    p.add_argument("tomogram", metavar="TOMO", help="tomogram (MRC, EM or TIFF)")
    p.add_argument("--classes", help="comma-separated class maps (same shape and voxel size "
                   "as TOMO), composited in this order: soft maps (probabilities 0..1) or "
                   "integer label maps (one class per label, e.g. the simulator's _labels.mrc); "
                   "a K-class output S.mrc of segment/pseudolabel expands to its S_<class>.mrc "
                   "(background left out)")
    p.add_argument("--out", help=f"output PNG ({CREATES_DIRS})")
    p.add_argument("--colors", help="one colour per class: names or #rrggbb, comma-separated "
                   "(default: Okabe-Ito colour-blind-safe palette)")
    p.add_argument("--turntable", metavar="MOVIE", help="also write a full-turn movie (.mp4/.gif)")
    p.add_argument("--frames", type=int, default=72, help="turntable frames (default 72)")
    p.add_argument("--fps", type=float, default=24.0,
                   help="turntable frames per second (default 24)")
    p.add_argument("--size", type=size_arg("WxH"), default=(1920, 1080), metavar="WxH",
                   help="image size in pixels (default 1920x1080)")
    p.add_argument("--azimuth", type=float, default=0.0,
                   help="degrees about the y axis (default 0)")
    p.add_argument("--elevation", type=float, default=0.0,
                   help="degrees towards +y (default 0)")
    p.add_argument("--zoom", type=float, default=1.0,
                   help="1 (the default) fits the volume's bounding sphere")
    p.add_argument("--projection", choices=["ortho", "perspective"], default="ortho",
                   help="camera projection (default ortho)")
    p.add_argument("--mode", choices=["ours", "dvr", "mip"], default="ours",
                   help="ours (segmentation-aware, the default), dvr (plain DVR of the "
                   "low-passed data), mip")
    p.add_argument("--thresholds", help="left ramp limit per class, number in [0,1) or 'auto' "
                   "(default: all automatic, Algorithm 1 per slice)")
    p.add_argument("--raw-ramp", default="0,1", help="LOW,HIGH ramp on the normalised inverted "
                   "low-passed tomogram (default 0,1)")
    p.add_argument("--lowpass", type=float, default=1.5,
                   help="Gaussian low-pass sigma, voxels (default 1.5)")
    p.add_argument("--no-invert", action="store_true",
                   help="do not invert the tomogram (use when density is already bright)")
    p.add_argument("--opacity", type=float, default=1.0,
                   help="opacity per voxel scale (0,1], default 1")
    p.add_argument("--light-dir", default="-0.4,0.8,0.45",
                   help="direction towards the light x,y,z in the volume frame "
                   "(default -0.4,0.8,0.45)")
    p.add_argument("--ao-strength", type=float, default=0.9,
                   help="ambient occlusion 0..1 (default 0.9)")
    p.add_argument("--shadow-strength", type=float, default=0.75,
                   help="soft shadows 0..1 (default 0.75)")
    p.add_argument("--bloom", type=float, default=0.5,
                   help="bloom strength (default 0.5; 0 disables)")
    p.add_argument("--uncertainty", action="store_true",
                   help="fade class colours to grey where the soft probabilities are uncertain")
    p.add_argument("--background", default="black",
                   help="background colour, name or #rrggbb (default black)")
    p.add_argument("--detail", type=float, default=1.0,
                   help="rays per voxel across the view (default 1: the volume's own "
                   "resolution)")
    p.add_argument("--substeps", type=int, default=1,
                   help="samples per slice interval along each ray (default 1)")
    p.add_argument("--backend", choices=["auto", "numpy", "torch"], default="auto",
                   help="compute with numpy or torch (default auto: torch when installed)")
    add_threads(p)
    p.add_argument("--histograms", metavar="DIR",
                   help="write histogram_<class>.png with the estimated threshold per class "
                   f"({CREATES_DIRS})")
    p.add_argument("--no-legend", action="store_true",
                   help="no legend of class colours and no scale bar on the images")
    add_json(p, "a summary")
    add_force(p)
    p.set_defaults(func=run)


# The most label values a label map may hold: each becomes a full-size float class map.
MAX_LABELS = 16


def run(args: argparse.Namespace) -> int:
    """Render TOMO with its class maps: check, read, prepare the scene, write the outputs."""
    require_engine("scipy")
    from ..rendering import Camera, Scene

    report = Report("render")
    class_paths, outputs = _check_request(args)
    camera = Camera(args.size[0], args.size[1], args.azimuth, args.elevation, args.zoom,
                    args.projection)
    with use_threads(args.threads):
        tomo, classes, names, notes = _read_inputs(args, class_paths)
        settings = _settings(args, len(classes))
        t0 = time.perf_counter()
        try:  # the scene checks the settings against the data before the long work
            scene = Scene(tomo.data, classes or [np.zeros(tomo.data.shape, np.float32)],
                          settings, names=names or ["none"])
        except ValueError as exc:
            raise CryovisError(str(exc)) from None
        for note in notes:
            report.say(note)
        report.say(f"low-pass sigma {args.lowpass:g} voxels, "
                   f"{'no inversion' if args.no_invert else 'inverted contrast'}; "
                   "ambient occlusion and shadows")
        scene.stack(args.mode)
        prepared = time.perf_counter() - t0
        make_folders(outputs)
        written, frame_s = _write_images(args, scene, camera, class_paths, names,
                                         tomo.voxel_size, report)
    summary = {
        "mode": args.mode, "size": list(args.size), "backend": scene.backend,
        "classes": names,
        "thresholds": [round(v, 4) for v in scene.thresholds] if classes else [],
        "seconds": {"read_and_prepare": round(prepared, 3),
                    "frame": None if frame_s is None else round(frame_s, 3),
                    "total": round(time.perf_counter() - report.start, 3)},
        "outputs": written,
    }
    write_json_result(args, summary)
    thr = ", ".join(f"{n}={v:.3f}" for n, v in zip(names, scene.thresholds))
    report.summary(f"wrote {', '.join(written)} ({args.mode}, {args.size[0]}x{args.size[1]}"
                   f"{', thresholds ' + thr if thr else ''})")
    return 0


def _check_request(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """The class map paths and every output path, refused before any work if unusable."""
    from ..rendering.colors import parse_color
    from ..rendering.movie import MOVIE_SUFFIXES

    if not args.out and not args.turntable:
        raise CryovisError("nothing to write: give --out PNG and/or --turntable MOVIE")
    if args.out:
        check_output(args.out, args.force, (".png",), "--out")
    if args.turntable:
        check_output(args.turntable, args.force, MOVIE_SUFFIXES, "--turntable")
        require_engine("imageio")
        if args.frames < 2:
            raise CryovisError(f"--frames must be at least 2, got {args.frames}")
    class_paths = expand_class_paths(args.classes.split(",")) if args.classes else []
    if args.mode == "ours" and not class_paths:
        raise CryovisError("--classes is required in mode 'ours' (one map per class)")
    outs = [args.out, args.turntable, json_file(args)]
    if args.histograms:
        require_engine("matplotlib")
        check_output_folder(args.histograms)
        outs += [Path(args.histograms) / f"histogram_{c.stem}.png" for c in class_paths]
    try:
        for c in (args.colors.split(",") if args.colors else []) + [args.background]:
            parse_color(c)
    except ValueError as exc:
        raise CryovisError(f"--colors/--background: {exc}") from None
    return class_paths, check_outputs(outs, args.force)


def expand_class_paths(paths: list[str]) -> list[Path]:
    """``--classes`` entries as files: a K-class output path ``S.mrc`` (as ``cryovis segment``
    and ``cryovis pseudolabel`` write it, ``S_<class>.mrc`` per class) becomes its class maps
    in their painted order, leaving out a class named ``background``, which would fill the
    whole volume; an existing file stays itself."""
    out: list[Path] = []
    for text in filter(None, paths):
        family = find_class_maps(text)
        if family is None:
            out.append(Path(text))
            continue
        out += [p for n, p in zip(family.names, family.paths) if n.lower() != "background"]
    return out


def _read_inputs(args: argparse.Namespace, class_paths: list[Path]):
    """The tomogram, its class maps as soft maps (label maps split per label), their names
    and notes on what was read."""
    tomo = read_input_volume(args.tomogram, what="tomogram")
    classes: list[np.ndarray] = []
    names: list[str] = []
    notes: list[str] = []
    for path in class_paths:
        vol = read_input_volume(path, what="class map")
        check_same_grid(tomo, args.tomogram, vol, path)
        labels = _label_values(vol.data)
        if labels is None:
            classes.append(np.asarray(vol.data, dtype=np.float32))
            names.append(path.stem)
            continue
        if len(labels) > MAX_LABELS:
            raise CryovisError(f"{path}: {len(labels)} labels; render draws at most "
                               f"{MAX_LABELS} classes (an instance map? give a class map)")
        label_name = _label_names(path)
        data = np.asarray(vol.data)
        for value in labels:
            classes.append((data == value).astype(np.float32))
            names.append(label_name.get(value, f"{path.stem} {value}"))
        notes.append(f"{path}: label map, one class per label: "
                     f"{', '.join(names[-len(labels):]) or 'no labels'}")
    shape = "x".join(str(n) for n in tomo.data.shape[::-1])
    notes.insert(0, f"{args.tomogram}: {shape} voxels at {tomo.voxel_size:g} Å, "
                    f"{len(classes)} class(es)")
    return tomo, classes, names, notes


def _label_values(data: np.ndarray) -> list[int] | None:
    """The non-zero labels of an integer label map; None for a soft map (or a 0/1 mask)."""
    arr = np.asarray(data)
    if np.issubdtype(arr.dtype, np.floating):
        if float(arr.max(initial=0)) <= 1.0 or not np.all(np.mod(arr, 1) == 0):
            return None
    values = [int(v) for v in np.unique(arr) if v != 0]
    return None if values == [1] and not np.issubdtype(arr.dtype, np.integer) else values


def _label_names(path: Path) -> dict[int, str]:
    """Label names from the simulator's ``NAME.json`` beside ``NAME_labels.mrc``, if any."""
    stem = path.stem[: -len("_labels")] if path.stem.endswith("_labels") else None
    sidecar = path.with_name(f"{stem}.json") if stem else None
    if sidecar is None or not sidecar.is_file():
        return {}
    try:
        table = json.loads(sidecar.read_text()).get("labels", {})
        return {int(v): str(k) for k, v in table.items()}
    except (ValueError, TypeError, AttributeError, OSError):
        return {}


def _settings(args: argparse.Namespace, n_classes: int) -> RenderSettings:
    from ..rendering import RenderSettings
    from ..rendering.colors import parse_color

    colors = args.colors.split(",") if args.colors else None
    if colors is not None and len(colors) != n_classes:
        raise CryovisError(f"--colors has {len(colors)} colours for {n_classes} classes")
    return RenderSettings(
        thresholds=_thresholds(args.thresholds, n_classes),
        raw_ramp=tuple(_floats(args.raw_ramp, 2, "--raw-ramp")),  # type: ignore[arg-type]
        lowpass_sigma=args.lowpass, invert=not args.no_invert, colors=colors,
        opacity=args.opacity,
        light_dir=tuple(_floats(args.light_dir, 3, "--light-dir")),  # type: ignore[arg-type]
        ao_strength=args.ao_strength, shadow_strength=args.shadow_strength,
        uncertainty=args.uncertainty, bloom=args.bloom,
        background=parse_color(args.background), detail=args.detail,
        substeps=args.substeps, backend=args.backend)


def _write_images(args: argparse.Namespace, scene: Scene, camera: Camera,
                  class_paths: list[Path], names: list[str], voxel_size: float,
                  report: Report) -> tuple[list[str], float | None]:
    """Histograms, the PNG and the turntable movie; returns what was written and the
    seconds one frame took."""
    from ..rendering import write_png
    from ..rendering.annotate import annotate
    from ..rendering.movie import turntable_cameras, write_movie
    from ..rendering.transfer import write_histogram_png

    def finish(image: np.ndarray, cam: Camera) -> np.ndarray:
        if args.no_legend:
            return image
        pixel = cam.geometry(scene.raw01.shape).pixel * voxel_size if voxel_size > 0 else None
        legend = [] if args.mode != "ours" else names
        return annotate(image, legend, scene.colors, pixel, scene.settings.background)

    written = []
    if args.histograms and class_paths:
        for name, prob, est, color in zip(names, scene.probs, scene.estimates, scene.colors):
            target = Path(args.histograms) / f"histogram_{name.replace(' ', '_')}.png"
            write_histogram_png(target, prob, est, name, tuple(color), overwrite=args.force)
            written.append(str(target))
    frame_s = None
    if args.out:
        t = time.perf_counter()
        write_png(args.out, finish(scene.render(camera, args.mode), camera),
                  overwrite=args.force)
        frame_s = time.perf_counter() - t
        written.append(str(args.out))
    if args.turntable:
        cameras = turntable_cameras(camera, args.frames)
        with report.bar("turntable frames", args.frames) as update:
            write_movie(args.turntable, (finish(scene.render(c, args.mode), c) for c in cameras),
                        fps=args.fps, overwrite=args.force,
                        progress=lambda i: update(i, args.frames))
        written.append(str(args.turntable))
    if json_file(args):
        written.append(str(args.json))
    return written, frame_s
