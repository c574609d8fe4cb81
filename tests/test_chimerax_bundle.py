"""The ChimeraX bundle inside real ChimeraX 1.7.1, offscreen (llvmpipe).

The cached headless ChimeraX env (``external_envs.chimerax_env``) gets this checkout's base
package (``install_project``) and the bundle, built and installed with the env's own pip
(not ``devel install``, which would call pip on the base interpreter). A small simulated
tomogram with a voxel-size-honouring origin, its soft class maps and particle files are
written here, with this venv's engine; then the bundle's own suite
(``chimerax_bundle/tests``) runs in ONE ChimeraX process (``CHIMERAX_RUN_PYTEST``) and
drives every ``cryovis`` command, comparing the GPU ray marcher with the engine's CPU render.
The inner log is printed whole (pytest shows it for a failure) and kept as
``chimerax_suite.log`` in the test's tmp_path.

``CRYOVIS_SKIP_EXTERNAL=1`` skips it (developers only; CI never sets it).
``CRYOVIS_SCREENSHOTS=DIR`` copies the renders of the two views into DIR (how the README's
screenshots in docs/images are made).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from external_envs import (
    CHIMERAX_RUN_PYTEST,
    chimerax_command,
    chimerax_env,
    env_python,
    install_project,
    installed_versions,
    pristine_versions,
)

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "chimerax_bundle"
sys.path.insert(0, str(BUNDLE))
from install_bundle import build_and_install  # noqa: E402 - the bundle folder is not a package

# Classes of the simulator's label map, as the rendering figures use them (docs/rendering.md).
CLASSES = [("membrane", [1]), ("ribosome", [2]), ("complexes", [3, 4, 5, 6, 7, 8]),
           ("gold", [9])]
ORIGIN_ANGST = (120.0, -80.0, 40.0)
# Sparse strokes (label values 1..3) for `cryovis pseudolabel` and the K-class network.
STROKE_CLASSES = [("background", [0]), ("membrane", [1]), ("particle", [2, 3, 4, 5, 6, 7, 8])]
STROKES_PER_CLASS = 40
# A tiny network, a few steps: enough for `cryovis segment` to load and run a K-class model
# trained with `--pseudolabels` (its accuracy is docs/pseudolabel.md's business).
# The template-matching test's class: the simulator's own noise-free map of it is the
# template (measured at a 45° grid: 7 of the 10 best picks within 1.5 voxels of the 7 rings;
# the globular class, 17^3 voxels, clears no cut-off).
TEMPLATE_CLASS = "ring"
TINY_NET = json.dumps({"network": {"base_channels": 4, "depth": 2, "deep_supervision": False},
                       "patch_size": [16, 16, 16], "batch_size": 2, "precision": "fp32",
                       "augment": {"rotate": {"p": 0}}})

pytestmark = [
    pytest.mark.chimerax,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CRYOVIS_SKIP_EXTERNAL") == "1",
                       reason="CRYOVIS_SKIP_EXTERNAL=1"),
]


def test_both_pyproject_forms_agree():
    """ChimeraX 1.7 reads [chimerax], later releases [tool.chimerax]: they must match."""
    meta = tomllib.loads((BUNDLE / "pyproject.toml").read_text())
    assert meta["chimerax"] == meta["tool"]["chimerax"]
    assert set(meta["chimerax"]["command"]) == {
        f"cryovis {c}" for c in ("render", "segment", "pseudolabel", "membranes", "pick",
                                 "open", "save", "threshold", "config", "jobs", "cancel")}
    assert not any("torch" in d for d in meta["project"]["dependencies"])


def make_data(folder: Path) -> dict:
    """A simulated tomogram (96 x 96 x 48 voxels at 10 Å, origin ORIGIN_ANGST), soft class
    maps (blurred ground-truth labels), its particles as RELION 5 STAR and CSV, the
    simulator's noise-free map of TEMPLATE_CLASS at the tomogram's voxel size (the template
    for `cryovis pick method template`), sparse strokes of three classes and a 3-class
    network trained on the engine's pseudo-labels of those strokes (`cryovis pseudolabel`,
    then `cryovis train segmenter --pseudolabels`)."""
    from scipy import ndimage

    from cryoet_integration.cli import main
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from cryoet_integration.simulate.shapes import CLASSES as PARTICLE_CLASSES
    from cryoet_integration.simulate.shapes import class_template
    from formats import Volume, write_particles, write_volume

    config = dataclasses.replace(SimulationConfig(), n_vesicles=1, crowding=0.08)
    sim = simulate_tomogram(seed=11, size_xyz=(96, 96, 48), config=config)
    vs = float(sim.tomogram.voxel_size)
    write_volume(folder / "tomo.mrc", Volume(sim.tomogram.data.astype(np.float32),
                                             voxel_size=vs, origin=ORIGIN_ANGST))
    names = []
    for name, ids in CLASSES:
        soft = ndimage.gaussian_filter(np.isin(sim.labels, ids).astype(np.float32), 1.0) * 1.5
        write_volume(folder / f"{name}.mrc", Volume(np.clip(soft, 0, 1), voxel_size=vs,
                                                    origin=ORIGIN_ANGST))
        names.append(f"{name}.mrc")
    table = sim.particles.copy()
    table["tomo_name"] = "tomo"
    write_particles(folder / "particles.csv", table, format="csv")
    nx, ny, nz = sim.tomogram.shape_xyz
    write_particles(folder / "particles.star", table, format="relion5",
                    tomo_size_xyz=f"{nx}x{ny}x{nz}", tilt_series_pixel_size=vs)
    assert TEMPLATE_CLASS in set(table["class"]), "the template's class is not simulated"
    # in a folder of its own: the file's stem names the picks' class, beside no class map
    template = Path("templates") / f"{TEMPLATE_CLASS}.mrc"
    (folder / template).parent.mkdir()
    write_volume(folder / template, Volume(class_template(PARTICLE_CLASSES[TEMPLATE_CLASS], vs),
                                           voxel_size=vs))
    # strokes: voxels well inside each class (eroded), 1..3 in STROKE_CLASSES order
    rng = np.random.default_rng(5)
    strokes = np.zeros(sim.labels.shape, np.int16)
    for value, (_, ids) in enumerate(STROKE_CLASSES, start=1):
        inside = ndimage.binary_erosion(np.isin(sim.labels, ids), iterations=1)
        picked = rng.choice(np.flatnonzero(inside), STROKES_PER_CLASS, replace=False)
        strokes.flat[picked] = value
    write_volume(folder / "strokes.mrc", Volume(strokes, voxel_size=vs, origin=ORIGIN_ANGST))
    stroke_names = [name for name, _ in STROKE_CLASSES]
    assert main(["pseudolabel", str(folder / "tomo.mrc"), "--labels", str(folder / "strokes.mrc"),
                 "--classes", *stroke_names, "--out", str(folder / "pl" / "soft.mrc"),
                 "--trees", "8", "--threads", "2"]) == 0
    assert main(["train", "segmenter", "--tomograms", str(folder / "tomo.mrc"),
                 "--pseudolabels", str(folder / "pl" / "soft.mrc"), "--out",
                 str(folder / "kclass"), "--voxel-size", str(vs), "--max-steps", "4",
                 "--config", TINY_NET, "--threads", "2", "--no-progress"]) == 0
    info = {"tomogram": "tomo.mrc", "classes": names, "particles_csv": "particles.csv",
            "particles_star": "particles.star", "voxel_size": vs, "strokes": "strokes.mrc",
            "stroke_classes": stroke_names, "kclass_model": "kclass.pt",
            "membrane_truth": "membrane.mrc", "template": str(template),
            "template_class": TEMPLATE_CLASS}
    (folder / "data.json").write_text(json.dumps(info))
    return info


def test_bundle_suite_in_chimerax(tmp_path):
    env = chimerax_env()
    install_project(env)
    numpy_before = installed_versions(env)["numpy"]
    build_and_install(env_python(env))
    versions = installed_versions(env)
    assert versions["numpy"] == numpy_before == "1.26.4"
    assert "torch" not in versions
    assert "chimerax-cryovis" in versions
    # none of the engine's heavy dependencies that ChimeraX does not ship came along
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    engine_deps = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower()
                   for d in meta["project"]["optional-dependencies"]["engine"]}
    pulled = sorted(d for d in engine_deps - set(pristine_versions(env)) if d in versions)
    assert not pulled, f"installing the bundle pulled engine dependencies: {pulled}"

    data = tmp_path / "data"
    data.mkdir()
    make_data(data)
    engine = Path(sys.executable).parent / "cryovis"
    assert engine.is_file(), f"{engine}: the engine program of this venv is missing"
    # The engine is NOT on ChimeraX's PATH: the suite finds it through `cryovis config`.
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not (Path(p) / "cryovis").exists())
    run_env = dict(os.environ, PATH=path, CRYOVIS_TEST_DATA=str(data),
                   CRYOVIS_TEST_ENGINE=str(engine), CRYOVIS_TEST_OUT=str(tmp_path / "out"),
                   HOME=str(tmp_path / "home"))
    run_env.pop("PYTHONPATH", None)
    tests = BUNDLE / "tests"
    cmd = [*chimerax_command(env), "--script", f"{CHIMERAX_RUN_PYTEST} {tests} -rA"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=run_env, capture_output=True, text=True,
                          timeout=1500)
    # The whole inner log, kept beside the renders: a failure's traceback sits in its middle.
    log_file = tmp_path / "chimerax_suite.log"
    log_file.write_text(f"$ {' '.join(cmd)}\nexit {proc.returncode}\n--- stdout\n"
                        f"{proc.stdout}\n--- stderr\n{proc.stderr}")
    print(log_file.read_text())
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    assert proc.returncode == 0, f"inner suite failed: {summary} (full log: {log_file})"
    assert " passed" in summary and "skipped" not in summary, summary
