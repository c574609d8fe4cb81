"""The simulator's outputs for fixed seeds stay what they were.

The reference figures were computed with the code before ``SimulationConfig`` moved to one
unit (Å) inside and before the simulator took its wavelength and CTF phase from
``cryoet_integration.optics``: the refactors must not change a voxel.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

pytest.importorskip("scipy")

from cryoet_integration.simulate import SimulationConfig, simulate_tomogram  # noqa: E402

REFERENCE = {
    "default": {"labels": "9a8ebb011d5bed6416933a750dc3a8a02f3fee7e38dc67dc1da6af37b3e97317",
        "instances": "23f352c480121055f72398104e947d8612c7813a9ab1caaabb37a6543af81a5f",
        "membranes": "cea078e9b6b0ed3e6617477806bc4cd28893083e478662fc6e59199672291c5c",
        "tomogram_sumsq": 61439.99622970367, "n_particles": 22,
        "xyz_sum": 1287.187297401845},
    "random5": {"labels": "02281d0246f10c452ed973f57df13dcc0218b5281404c85a0e9d04bf7708458c",
        "instances": "a68915ddab56d475e7c2afcf6db44a9dbdb0e5baf9032203f39cc458cb99cfb9",
        "membranes": "c7cb51fc0f0ce323663949ae3d70220eaf66084d87a0277a800e7bd80bc0e04f",
        "tomogram_sumsq": 61440.00016524199, "n_particles": 12,
        "xyz_sum": 749.4088552859375},
    "random11": {"labels": "fccf96f9eb072d74a4f54addb770322da888c3a643427e0d2f54f332e6ab0757",
        "instances": "6306dc462e26e198fc09e59ac2925bc99b46d338dff78254e6b50ada3e180eab",
        "membranes": "31c0eaa4980850f3e035ecf2109b968ebd1af52be777cedc8969158045d45df9",
        "tomogram_sumsq": 61439.9958850113, "n_particles": 15,
        "xyz_sum": 887.9755658109225},
}
CONFIGS = {"default": (3, SimulationConfig),
           "random5": (5, lambda: SimulationConfig.randomised(5)),
           "random11": (11, lambda: SimulationConfig.randomised(11))}


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_simulation_is_unchanged_for_a_seed(name):
    seed, make = CONFIGS[name]
    sim = simulate_tomogram(seed=seed, size_xyz=(48, 40, 32), config=make(), tomo_name="t")
    ref = REFERENCE[name]
    for key in ("labels", "instances", "membranes"):
        assert _sha(getattr(sim, key)) == ref[key], key
    tomo = sim.tomogram.data.astype(np.float64)
    assert float((tomo * tomo).sum()) == pytest.approx(ref["tomogram_sumsq"], rel=1e-12)
    assert len(sim.particles) == ref["n_particles"]
    xyz = sim.particles[["x", "y", "z"]].to_numpy().sum() if len(sim.particles) else 0.0
    assert float(xyz) == pytest.approx(ref["xyz_sum"], rel=1e-12)


def test_lengths_are_in_angstrom_inside():
    names = [f.name for f in dataclasses.fields(SimulationConfig)]
    assert not [n for n in names if n.endswith(("_nm", "_um", "_mm", "_um2"))]
    cfg = SimulationConfig()
    assert cfg.defocus_angst == 3.5e4 and cfg.cs_angst == 2.7e7
    assert cfg.leaflet_spacing_angst == 40.0 and cfg.fiducial_diameter_angst == 100.0
