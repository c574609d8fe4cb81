"""A small, independent tomogram phantom generator for cross-simulator checks.

Written from scratch and deliberately unlike ``cryoet_integration.simulate`` (which projects a
scene into a tilt series and back-projects it): here the scene density is imaged directly
in 3D Fourier space. Membranes are vesicles (rotated ellipsoids), tubes and undulating
finite sheets with either a Gaussian two-leaflet profile or a single Gaussian band;
proteins are clusters of Gaussian blobs; filaments are Gaussian tubes along random
smooth curves. Imaging is a 3D radial CTF with a B-factor envelope, coloured (1/k^alpha)
plus white noise, and the missing wedge as a Fourier mask (tilt axis y, tilts about it up
to +-``tilt_max_deg``). Arrays are ``[z, y, x]``; lengths are in Å unless named ``_vox``.

Ground truth follows the project's label convention: every voxel whose distance to a
membrane mid-surface is at most 25 Å (2.5 nm).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TRUTH_HALF_WIDTH_ANGST = 25.0
ELECTRON_WAVELENGTH_300KV = 0.01969  # Å


@dataclass
class PhantomConfig:
    """Imaging and scene parameters of one phantom (Å, degrees, voxels where named)."""

    size_xyz: tuple[int, int, int] = (192, 192, 96)
    voxel_size: float = 10.0
    profile: str = "bilayer"            # "bilayer" (two leaflets) or "band" (one Gaussian)
    leaflet_separation: float = 38.0    # Å between the two head-group peaks
    leaflet_sigma: float = 7.0          # Å, sigma of each leaflet; a band has twice this
    membrane_density: float = 1.0
    n_vesicles: int = 6
    n_tubes: int = 1
    n_sheets: int = 1
    n_protein_clusters: int = 40
    n_filaments: int = 3
    lumen_density: float = 0.15
    snr: float = 0.1                    # signal variance / noise variance after imaging
    pink_alpha: float = 1.0             # coloured-noise exponent (power ~ 1/k^alpha)
    pink_fraction: float = 0.6          # share of the noise variance that is coloured
    defocus_um: float = 4.0
    amplitude_contrast: float = 0.07
    bfactor: float = 300.0              # Å^2 envelope exp(-B k^2 / 4)
    phase_flipped: bool = False         # CTF corrected by phase flipping
    tilt_max_deg: float = 60.0
    polarity: str = "dark"              # "dark": dense matter negative (raw cryo-ET)

    def to_dict(self) -> dict:
        return asdict(self)


def _grid(shape_zyx: tuple[int, int, int], vs: float) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates ``(z, y, x)`` in Å, each broadcastable to ``shape_zyx``."""
    nz, ny, nx = shape_zyx
    return (np.arange(nz, dtype=np.float32)[:, None, None] * vs,
            np.arange(ny, dtype=np.float32)[None, :, None] * vs,
            np.arange(nx, dtype=np.float32)[None, None, :] * vs)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q.astype(np.float32)


def _ellipsoid_distance(zyx, centre, axes, rot) -> np.ndarray:
    """First-order signed distance (Å) to a rotated ellipsoid surface: (g - 1) / |grad g|,
    accurate within a few Å of the surface when the axes are > 10 nm."""
    d = [c - o for c, o in zip(zyx, centre)]
    u = [rot[0, i] * d[0] + rot[1, i] * d[1] + rot[2, i] * d[2] for i in range(3)]
    g2 = sum((ui / a) ** 2 for ui, a in zip(u, axes))
    g = np.sqrt(g2) + 1e-6
    grad = np.sqrt(sum((ui / a**2) ** 2 for ui, a in zip(u, axes))) / g + 1e-9
    return (g - 1.0) / grad


def _tube_distance(zyx, point, direction, radius) -> np.ndarray:
    """Signed distance (Å) to an infinite cylinder of ``radius`` Å."""
    d = [c - o for c, o in zip(zyx, point)]
    along = d[0] * direction[0] + d[1] * direction[1] + d[2] * direction[2]
    r2 = d[0] ** 2 + d[1] ** 2 + d[2] ** 2 - along**2
    return np.sqrt(np.maximum(r2, 0.0)) - radius


