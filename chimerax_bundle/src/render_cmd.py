"""``cryovis render``: segmentation-aware rendering of a tomogram in the ChimeraX window.

The engine's rendering code (``cryoet_integration.rendering``, numpy + scipy, imported in
ChimeraX's Python) prepares the fields once per tomogram and parameter set: inverted
low-passed raw data, the automatic ramp limits (Algorithm 1) and the ambient-occlusion and
soft-shadow factor. :class:`renderer.RayMarchedVolume` ray-marches them on the GPU.
Running the command again on the same tomogram updates that rendering: colours, step and
bloom apply at once, other parameters recompute the fields in the background first.
Where OpenGL is missing (ChimeraX without graphics) or the ray marcher cannot run, the
engine's CPU render of the current view is shown as an image instead, and the log says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from chimerax.core.commands import (
    BoolArg,
    CmdDesc,
    ColorArg,
    Float3Arg,
    FloatArg,
    ListOf,
    ModelArg,
    ModelsArg,
    PositiveIntArg,
    SaveFileNameArg,
    StringArg,
)
from chimerax.core.errors import UserError

from . import engine, volumes
from .renderer import MAX_CLASSES, Fields, Look, RayMarchedVolume

# Parameters whose change needs new fields (illumination, thresholds); the others are
# uniforms of the shader or screen-space post-processing.
FIELD_KEYS = ("thresholds", "raw_ramp", "lowpass_sigma", "invert", "opacity", "light_dir",
              "ao_strength", "shadow_strength")
DEFAULT_SIZE = (800, 600)


def rendering_of(session, tomogram) -> RayMarchedVolume | None:
    """The existing ``cryovis render`` model of ``tomogram``, if any."""
    for m in session.models.list(type=RayMarchedVolume):
        if m.tomogram is tomogram and not m.deleted:
            return m
    return None


def _engine_rendering():
    mod = engine.in_process("cryoet_integration.rendering")
    if mod is None:
        raise UserError("cryovis render: the engine's rendering modules are not importable "
                        "in ChimeraX's Python (install cryoet-integration into it, see "
                        "'help cryovis')")
    return mod


def _ramps(values: list[str] | None, n: int) -> list[float | None] | None:
    if values is None:
        return None
    if len(values) != n:
        raise UserError(f"cryovis render: ramps needs {n} values (one per class, a number "
                        f"in [0, 1) or auto), got {len(values)}")
    out: list[float | None] = []
    for text in values:
        if text.lower() == "auto":
            out.append(None)
            continue
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"cryovis render: ramp '{text}' is neither a number nor auto") \
                from None
        if not 0.0 <= value < 1.0:
            raise UserError(f"cryovis render: ramp {value:g} is outside [0, 1)")
        out.append(value)
    return out


def _check_output(path: str | None, force: bool) -> Path | None:
    if path is None:
        return None
    out = Path(os.path.expanduser(path))
    if out.suffix.lower() != ".png":
        raise UserError(f"cryovis render: {out}: output must be a .png file")
    if out.exists() and not force:
        raise UserError(f"cryovis render: {out}: file exists (add 'force true' to overwrite)")
    if not out.parent.is_dir():
        raise UserError(f"cryovis render: {out}: folder {out.parent} does not exist")
    return out


def cryovis_render(session, tomogram, classes=None, colors=None, ramps=None, ao=None,
                   shadows=None, bloom=None, output=None, width=None, height=None,
                   opacity=None, raw_ramp=None, lowpass=None, invert=None, light=None,
                   step=None, cpu=False, wait=None, force=False):
    """Render ``tomogram`` with its soft class maps (see docs/user/commands/cryovis_render.html).

    Args:
        tomogram: the tomogram volume model.
        classes: class probability volumes (same grid), composited in the order given;
            default: those of the existing rendering or of the last ``cryovis segment``.
        colors: one colour per class (default Okabe-Ito).
        ramps: left ramp limit per class, number in [0, 1) or ``auto`` (Algorithm 1).
        ao, shadows: ambient occlusion and soft shadow strengths, 0..1.
        bloom: bloom strength of saved images (0 disables).
        output: PNG to save offscreen at ``width`` x ``height`` pixels.
        opacity: opacity per voxel of path, (0, 1]; raw_ramp: (low, high) on the raw data;
        lowpass: Gaussian sigma, voxels; invert: invert the raw data; light: direction
            towards the light (x, y, z) in the tomogram frame; step: ray step, voxels.
        cpu: show the engine's CPU render instead of the GPU ray marcher.
        wait: block until done (default: in scripts and without a GUI).
        force: overwrite ``output``.
    """
    rendering = _engine_rendering()
    tomo = volumes.require_volume(tomogram, "cryovis render")
    out = _check_output(output, force)
    if (width is None) != (height is None):
        raise UserError("cryovis render: give both width and height")
    size = (width, height) if width is not None else None
    existing = rendering_of(session, tomo)
    if classes is not None:
        class_models = volumes.volumes_of(classes, "cryovis render classes")
    elif existing is not None:
        class_models = existing.class_models
    elif getattr(tomo, "cryovis_classes", None):
        class_models = [m for m in tomo.cryovis_classes if not m.deleted]
    else:
        raise UserError(f"cryovis render: no class maps for #{tomo.id_string}: give them "
                        "with 'classes #N,M' (or run 'cryovis segment' first)")
    if tomo in class_models:
        raise UserError("cryovis render: the tomogram cannot also be a class map")
    if len(class_models) > MAX_CLASSES:
        raise UserError(f"cryovis render: at most {MAX_CLASSES} classes, got "
                        f"{len(class_models)}")
    volumes.check_same_grid(tomo, class_models, "cryovis render classes")
    n = len(class_models)
    same_classes = existing is not None and existing.class_models == class_models
    params = dict(existing.params) if same_classes else _default_params(rendering, n)
    if colors is not None:
        if len(colors) != n:
            raise UserError(f"cryovis render: {len(colors)} colours given for {n} classes")
        params["colors"] = [tuple(float(c) for c in col.rgba[:3]) for col in colors]
    for key, value in (("thresholds", _ramps(ramps, n)), ("ao_strength", ao),
                       ("shadow_strength", shadows), ("bloom", bloom), ("opacity", opacity),
                       ("raw_ramp", raw_ramp), ("lowpass_sigma", lowpass), ("invert", invert),
                       ("light_dir", light), ("step", step)):
        if value is not None:
            params[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    _check_params(params)
    params["background"] = tuple(float(c) for c in session.main_view.background_color[:3])
    settings = _settings(rendering, params)

    def finish(model: RayMarchedVolume) -> None:
        if out is not None:
            save_image(session, model, out, size or _window_size(session), cpu)

    if existing is not None and same_classes and all(
            existing.params.get(k) == params.get(k) for k in FIELD_KEYS):
        existing.params = params
        existing.settings = settings
        existing.scene.settings.colors = params["colors"]
        existing.scene.settings.bloom = params["bloom"]
        existing.scene.colors = np.asarray(params["colors"], np.float32)
        existing.scene._stacks.clear()
        existing.set_look(_look(existing.scene, params))
        _show(session, existing, cpu)
        finish(existing)
        return existing

    raw = volumes.array(tomo)
    probs = [volumes.array(v) for v in class_models]
    names = [v.name for v in class_models]

    def work(job: engine.Job):
        from cryoet_integration.rendering.illumination import illumination

        job.progress("preparing the raw data and ramp limits")
        scene = rendering.Scene(raw, probs, settings, names=names)
        job.check_cancelled()
        job.progress("ambient occlusion and soft shadows")
        alphas = scene.class_opacities()
        trans = np.ones(raw.shape, np.float32)
        for a in alphas:
            trans *= 1.0 - a
        lao, ssc = illumination(1.0 - trans, settings.light_dir, settings.ao_strength,
                                settings.shadow_strength)
        return scene, Fields(scene.probs, scene.raw01, (lao * ssc).astype(np.float32))

    def done(result) -> None:
        scene, fields = result
        model = rendering_of(session, tomo)
        if model is not None and model.class_models != class_models:
            session.models.close([model])
            model = None
        if model is None:
            model = RayMarchedVolume(session, tomo, fields, _look(scene, params), class_models)
            session.models.add([model])
        else:
            model.set_fields(fields)
            model.set_look(_look(scene, params))
        model.params, model.settings, model.scene = params, settings, scene
        _log_thresholds(session, scene, params)
        for v in [tomo, *class_models]:
            v.display = False
        _show(session, model, cpu)
        finish(model)

    engine.start(session, f"render #{tomo.id_string}", work, done,
                 wait=True if out is not None else wait)
    return None


def _default_params(rendering, n: int) -> dict:
    from cryoet_integration.rendering.colors import default_colors

    s = rendering.RenderSettings()
    return {"colors": [tuple(c) for c in default_colors(n)], "thresholds": None,
            "raw_ramp": tuple(s.raw_ramp), "lowpass_sigma": s.lowpass_sigma,
            "invert": s.invert, "opacity": s.opacity, "light_dir": tuple(s.light_dir),
            "ao_strength": s.ao_strength, "shadow_strength": s.shadow_strength,
            "bloom": s.bloom, "step": 1.0}


def _check_params(p: dict) -> None:
    for key in ("ao_strength", "shadow_strength"):
        if not 0.0 <= p[key] <= 1.0:
            raise UserError(f"cryovis render: {key.split('_')[0]} must be in [0, 1], "
                            f"got {p[key]:g}")
    if p["bloom"] < 0:
        raise UserError(f"cryovis render: bloom must be >= 0, got {p['bloom']:g}")
    if not 0.0 < p["opacity"] <= 1.0:
        raise UserError(f"cryovis render: opacity must be in (0, 1], got {p['opacity']:g}")
    lo, hi = p["raw_ramp"]
    if not 0.0 <= lo < hi <= 1.0:
        raise UserError(f"cryovis render: rawRamp needs 0 <= low < high <= 1, got {lo:g},{hi:g}")
    if p["lowpass_sigma"] < 0:
        raise UserError(f"cryovis render: lowpass must be >= 0, got {p['lowpass_sigma']:g}")
    if not 0.05 <= p["step"] <= 4.0:
        raise UserError(f"cryovis render: step must be in [0.05, 4] voxels, got {p['step']:g}")
    if not np.linalg.norm(p["light_dir"]) > 0:
        raise UserError("cryovis render: light must be a non-zero direction x,y,z")


def _settings(rendering, p: dict):
    return rendering.RenderSettings(
        thresholds=p["thresholds"], raw_ramp=tuple(p["raw_ramp"]),
        lowpass_sigma=float(p["lowpass_sigma"]), invert=bool(p["invert"]),
        colors=[tuple(c) for c in p["colors"]], opacity=float(p["opacity"]),
        light_dir=tuple(p["light_dir"]), ao_strength=float(p["ao_strength"]),
        shadow_strength=float(p["shadow_strength"]), bloom=float(p["bloom"]),
        background=tuple(p["background"]), backend="numpy")


def _look(scene, p: dict) -> Look:
    return Look(colors=np.asarray(p["colors"], np.float32), lows=list(scene.thresholds),
                raw_ramp=tuple(p["raw_ramp"]), opacity=float(p["opacity"]),
                illumination=True, step=float(p["step"]))


def _log_thresholds(session, scene, p: dict) -> None:
    given = p["thresholds"] or [None] * len(scene.thresholds)
    parts = [f"{name} {value:.3f} ({'auto' if g is None else 'given'})"
             for name, value, g in zip(scene.names, scene.thresholds, given)]
    session.logger.info("cryovis render: ramp limits " + ", ".join(parts))


def _window_size(session) -> tuple[int, int]:
    w, h = session.main_view.window_size
    return (int(w), int(h)) if w > 0 and h > 0 else DEFAULT_SIZE


def gl_usable(session, model: RayMarchedVolume) -> bool:
    """Whether the GPU ray marcher can draw (ChimeraX has OpenGL and our shader works)."""
    return session.main_view.render is not None and model.gl_error is None


def _show(session, model: RayMarchedVolume, cpu: bool) -> None:
    """Display the ray marcher, or the CPU image where it cannot run (or ``cpu`` is set)."""
    overlay = getattr(model, "cpu_overlay", None)
    if overlay is not None and not overlay.deleted:
        session.models.close([overlay])
    model.cpu_overlay = None
    if gl_usable(session, model) and not cpu:
        model.display = True
        return
    model.display = False
    reason = ("cpu true was given" if cpu else
              "ChimeraX has no OpenGL here" if session.main_view.render is None else
              f"the ray marcher failed: {model.gl_error}")
    rgb = cpu_render(session, model, _window_size(session))
    model.cpu_overlay = _overlay(session, model, rgb)
    session.logger.info(f"cryovis render: showing the engine's CPU render of the current "
                        f"view as an image ({reason}); it does not follow the mouse: run "
                        f"the command again after moving")


def cpu_render(session, model: RayMarchedVolume, size: tuple[int, int]) -> np.ndarray:
    """The engine's CPU render of the current view, ``[H, W, 3]`` float RGB in [0, 1]."""
    from .views import cpu_image, engine_view

    try:
        ev = engine_view(session.main_view, model.tomogram, *size)
    except ValueError as exc:
        raise UserError(f"cryovis render: {exc}") from None
    return cpu_image(model.scene, ev)


