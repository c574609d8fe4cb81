"""Round trips through every particle writer (property-based, hypothesis).

For random positions, uniformly random orientations (unit quaternions), voxel sizes,
binnings and tomogram names, write -> read must return the same particles: positions
within 1e-3 Å, orientations within 1e-4 (largest rotation-matrix element difference),
and names/classes/voxel sizes where the format stores them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from formats import FORMATS as REGISTRY
from formats import make_table, orientations, read_particles, write_particles

TOMO_SIZE = "2000x1800x900"
_counter = itertools.count()

# name: (stores orientation, stores tomogram names, stores voxel size, options, n tomos)
FORMATS = {
    "relion5": (True, True, True, {"tomo_size_xyz": TOMO_SIZE}, 3),
    "relion4": (True, True, True, {}, 3),
    "relion31": (True, True, True, {}, 3),
    "relion30": (True, True, True, {}, 3),
    "dynamo": (True, True, True, {}, 3),
    "motl": (True, "int", False, {}, 3),
    "stopgap": (True, "int", False, {}, 3),
    "pytom": (True, True, False, {}, 3),
    "copick": (True, True, True, {}, 1),
    "csv": (True, True, True, {}, 3),
    "cryolo": (False, False, False, {}, 1),
    "eman2": (False, False, True, {"tomo_size_xyz": TOMO_SIZE}, 1),
    "eman2box": (False, False, False, {}, 1),
    "imod": (False, False, True, {}, 1),
    "imod_slan": (True, False, True, {"slicer_angles": True}, 1),
}
SUFFIX = {"relion5": ".star", "relion4": ".star", "relion31": ".star", "relion30": ".star",
          "dynamo": ".tbl", "motl": ".em", "stopgap": ".star", "pytom": ".xml",
          "copick": ".json", "csv": ".csv", "cryolo": ".cbox", "eman2": ".json",
          "eman2box": ".box", "imod": ".mod", "imod_slan": ".mod"}
NAMES = {True: ["001", "TS_01.tomostar", "7"], "int": ["3", "12", "7"], False: ["t"]}


def _quaternions(n: int, seed: int) -> np.ndarray:
    """Uniform random rotations (normalised Gaussian 4-vectors) as matrices."""
    q = np.random.default_rng(seed).normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


@st.composite
def particle_sets(draw, fmt: str):
    n = draw(st.integers(1, 12))
    xyz = np.array(draw(st.lists(st.tuples(*[st.floats(0, 999.999, allow_nan=False)] * 3),
                                 min_size=n, max_size=n)))
    vs = draw(st.floats(1.0, 10.0))
    binning = draw(st.sampled_from([1.0, 2.0, 4.0, 1.5]))
    seed = draw(st.integers(0, 2**31 - 1))
    mats = _quaternions(n, seed)
    # gimbal-lock orientations (tilt 0 or 180) must survive too
    if draw(st.booleans()):
        c, s = np.cos(seed), np.sin(seed)
        mats[0] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    _, names_kind, _, _, n_tomos = FORMATS[fmt]
    names = NAMES[names_kind][:n_tomos]
    tomo = [names[i % len(names)] for i in range(n)]
    classes = None if fmt == "copick" else [str(1 + (i % 3)) for i in range(n)]
    scores = np.random.default_rng(seed).uniform(0, 1, n)
    return make_table(xyz, vs, mats, tomo, classes, scores), binning


def _roundtrip(tmp: Path, fmt: str, table, binning: float):
    has_rot, has_names, has_vs, options, _ = FORMATS[fmt]
    if fmt == "imod":
        # IMOD keeps points in objects, one per class: the file groups them by class.
        groups = {c: i for i, c in enumerate(dict.fromkeys(table["class"]))}
        order = np.argsort(table["class"].map(groups).to_numpy(), kind="stable")
        table = table.iloc[order].reset_index(drop=True)
    path = tmp / f"rt{next(_counter)}{SUFFIX[fmt]}"
    fmt = fmt.split("_")[0]  # imod_slan: IMOD with slicer-angle records
    if "binning" not in REGISTRY[fmt].write_options:  # copick stores Å: nothing to bin
        binning = 1.0
        write_particles(path, table, format=fmt, **options)
        read_opts = dict(options)
    else:
        write_particles(path, table, format=fmt, binning=binning, **options)
        read_opts = dict(options, binning=binning)
    if not has_names:  # one tomogram per file, named by the reader's tomo_name option
        read_opts["tomo_name"] = str(table["tomo_name"].iloc[0])
    if not has_vs:
        read_opts["voxel_size"] = float(table["voxel_size"].iloc[0]) / binning
    back = read_particles(path, format=fmt, **read_opts)
    assert len(back) == len(table)
    a = table[["x_angst", "y_angst", "z_angst"]].to_numpy()
    b = back[["x_angst", "y_angst", "z_angst"]].to_numpy()
    assert np.abs(a - b).max() < 1e-3, f"{fmt}: positions moved by {np.abs(a - b).max()} Å"
    assert np.allclose(back["voxel_size"], table["voxel_size"], rtol=1e-6)
    if has_rot:
        d = np.abs(orientations(back) - orientations(table)).max()
        assert d < 1e-4, f"{fmt}: orientations differ by {d}"
    assert list(back["tomo_name"]) == list(table["tomo_name"])
    if fmt not in ("cryolo", "eman2box", "copick") and table["class"].notna().all():
        assert list(back["class"]) == list(table["class"])
    return back


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_roundtrip_every_writer(fmt, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(fmt)

    @settings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(particle_sets(fmt))
    def check(sample):
        table, binning = sample
        _roundtrip(tmp, fmt, table, binning)

    check()


def test_chain_through_all_orientation_formats(tmp_path):
    """relion5 -> dynamo -> motl -> pytom -> stopgap -> copick -> relion4 -> csv keeps
    every particle (positions in Å and orientations)."""
    rng = np.random.default_rng(5)
    table = make_table(rng.uniform(0, 500, (20, 3)), 5.4, _quaternions(20, 5), "5")
    start = table.copy()
    for fmt in ("relion5", "dynamo", "motl", "pytom", "stopgap", "copick", "relion4", "csv",
                "relion31", "relion30"):
        table = _roundtrip(tmp_path, fmt, table, 1.0)
    assert np.abs(table[["x_angst", "y_angst", "z_angst"]].to_numpy()
                  - start[["x_angst", "y_angst", "z_angst"]].to_numpy()).max() < 1e-3
    assert np.abs(orientations(table) - orientations(start)).max() < 1e-4


ORIENTED = ["relion5", "relion4", "relion31", "relion30", "dynamo", "motl", "stopgap",
            "pytom", "csv", "imod_slan"]


def test_conversion_between_any_two_formats(tmp_path_factory):
    """Format A -> table -> format B -> table keeps positions (Å) and orientations."""
    tmp = tmp_path_factory.mktemp("pairs")

    @settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(st.sampled_from(ORIENTED), st.sampled_from(ORIENTED), particle_sets("motl"))
    def check(first, second, sample):
        table, binning = sample
        table = table.assign(tomo_name="3")
        middle = _roundtrip(tmp, first, table, binning)
        final = _roundtrip(tmp, second, middle, 1.0)
        a = table[["x_angst", "y_angst", "z_angst"]].to_numpy()
        b = final[["x_angst", "y_angst", "z_angst"]].to_numpy()
        assert np.abs(a - b).max() < 1e-3
        assert np.abs(orientations(final) - orientations(table)).max() < 1e-4
        assert list(final["tomo_name"]) == ["3"] * len(table)

    check()
