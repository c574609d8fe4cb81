"""Benchmark the bundle's GPU ray marcher in real ChimeraX 1.7.1 offscreen (llvmpipe).

A 4-class 256 x 256 x 128 phantom (the one of bench_render.py) is opened in ChimeraX and
``cryovis render`` measures:
- the one-off precompute (engine in-process: low-pass, Algorithm 1 ramp limits, ambient
  occlusion and soft shadows), and the upload (the fields to RGBA8 and into three 3D
  textures, up to ``glFinish``, timed by the model itself at its first draw) and the first
  frame (shader compile + upload + one frame);
- the median time of further frames at 800 x 600 and 1920 x 1080 (``View.image``, which
  renders offscreen and reads the pixels back), over four view directions.
Baseline, measured in the same run and the same process: ChimeraX's own image style
(``volume #1 style image``, 2D slices through one 3D texture) of the same tomogram at the
same sizes; printed as ratio ours / stock. llvmpipe runs the shader on the CPU (2 cores
here, shared): a GPU is orders of magnitude faster.

Run: .venv/bin/python benchmarks/bench_chimerax_render.py [--quick]
(builds or reuses the cached ChimeraX env of tests/external_envs.py and installs the
project and the bundle into it).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

SIZES = ((800, 600), (1920, 1080))
VIEWS = ("view orient", "turn y 40", "turn x 30", "turn y 70")


def in_chimerax(session, folder: Path, repeats: int) -> dict:
    """The measurements, inside ChimeraX (``session`` is the live session)."""
    from chimerax.core.commands import run

    tomo = run(session, f"open {folder / 'tomo.mrc'}")[0]
    classes = [run(session, f"open {folder / f'class{i}.mrc'}")[0] for i in range(4)]
    spec = ",".join(v.id_string for v in classes)
    view = session.main_view

    t0 = time.perf_counter()
    run(session, f"cryovis render #{tomo.id_string} classes #{spec} wait true")
    precompute = time.perf_counter() - t0
    from chimerax.cryovis.renderer import RayMarchedVolume

    model = session.models.list(type=RayMarchedVolume)[0]
    run(session, "view")

    def frame(w, h) -> float:
        t = time.perf_counter()
        view.image(w, h, supersample=None)
        return time.perf_counter() - t

    first = frame(*SIZES[0])
    out = {"precompute_s": precompute, "first_frame_s": first, "upload_s": model.upload_s,
           "texture_mb": model.texture_bytes() / 2**20, "ours": {}, "stock": {}}

    def frames(label: str) -> None:
        for w, h in SIZES:
            times = []
            for v in VIEWS:
                run(session, v)
                frame(w, h)  # first frame of a view (and size) not timed
                times += [frame(w, h) for _ in range(repeats)]
            out[label][f"{w}x{h}"] = statistics.median(times)

    frames("ours")
    model.display = False
    tomo.display = True
    run(session, f"volume #{tomo.id_string} style image")
    run(session, "view")
    frames("stock")
    return out


def main() -> None:
    import argparse
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "tests"), str(root / "chimerax_bundle"), str(root / "benchmarks")]
    from bench_render import phantom
    from external_envs import chimerax_command, chimerax_env, env_python, install_project
    from install_bundle import build_and_install

    from formats import Volume, write_volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 frame per view, not 3")
    args = parser.parse_args()
    env = chimerax_env()
    install_project(env)
    build_and_install(env_python(env))
    with tempfile.TemporaryDirectory(prefix="cryovis-bench-cx-") as tmp:
        folder = Path(tmp)
        raw, soft = phantom()
        write_volume(folder / "tomo.mrc", Volume(raw, voxel_size=10.0))
        for i, s in enumerate(soft):
            write_volume(folder / f"class{i}.mrc", Volume(s, voxel_size=10.0))
        result = folder / "result.json"
        script = (f"{Path(__file__).resolve()} --inside {folder} {result} "
                  f"{1 if args.quick else 3}")
        proc = subprocess.run([*chimerax_command(env), "--script", script],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"ChimeraX failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        r = json.loads(result.read_text())
    print(f"precompute (engine in ChimeraX, 256x256x128, 4 classes): {r['precompute_s']:.2f} s")
    print(f"upload (3 RGBA8 3D textures, {r['texture_mb']:.0f} MB): {r['upload_s']:.2f} s "
          f"(first frame, with the shader compile and the upload: {r['first_frame_s']:.2f} s)")
    for size in r["ours"]:
        ours, stock = r["ours"][size], r["stock"][size]
        print(f"frame {size}: ours {ours:.3f} s, ChimeraX image style {stock:.3f} s, "
              f"ratio {ours / stock:.1f}")
    print(json.dumps(r))


if "session" in globals() and "--inside" in sys.argv:  # run by ChimeraX as a --script
    i = sys.argv.index("--inside")
    folder, out, repeats = Path(sys.argv[i + 1]), Path(sys.argv[i + 2]), int(sys.argv[i + 3])
    out.write_text(json.dumps(in_chimerax(globals()["session"], folder, repeats)))
elif __name__ == "__main__":
    main()