def _overlay(session, model, rgb: np.ndarray):
    from chimerax.core.models import Model
    from chimerax.graphics.drawing import rgba_drawing

    rgba = np.empty(rgb.shape[:2] + (4,), np.uint8)
    rgba[..., :3] = np.clip(np.rint(rgb * 255), 0, 255)
    rgba[..., 3] = 255
    overlay = Model(f"{model.name} (CPU image)", session)
    overlay.SESSION_SAVE = False
    rgba_drawing(overlay, rgba[::-1], (-1, -1), (2, 2))  # rows bottom-up, whole window
    session.models.add([overlay])
    session.main_view.add_overlay(overlay)
    return overlay


def save_image(session, model: RayMarchedVolume, out: Path, size: tuple[int, int],
               cpu: bool = False) -> Path:
    """Save the current view of ``model`` as a PNG (GPU offscreen, else the CPU render)."""
    from cryoet_integration.rendering.postprocess import bloom

    rgb = None
    if gl_usable(session, model) and not cpu:
        shown = model.display
        model.display = True
        overlay = getattr(model, "cpu_overlay", None)
        if overlay is not None:
            overlay.display = False
        image = session.main_view.image(*size, supersample=None)
        model.display = shown
        if model.gl_error is None:
            rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
            rgb = bloom(rgb, float(model.params["bloom"]))
            how = "GPU ray marcher"
    if rgb is None:
        rgb = cpu_render(session, model, size)
        how = "engine's CPU render (no usable OpenGL)" if not cpu else "engine's CPU render"
    write_png(out, rgb)
    session.logger.info(f"cryovis render: saved {out} ({size[0]}x{size[1]}, {how})")
    return out


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write ``[H, W, 3]`` floats in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.part")
    Image.fromarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)).save(tmp,
                                                                              format="PNG")
    os.replace(tmp, path)


render_desc = CmdDesc(
    required=[("tomogram", ModelArg)],
    keyword=[("classes", ModelsArg), ("colors", ListOf(ColorArg)),
             ("ramps", ListOf(StringArg)), ("ao", FloatArg), ("shadows", FloatArg),
             ("bloom", FloatArg), ("output", SaveFileNameArg), ("width", PositiveIntArg),
             ("height", PositiveIntArg), ("opacity", FloatArg),
             ("raw_ramp", ListOf(FloatArg, 2, 2)), ("lowpass", FloatArg),
             ("invert", BoolArg), ("light", Float3Arg), ("step", FloatArg),
             ("cpu", BoolArg), ("wait", BoolArg), ("force", BoolArg)],
    synopsis="segmentation-aware volume rendering of a tomogram with its class maps",
    url="help:user/commands/cryovis_render.html")
