"""``cryovis render`` in real ChimeraX: the GPU ray marcher against the engine's CPU render."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_line_user_error

SIZE = (640, 480)
# Pearson correlation of the RGB pixels of our GPU render and the engine's CPU render of the
# same view. The two sample differently (post- vs pre-classification, trilinear rays vs
# shear-warp slices), so they are not identical; different views correlate far less.
SAME_VIEW_MIN_CORRELATION = 0.97
SAME_VIEW_MAX_MEAN_ABS = 6.0  # 8-bit levels


def load_png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), np.float64)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def model_spec(models) -> str:
    return "#" + ",".join(m.id_string for m in models)


@pytest.fixture(scope="module")
def rendering(session, run, opened, log):
    from chimerax.cryovis.renderer import RayMarchedVolume

    tomo, classes = opened["tomo"], opened["classes"]
    # ChimeraX 1.7.1's `camera` command reads the context's stereo flag, which its offscreen
    # context lacks (AttributeError); offscreen rendering is never stereo.
    context = session.main_view.render.opengl_context
    if not hasattr(context, "stereo"):
        context.stereo = False
    run("camera ortho")
    run("hide #* models")  # markers and maps of the other tests
    run(f"cryovis render #{tomo.id_string} classes {model_spec(classes)} wait true")
    models = session.models.list(type=RayMarchedVolume)
    assert len(models) == 1
    return models[0]


def engine_reference(session, data, engine_program, rendering, path, size) -> None:
    """The engine program's own CPU render of ChimeraX's current view, without the legend and
    scale bar the program draws by default (the ChimeraX window has neither)."""
    from chimerax.cryovis.views import engine_view

    ev = engine_view(session.main_view, rendering.tomogram, *size)
    assert abs(ev.roll_deg) < 0.5 and max(map(abs, ev.shift_px)) < 1.0, ev
    cam = ev.camera
    d = data["dir"]
    cmd = [engine_program, "render", str(d / data["tomogram"]),
           "--classes", ",".join(str(d / c) for c in data["classes"]),
           "--out", str(path), "--size", f"{size[0]}x{size[1]}",
           "--azimuth", f"{cam.azimuth:.6f}", "--elevation", f"{cam.elevation:.6f}",
           "--zoom", f"{cam.zoom:.6f}", "--projection", cam.projection,
           "--bloom", str(rendering.params["bloom"]), "--background", "black",
           "--backend", "numpy", "--no-legend", "--force"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def test_model_and_ramp_limits(rendering, opened, log):
    assert rendering.display and rendering.gl_error is None
    assert rendering.class_models == opened["classes"]
    assert len(rendering.look.lows) == len(opened["classes"])
    assert all(0.0 <= a < 1.0 for a in rendering.look.lows)
    assert "ramp limits" in log.text()
    # the tomogram and class maps are hidden behind the rendering
    assert not opened["tomo"].display and not any(v.display for v in opened["classes"])
    # the box spans the voxels' outer faces, in scene coordinates (origin honoured)
    b = rendering.bounds()
    d = opened["tomo"].data
    step, origin = np.array(d.step), np.array(d.origin)
    assert np.allclose(b.xyz_min, origin - step / 2)
    assert np.allclose(b.xyz_max, origin + (np.array(d.size) - 0.5) * step)


@pytest.mark.parametrize("view", ["front", "turned"])
def test_two_views_match_engine_cpu_render(session, run, data, engine_program, rendering,
                                           out_dir, view):
    run("view orient" if view == "front" else "view orient; turn y 55; turn x 35")
    run(f"view #{rendering.id_string}")  # centred on the tomogram (the engine has no pan)
    gpu = out_dir / f"chimerax_render_{view}.png"
    cpu = out_dir / f"engine_render_{view}.png"
    run(f"cryovis render #{rendering.tomogram.id_string} output {gpu} width {SIZE[0]} "
        f"height {SIZE[1]} force true")
    engine_reference(session, data, engine_program, rendering, cpu, SIZE)
    a, b = load_png(gpu), load_png(cpu)
    assert a.shape == b.shape == (SIZE[1], SIZE[0], 3)
    r, mae = correlation(a, b), float(np.abs(a - b).mean())
    print(f"{view}: correlation {r:.4f}, mean abs difference {mae:.2f} levels")
    assert a.std() > 5, "the GPU render is (nearly) blank"
    assert r >= SAME_VIEW_MIN_CORRELATION, (view, r, mae)
    assert mae <= SAME_VIEW_MAX_MEAN_ABS, (view, r, mae)
    shots = os.environ.get("CRYOVIS_SCREENSHOTS")
    if shots:
        shutil.copy(gpu, os.path.join(shots, gpu.name))


def test_the_two_views_differ(out_dir):
    front = load_png(out_dir / "chimerax_render_front.png")
    turned = load_png(out_dir / "chimerax_render_turned.png")
    r_views = correlation(front, turned)
    r_same = correlation(front, load_png(out_dir / "engine_render_front.png"))
    assert r_views < SAME_VIEW_MIN_CORRELATION - 0.1 and r_views < r_same - 0.1, r_views


def test_colours_update_without_recompute(session, run, rendering, out_dir):
    fields_before = rendering.scene
    run(f"cryovis render #{rendering.tomogram.id_string} colors red,lime,blue,yellow")
    assert rendering.scene is fields_before  # uniforms only
    assert np.allclose(rendering.look.colors[0], (1, 0, 0))
    run("view orient; view")
    path = out_dir / "recoloured.png"
    run(f"cryovis render #{rendering.tomogram.id_string} output {path} width 200 height 150 "
        "force true bloom 0")
    img = load_png(path)
    red = (img[..., 0] > 100) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert red.mean() > 0.002, red.mean()


def test_parameters_recompute_lighting(run, rendering):
    light_before = rendering.scene
    lows = list(rendering.look.lows)
    run(f"cryovis render #{rendering.tomogram.id_string} ramps 0.5,auto,auto,auto ao 0.2 "
        "colors skyblue,orange,#009E73,#CC79A7 bloom 0.5 wait true")
    assert rendering.scene is not light_before
    assert rendering.look.lows[0] == pytest.approx(0.5)
    assert rendering.look.lows[1:] == pytest.approx(lows[1:])
    run(f"cryovis render #{rendering.tomogram.id_string} ramps auto,auto,auto,auto ao 0.9 "
        "wait true")


def test_clip_planes_cut_the_rendering(run, rendering, out_dir):
    run("view orient; view")
    full, clipped = out_dir / "unclipped.png", out_dir / "clipped.png"
    spec = rendering.tomogram.id_string
    run(f"cryovis render #{spec} output {full} width 200 height 150 force true")
    run("clip near -5 position #" + spec)
    run(f"cryovis render #{spec} output {clipped} width 200 height 150 force true")
    run("clip off")
    a, b = load_png(full), load_png(clipped)
    assert np.abs(a - b).mean() > 1.0


def test_cpu_mode_shows_engine_image(session, run, rendering, log):
    spec = rendering.tomogram.id_string
    run(f"cryovis render #{spec} cpu true")
    assert not rendering.display
    assert rendering.cpu_overlay is not None
    assert "CPU render" in log.text()
    run(f"cryovis render #{spec}")
    assert rendering.display and rendering.cpu_overlay is None


def test_render_errors_are_one_line(session, run, opened, rendering, out_dir, tmp_path):
    spec = opened["tomo"].id_string
    assert "not a volume" in one_line_user_error(run, f"cryovis render #{rendering.id_string}")
    one_line_user_error(run, "cryovis render #99")
    assert "colours given" in one_line_user_error(run, f"cryovis render #{spec} colors red")
    assert "outside" in one_line_user_error(run, f"cryovis render #{spec} ramps 2,1,1,1")
    existing = out_dir / "chimerax_render_front.png"
    assert "exists" in one_line_user_error(run, f"cryovis render #{spec} output {existing}")
    assert ".png" in one_line_user_error(run, f"cryovis render #{spec} output {tmp_path}/x.jpg")


def test_fallback_without_opengl(data, tmp_path):
    """ChimeraX without offscreen OpenGL: the engine's CPU render is saved, and the log says so."""
    out = tmp_path / "fallback.png"
    d = data["dir"]
    cmds = [f"open {d / data['tomogram']}"] + [f"open {d / c}" for c in data["classes"]] + [
        f"cryovis render #1 classes #2-{1 + len(data['classes'])} output {out} "
        "width 160 height 120"]
    argv = [sys.executable, "-m", "chimerax.core", "--nogui", "--exit"]
    for c in cmds:
        argv += ["--cmd", c]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "no OpenGL" in text and "CPU render" in text, text[-3000:]
    assert load_png(out).shape == (120, 160, 3) and load_png(out).std() > 3
