"""``cryovis render``: segmentation-aware volume rendering of a tomogram and its class maps."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import CryovisError, require_engine


def _floats(text: str, n: int | None, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CryovisError(f"{what} must be comma-separated numbers, got '{text}'") from None
    if n is not None and len(values) != n:
        raise CryovisError(f"{what} needs {n} comma-separated numbers, got '{text}'")
    return values


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CryovisError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, got '{text}'")
    return int(parts[0]), int(parts[1])


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
    p.add_argument("--classes", help="comma-separated soft class maps (same shape and voxel "
                   "size as TOMO, probabilities 0..1), composited in this order")
    p.add_argument("--out", help="output PNG")
    p.add_argument("--colors", help="one colour per class: names or #rrggbb, comma-separated "
                   "(default: Okabe-Ito colour-blind-safe palette)")
    p.add_argument("--turntable", metavar="MOVIE", help="also write a full-turn movie (.mp4/.gif)")
    p.add_argument("--frames", type=int, default=72, help="turntable frames (default 72)")
    p.add_argument("--fps", type=float, default=24.0, help="turntable frames per second")
    p.add_argument("--size", default="1920x1080",
                   help="image size WIDTHxHEIGHT (default 1920x1080)")
    p.add_argument("--azimuth", type=float, default=0.0, help="degrees about the y axis")
    p.add_argument("--elevation", type=float, default=0.0, help="degrees towards +y")
    p.add_argument("--zoom", type=float, default=1.0, help="1 fits the volume's bounding sphere")
    p.add_argument("--projection", choices=["ortho", "perspective"], default="ortho")
    p.add_argument("--mode", choices=["ours", "dvr", "mip"], default="ours",
                   help="ours (segmentation-aware), dvr (plain DVR of the low-passed data), mip")
    p.add_argument("--thresholds", help="left ramp limit per class, number in [0,1) or 'auto' "
                   "(default: all automatic, Algorithm 1 per slice)")
    p.add_argument("--raw-ramp", default="0,1", help="LOW,HIGH ramp on the normalised inverted "
                   "low-passed tomogram (default 0,1)")
    p.add_argument("--lowpass", type=float, default=1.5, help="Gaussian low-pass sigma, voxels")
    p.add_argument("--no-invert", action="store_true",
                   help="do not invert the tomogram (use when density is already bright)")
    p.add_argument("--opacity", type=float, default=1.0, help="opacity per voxel scale (0,1]")
    p.add_argument("--light-dir", default="-0.4,0.8,0.45",
                   help="direction towards the light x,y,z in the volume frame")
    p.add_argument("--ao-strength", type=float, default=0.9, help="ambient occlusion 0..1")
    p.add_argument("--shadow-strength", type=float, default=0.75, help="soft shadows 0..1")
    p.add_argument("--bloom", type=float, default=0.5, help="bloom strength (0 disables)")
    p.add_argument("--uncertainty", action="store_true",
                   help="fade class colours to grey where the soft probabilities are uncertain")
    p.add_argument("--background", default="black", help="background colour (name or #rrggbb)")
    p.add_argument("--detail", type=float, default=1.0,
                   help="rays per voxel across the view (1 = the volume's own resolution)")
    p.add_argument("--substeps", type=int, default=1,
                   help="samples per slice interval along each ray (default 1)")
    p.add_argument("--backend", choices=["auto", "numpy", "torch"], default="auto")
    p.add_argument("--threads", type=int, help="torch threads (1 is fastest on a busy machine)")
    p.add_argument("--histograms", metavar="DIR",
                   help="write histogram_<class>.png with the estimated threshold per class")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="print (or write to FILE) a JSON summary")
    p.set_defaults(func=run)


def _outputs(args, class_paths: list[Path]) -> list[Path]:
    outs = [Path(p) for p in (args.out, args.turntable) if p]
    if args.histograms:
        outs += [Path(args.histograms) / f"histogram_{c.stem}.png" for c in class_paths]
    if args.json not in (None, "-"):
        outs.append(Path(args.json))
    return outs


def _check_outputs(outs: list[Path], force: bool, histogram_dir: str | None) -> None:
    for out in outs:
        if out.exists() and not force:
            raise CryovisError(f"{out}: file exists (use --force to overwrite)")
        if not out.parent.exists() and not (histogram_dir and out.parent == Path(histogram_dir)):
            raise CryovisError(f"{out}: output folder {out.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    require_engine("scipy")
    import numpy as np

    from formats import FormatError, read_volume

    from ..rendering import Camera, RenderSettings, Scene, write_png
    from ..rendering.colors import parse_color
    from ..rendering.movie import MOVIE_SUFFIXES, turntable_cameras, write_movie
    from ..rendering.transfer import write_histogram_png

    if not args.out and not args.turntable:
        raise CryovisError("nothing to write: give --out PNG and/or --turntable MOVIE")
    if args.out and Path(args.out).suffix.lower() != ".png":
        raise CryovisError(f"{args.out}: --out must be a .png file")
    if args.turntable:
        if Path(args.turntable).suffix.lower() not in MOVIE_SUFFIXES:
            raise CryovisError(f"{args.turntable}: --turntable must be a .mp4 or .gif file")
        require_engine("imageio")
        if args.frames < 2:
            raise CryovisError(f"--frames must be at least 2, got {args.frames}")
    class_paths = [Path(c) for c in args.classes.split(",") if c] if args.classes else []
    if args.mode == "ours" and not class_paths:
        raise CryovisError("--classes is required in mode 'ours' (one soft map per class)")
    if args.histograms:
        require_engine("matplotlib")
    outs = _outputs(args, class_paths)
    _check_outputs(outs, args.force, args.histograms)
    width, height = _size(args.size)
    colors = args.colors.split(",") if args.colors else None
    if colors is not None and len(colors) != len(class_paths):
        raise CryovisError(f"--colors has {len(colors)} colours for {len(class_paths)} classes")
    try:
        if colors:
            [parse_color(c) for c in colors]
        background = parse_color(args.background)
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    settings = RenderSettings(
        thresholds=_thresholds(args.thresholds, len(class_paths)),
        raw_ramp=tuple(_floats(args.raw_ramp, 2, "--raw-ramp")),  # type: ignore[arg-type]
        lowpass_sigma=args.lowpass, invert=not args.no_invert, colors=colors,
        opacity=args.opacity,
        light_dir=tuple(_floats(args.light_dir, 3, "--light-dir")),  # type: ignore[arg-type]
        ao_strength=args.ao_strength, shadow_strength=args.shadow_strength,
        uncertainty=args.uncertainty, bloom=args.bloom, background=background,
        detail=args.detail, substeps=args.substeps, backend=args.backend)
    camera = Camera(width, height, args.azimuth, args.elevation, args.zoom, args.projection)
    if args.threads is not None:
        if args.threads < 1:
            raise CryovisError(f"--threads must be at least 1, got {args.threads}")
        if args.backend != "numpy":
            try:
                import torch
            except ImportError:
                pass
            else:
                torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    tomo = read_volume(args.tomogram)
    raw = np.asarray(tomo.data)
    if raw.ndim != 3:
        raise FormatError(args.tomogram, f"is not a 3D volume (shape {raw.shape})")
    if not np.all(np.isfinite(raw)):
        raise FormatError(args.tomogram, "contains NaN or infinite values")
    classes = []
    for path in class_paths:
        vol = read_volume(path)
        if vol.data.shape != raw.shape:
            raise FormatError(path, f"shape {vol.data.shape} (z,y,x) does not match the "
                              f"tomogram's {raw.shape}")
        if (vol.voxel_size > 0 and tomo.voxel_size > 0
                and abs(vol.voxel_size - tomo.voxel_size) > 1e-3 * tomo.voxel_size):
            raise FormatError(path, f"voxel size {vol.voxel_size:g} Å does not match the "
                              f"tomogram's {tomo.voxel_size:g} Å")
        data = np.asarray(vol.data, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise FormatError(path, "contains NaN or infinite values")
        classes.append(data)
    try:
        scene = Scene(raw, classes or [np.zeros_like(raw, dtype=np.float32)], settings,
                      names=[str(p) for p in class_paths] or ["none"])
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    t_prep = time.perf_counter()
    scene.stack(args.mode)
    t_illum = time.perf_counter()
    written = []
    if args.histograms and class_paths:
        Path(args.histograms).mkdir(parents=True, exist_ok=True)
        for path, prob, est, color in zip(class_paths, scene.probs, scene.estimates,
                                          scene.colors):
            target = Path(args.histograms) / f"histogram_{path.stem}.png"
            write_histogram_png(target, prob, est, path.stem, tuple(color), overwrite=args.force)
            written.append(str(target))
    frame_s = None
    if args.out:
        t = time.perf_counter()
        write_png(args.out, scene.render(camera, args.mode), overwrite=args.force)
        frame_s = time.perf_counter() - t
        written.append(args.out)
    if args.turntable:
        def progress(i: int) -> None:
            if args.json != "-" and sys.stderr.isatty():
                print(f"\rturntable frame {i}/{args.frames}", end="", file=sys.stderr)

        images = (scene.render(cam, args.mode) for cam in turntable_cameras(camera, args.frames))
        write_movie(args.turntable, images, fps=args.fps, overwrite=args.force,
                    progress=progress)
        written.append(args.turntable)
    summary = {
        "mode": args.mode, "size": [width, height], "backend": scene.backend,
        "classes": [str(p) for p in class_paths],
        "thresholds": [round(v, 4) for v in scene.thresholds] if class_paths else [],
        "seconds": {"read_and_prepare": round(t_prep - t0, 3),
                    "illumination_precompute": round(t_illum - t_prep, 3),
                    "frame": None if frame_s is None else round(frame_s, 3),
                    "total": round(time.perf_counter() - t0, 3)},
        "outputs": written,
    }
    if args.json == "-":
        print(json.dumps(summary))
    else:
        if args.json:
            from formats import atomic_path

            with atomic_path(args.json, overwrite=args.force) as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
            written.append(args.json)
        thr = ", ".join(f"{Path(p).stem}={v:.3f}" for p, v in zip(class_paths, scene.thresholds))
        print(f"wrote {', '.join(written)} ({args.mode}, {width}x{height}"
              f"{', thresholds ' + thr if thr else ''})")
    return 0
