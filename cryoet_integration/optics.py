"""Electron optics shared by the simulator and the preprocessing: one wavelength, one CTF.

Units: voltages in kV, lengths in Å (defocus, Cs), spatial frequencies in 1/Å, angles
in radians unless a name says degrees. Underfocus is a positive defocus.
"""

from __future__ import annotations

import numpy as np

ELECTRON_REST_ENERGY_EV = 510998.95
# h / sqrt(2 m0 e) in Å V^(1/2): the non-relativistic wavelength at 1 V.
WAVELENGTH_CONSTANT = 12.2643


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength (Å) at ``voltage_kv`` kV (0.0197 Å at 300 kV)."""
    v = voltage_kv * 1e3
    return float(WAVELENGTH_CONSTANT / np.sqrt(v * (1 + v / (2 * ELECTRON_REST_ENERGY_EV))))


def ctf_phase(k: np.ndarray, defocus_angst: float | np.ndarray, voltage_kv: float,
              cs_angst: float) -> np.ndarray:
    """Wave aberration ``chi(k) = pi lambda dz k^2 - pi/2 Cs lambda^3 k^4`` (rad).

    ``k`` in 1/Å; ``defocus_angst`` may be an array broadcasting with ``k`` (astigmatism).
    """
    lam = electron_wavelength(voltage_kv)
    return np.pi * lam * defocus_angst * k ** 2 - 0.5 * np.pi * cs_angst * lam ** 3 * k ** 4


def ctf(chi: np.ndarray, amplitude_contrast: float) -> np.ndarray:
    """The phase-contrast transfer function ``sqrt(1 - A^2) sin(chi) + A cos(chi)``."""
    a = amplitude_contrast
    return np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi)