def _sheet_distance(zyx, centre, rot, amp, wavelength, phase, half_extent):
    """Signed distance (Å) to an undulating square patch; NaN outside the patch."""
    d = [c - o for c, o in zip(zyx, centre)]
    u, v, w = ([rot[0, i] * d[0] + rot[1, i] * d[1] + rot[2, i] * d[2] for i in range(3)])
    k = 2 * np.pi / wavelength
    height = amp * np.sin(k * u + phase)
    slope = amp * k * np.cos(k * u + phase)
    dist = (w - height) / np.sqrt(1 + slope**2)
    inside = (np.abs(u) <= half_extent) & (np.abs(v) <= half_extent)
    return np.where(inside, dist, np.nan)


def _profile(dist: np.ndarray, cfg: PhantomConfig) -> np.ndarray:
    """Membrane density as a function of the distance (Å) to the mid-surface."""
    s2 = 2 * cfg.leaflet_sigma**2
    if cfg.profile == "band":
        return np.exp(-dist**2 / (4 * s2))
    h = cfg.leaflet_separation / 2
    return np.exp(-(dist - h) ** 2 / s2) + np.exp(-(dist + h) ** 2 / s2)


def _gaussian_blobs(shape, vs, centres, sigmas, weights) -> np.ndarray:
    """Sum of isotropic Gaussians (centres ``[n, 3]`` z,y,x Å), each evaluated in a box."""
    out = np.zeros(shape, dtype=np.float32)
    for c, s, w in zip(centres, sigmas, weights):
        lo = np.maximum(np.floor((c - 3.5 * s) / vs).astype(int), 0)
        hi = np.minimum(np.ceil((c + 3.5 * s) / vs).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        z, y, x = (np.arange(lo[i], hi[i], dtype=np.float32) * vs - c[i] for i in range(3))
        r2 = z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += w * np.exp(-r2 / (2 * s * s))
    return out


def build_scene(cfg: PhantomConfig, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scene density ``[z, y, x]`` (dense matter positive), membrane truth mask, summary."""
    nx, ny, nz = cfg.size_xyz
    vs = cfg.voxel_size
    shape = (nz, ny, nx)
    zyx = _grid(shape, vs)
    ext = np.array([nz, ny, nx], dtype=np.float32) * vs
    nearest = np.full(shape, np.inf, dtype=np.float32)  # |distance| to the closest membrane
    lumen = np.zeros(shape, dtype=bool)
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(cfg.n_tubes):
        direction = rng.normal(size=3)
        direction[0] *= 0.3  # tubes mostly lie in the ice plane, as they do in thin lamellae
        direction /= np.linalg.norm(direction)
        dist = _tube_distance(zyx, rng.uniform(0.3, 0.7, size=3) * ext, direction,
                              rng.uniform(100, 250))
        lumen |= dist < 0
        np.minimum(nearest, np.abs(dist), out=nearest)
    for _ in range(cfg.n_sheets):
        dist = _sheet_distance(zyx, rng.uniform(0.3, 0.7, size=3) * ext, _rotation(rng),
                               rng.uniform(0, 200), rng.uniform(800, 2500),
                               rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.6) * ext[1:].max())
        np.minimum(nearest, np.where(np.isnan(dist), np.inf, np.abs(dist)), out=nearest)
    for _ in range(cfg.n_vesicles):
        for _attempt in range(8):
            r = rng.uniform(150, min(600, 0.4 * ext[0] + 150))
            axes = r * rng.uniform(0.75, 1.25, size=3)
            centre = rng.uniform([0.15, 0.1, 0.1], [0.85, 0.9, 0.9]) * ext
            if any(np.linalg.norm(centre - c) < r + rc + 60 for c, rc in placed):
                continue
            dist = _ellipsoid_distance(zyx, centre, axes, _rotation(rng))
            # Membranes do not cross: keep 6 nm between this one and those already placed.
            if not np.any(nearest[np.abs(dist) < 30] < 60):
                break
        else:
            continue
        placed.append((centre, float(axes.max())))
        lumen |= dist < 0
        np.minimum(nearest, np.abs(dist), out=nearest)
    truth = nearest <= TRUTH_HALF_WIDTH_ANGST
    density = cfg.membrane_density * _profile(np.where(np.isfinite(nearest), nearest, 1e4), cfg)
    density += cfg.lumen_density * lumen

    centres, sigmas, weights = [], [], []
    for _ in range(cfg.n_protein_clusters):
        c0 = rng.uniform(0, 1, size=3) * ext
        for _ in range(rng.integers(1, 6)):
            centres.append(c0 + rng.normal(scale=40, size=3))
            sigmas.append(rng.uniform(15, 45))
            weights.append(rng.uniform(0.5, 1.2))
    for _ in range(cfg.n_filaments):
        p = rng.uniform(0, 1, size=3) * ext
        heading = rng.normal(size=3)
        heading[0] *= 0.3
        for _ in range(int(rng.integers(40, 120))):
            heading = heading / np.linalg.norm(heading) + rng.normal(scale=0.08, size=3)
            p = p + 30 * heading / np.linalg.norm(heading)
            centres.append(p.copy())
            sigmas.append(30.0)
            weights.append(0.5)
    if centres:
        blobs = _gaussian_blobs(shape, vs, np.array(centres), sigmas, weights)
        # Proteins displace nothing but must not cover the membrane mid-surface.
        density += np.where(truth, 0.3, 1.0) * blobs
    summary = {"vesicles": len(placed), "membrane_fraction": float(truth.mean()),
               "protein_blobs": len(centres)}
    return density.astype(np.float32), truth, summary


def _kgrid(shape, vs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial frequencies (1/Å) ``kz, ky, kx`` of an rfftn of ``shape``."""
    nz, ny, nx = shape
    return (np.fft.fftfreq(nz, vs).astype(np.float32)[:, None, None],
            np.fft.fftfreq(ny, vs).astype(np.float32)[None, :, None],
            np.fft.rfftfreq(nx, vs).astype(np.float32)[None, None, :])


def image_scene(density: np.ndarray, cfg: PhantomConfig, rng: np.random.Generator
                ) -> tuple[np.ndarray, dict]:
    """Apply CTF, envelope, noise and the missing wedge to a scene density ``[z, y, x]``."""
    vs = cfg.voxel_size
    kz, ky, kx = _kgrid(density.shape, vs)
    k2 = kz**2 + ky**2 + kx**2
    chi = np.pi * ELECTRON_WAVELENGTH_300KV * cfg.defocus_um * 1e4 * k2
    a = cfg.amplitude_contrast
    # Underfocus makes low frequencies of dense matter negative ("dark"), as in raw data.
    ctf = -(np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi))
    if cfg.phase_flipped:
        ctf = -np.abs(ctf)
    transfer = ctf * np.exp(-cfg.bfactor * k2 / 4)
    t = np.tan(np.radians(cfg.tilt_max_deg))
    wedge = (np.abs(kz) <= t * np.abs(kx)) | (k2 == 0)
    signal = np.fft.irfftn(np.fft.rfftn(density) * transfer * wedge, s=density.shape)

    k = np.sqrt(k2)
    kmin = 1.0 / (max(density.shape) * vs)
    colour = np.maximum(k, kmin) ** (-cfg.pink_alpha / 2)
    white = rng.normal(size=density.shape).astype(np.float32)
    pink = np.fft.irfftn(np.fft.rfftn(rng.normal(size=density.shape)) * colour,
                         s=density.shape)
    pink /= pink.std() + 1e-12
    noise = np.sqrt(cfg.pink_fraction) * pink + np.sqrt(1 - cfg.pink_fraction) * white
    # Noise enters through the tilt images, so it is wedge-shaped too.
    noise = np.fft.irfftn(np.fft.rfftn(noise) * wedge, s=density.shape)
    scale = np.sqrt(signal.var() / (cfg.snr * noise.var() + 1e-30))
    tomo = signal + scale * noise
    if cfg.polarity == "light":
        tomo = -tomo
    return tomo.astype(np.float32), {"signal_std": float(signal.std())}


def make_phantom(cfg: PhantomConfig, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Tomogram ``[z, y, x]`` (float32), truth mask (bool) and a JSON-ready summary."""
    rng = np.random.default_rng(seed)
    density, truth, summary = build_scene(cfg, rng)
    tomo, info = image_scene(density, cfg, rng)
    summary.update(info, seed=seed, config=cfg.to_dict())
    return tomo, truth, summary
