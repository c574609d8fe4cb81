"""Training augmentation of (image, label) patches ``[z, y, x]`` (numpy, scipy.ndimage).

Follows MemBrain v2 (nnU-Net-style geometric and intensity transforms, plus its Fourier
amplitude random-walk augmentation and IsoNet-style missing-wedge augmentation).

Geometry always moves image and label together; labels use nearest-neighbour interpolation,
so integer classes and the ignore label (-1) survive unchanged. Out-of-patch samples are
filled by mirroring for both, keeping them aligned. The output shape always equals the input
shape (quarter turns and axis swaps that would change it are not used). z is treated as
special (missing wedge): axis swaps and 90-degree rotations act in the xy plane unless
``swap_z`` is set, and arbitrary rotations tilt out of the xy plane by at most ``tilt_range``
degrees.

``Augmenter(config, seed)``: ``config`` maps transform names to option dicts that override
``DEFAULT_CONFIG`` (set ``{"p": 0}`` to disable one); each transform fires with probability
``p``. The random stream is ``numpy.random.default_rng(seed)``, so a given seed gives the same
sequence of augmentations.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy import ndimage

from cryoet_integration.preprocess import radial_frequency

DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    # geometric (image and label)
    "rot90": {"p": 0.5},                       # k * 90 degrees in the xy plane
    "flip": {"p": 0.5},                        # per axis
    "swap": {"p": 0.5, "swap_z": False},       # transpose x<->y (any axes if swap_z)
    "rotate": {"p": 0.2, "z_range": 180.0, "tilt_range": 15.0},   # degrees
    "zoom": {"p": 0.2, "range": (0.7, 1.4)},   # > 1 magnifies
    "image_order": {"order": 1},               # spline order for image resampling
    # MemBrain v2 Fourier augmentations (image only; label follows the rotation)
    "missing_wedge": {"p": 0.1, "max_tilt": (40.0, 70.0), "rotate": True},
    "fourier_amplitude": {"p": 0.25, "sigma": 0.2},
    # intensity (image only)
    "noise": {"p": 0.15, "sigma": (0.0, 0.3)},           # fraction of the patch std
    "blur": {"p": 0.15, "sigma": (0.5, 1.5)},            # voxels
    "median": {"p": 0.05, "size": 3},
    "sharpen": {"p": 0.1, "strength": (0.2, 1.0)},
    "brightness": {"p": 0.15, "range": (0.75, 1.25)},    # multiplicative
    "contrast": {"p": 0.15, "range": (0.75, 1.25)},
    "gamma": {"p": 0.2, "range": (0.7, 1.5), "invert_p": 0.1},
    "gradient": {"p": 0.1, "strength": (0.0, 0.5)},      # additive ramp, in patch stds
    "low_resolution": {"p": 0.15, "scale": (0.5, 1.0)},
    "erase": {"p": 0.05, "size": (0.1, 0.3)},            # box edge, fraction of patch
    # Sign flip: tomograms reach users in both polarities (dense dark as reconstructed,
    # or dense bright after Warp/RELION-style inversion); off unless a recipe asks.
    "polarity": {"p": 0.0},
}


def _merge(config: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for name, opts in (config or {}).items():
        if name not in merged:
            raise ValueError(f"unknown augmentation {name!r}: choose from {sorted(merged)}")
        unknown = set(opts) - set(merged[name])
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} for augmentation {name!r}")
        merged[name].update(opts)
    return merged


def rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """3x3 rotation acting on ``(z, y, x)`` coordinates: about z, then y, then x (degrees)."""
    a, b, c = np.deg2rad(angles_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def affine_pair(image: np.ndarray, label: np.ndarray | None, matrix: np.ndarray,
                order: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample image (spline ``order``) and label (nearest) by ``out = matrix @ (in - c) + c``.

    ``matrix`` acts on ``(z, y, x)`` voxel coordinates about the patch centre ``c``; the output
    keeps the input shape; out-of-patch samples are mirrored.
    """
    inverse = np.linalg.inv(matrix)
    centre = (np.array(image.shape) - 1) / 2.0
    offset = centre - inverse @ centre
    out = ndimage.affine_transform(image, inverse, offset, order=order, mode="mirror",
                                   prefilter=order > 1)
    lab = None
    if label is not None:
        lab = ndimage.affine_transform(label, inverse, offset, order=0, mode="mirror")
    return out.astype(image.dtype, copy=False), lab


def fourier_amplitude_walk(image: np.ndarray, rng: np.random.Generator,
                           sigma: float = 0.2) -> np.ndarray:
    """MemBrain v2 Fourier amplitude augmentation.

    A random walk ``x0 = 1, x_{n+1} = |x_n + N(0, sigma^2)|`` of length ``min(shape) // 2``
    becomes a radial kernel (frequency shell ``n`` scaled by ``x_n``; beyond Nyquist the last
    value) that multiplies the spectrum. The result keeps the input's mean and std.
    """
    n = max(2, min(image.shape) // 2)
    walk = np.empty(n)
    walk[0] = 1.0
    steps = rng.normal(0.0, sigma, n - 1)
    for i in range(1, n):
        walk[i] = abs(walk[i - 1] + steps[i - 1])
    # shells one frequency step (of the shortest axis) wide
    shell = np.minimum(np.rint(radial_frequency(image.shape) * min(image.shape)).astype(int),
                       n - 1)
    spectrum = np.fft.rfftn(image) * walk[shell]
    out = np.fft.irfftn(spectrum, s=image.shape, axes=(0, 1, 2))
    return _match_moments(out, image)


def wedge_mask(shape: tuple[int, int, int], max_tilt_deg: float) -> np.ndarray:
    """rfftn-grid mask (1 = kept) of a single-axis tilt series about y with tilts +-max_tilt.

    Kept: Fourier components whose direction in the (kx, kz) plane is within ``max_tilt`` of
    the kx axis, i.e. ``|kz| <= |kx| tan(max_tilt)`` (the DC term is always kept).
    """
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.rfftfreq(shape[2])[None, None, :]
    keep = np.abs(kz) <= np.abs(kx) * np.tan(np.deg2rad(max_tilt_deg)) + 1e-12
    return np.broadcast_to(keep, (shape[0], shape[1], shape[2] // 2 + 1))


def apply_missing_wedge(image: np.ndarray, max_tilt_deg: float) -> np.ndarray:
    """Remove the missing wedge of a +-``max_tilt_deg`` tilt series about y (mean/std kept)."""
    spectrum = np.fft.rfftn(image) * wedge_mask(image.shape, max_tilt_deg)
    return _match_moments(np.fft.irfftn(spectrum, s=image.shape, axes=(0, 1, 2)), image)


def _match_moments(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    std = out.std()
    scale = ref.std() / std if std > 0 else 1.0
    return ((out - out.mean()) * scale + ref.mean()).astype(ref.dtype, copy=False)


class Augmenter:
    """Random augmentation of ``(image, label)`` patches ``[z, y, x]``; see module docstring.

    ``image`` is float; ``label`` is an integer label map (ignore = -1) or a float soft label
    of the same shape, or ``None``. Returns new arrays (inputs are not modified).
    """

    def __init__(self, config: dict[str, dict[str, Any]] | None = None, seed: int | None = 0):
        self.config = _merge(config)
        self.rng = np.random.default_rng(seed)

    def _fires(self, name: str) -> bool:
        return self.rng.random() < self.config[name]["p"]

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return float(self.rng.uniform(bounds[0], bounds[1]))

    def __call__(self, image: np.ndarray, label: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        if image.ndim != 3 or (label is not None and label.shape != image.shape):
            raise ValueError(f"augmentation needs 3D image and label of equal shape, got "
                             f"{image.shape} and {None if label is None else label.shape}")
        image = np.asarray(image, dtype=np.float32)
        image, label = self._geometric(image, label)
        image, label = self._missing_wedge(image, label)
        if self._fires("fourier_amplitude"):
            image = fourier_amplitude_walk(image, self.rng,
                                           self.config["fourier_amplitude"]["sigma"])
        image = self._intensity(image)
        return np.ascontiguousarray(image), (None if label is None
                                             else np.ascontiguousarray(label))

    def _geometric(self, image, label):
        both = [image, label] if label is not None else [image]
        square = image.shape[1] == image.shape[2]
        if self._fires("rot90"):
            # quarter turns of a non-square xy patch would change its shape
            k = int(self.rng.integers(1, 4)) if square else 2
            both = [np.rot90(a, k, axes=(1, 2)) for a in both]
        if self._fires("flip"):
            for axis in range(3):
                if self.rng.random() < 0.5:
                    both = [np.flip(a, axis) for a in both]
        if self._fires("swap"):
            perm = (self.rng.permutation(3) if self.config["swap"]["swap_z"]
                    else np.array([0, 2, 1]))
            if tuple(image.shape[i] for i in perm) == image.shape:
                both = [np.transpose(a, perm) for a in both]
        image = np.ascontiguousarray(both[0])
        label = np.ascontiguousarray(both[1]) if label is not None else None
        matrix = np.eye(3)
        if self._fires("rotate"):
            cfg = self.config["rotate"]
            tilt = cfg["tilt_range"]
            matrix = rotation_matrix((self._uniform((-cfg["z_range"], cfg["z_range"])),
                                      self._uniform((-tilt, tilt)),
                                      self._uniform((-tilt, tilt))))
        if self._fires("zoom"):
            matrix = matrix * self._uniform(self.config["zoom"]["range"])
        if not np.allclose(matrix, np.eye(3)):
            image, label = affine_pair(image, label, matrix,
                                       self.config["image_order"]["order"])
        return image, label

    def _missing_wedge(self, image, label):
        if not self._fires("missing_wedge"):
            return image, label
        cfg = self.config["missing_wedge"]
        if cfg["rotate"]:
            # A random rotation moves the tomogram's own wedge away from z, so the network
            # learns the new, known wedge direction (IsoNet / MemBrain v2).
            angles = tuple(self.rng.uniform(-180, 180, 3))
            image, label = affine_pair(image, label, rotation_matrix(angles),
                                       self.config["image_order"]["order"])
        return apply_missing_wedge(image, self._uniform(cfg["max_tilt"])), label

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        std = float(image.std()) or 1.0
        mean = float(image.mean())
        if self._fires("low_resolution"):
            scale = self._uniform(cfg["low_resolution"]["scale"])
            small = ndimage.zoom(image, scale, order=0, grid_mode=True, mode="grid-mirror")
            factors = np.array(image.shape) / np.array(small.shape)
            image = ndimage.zoom(small, factors, order=1, grid_mode=True, mode="grid-mirror")
        if self._fires("blur"):
            image = ndimage.gaussian_filter(image, self._uniform(cfg["blur"]["sigma"]))
        if self._fires("median"):
            image = ndimage.median_filter(image, cfg["median"]["size"])
        if self._fires("sharpen"):
            blurred = ndimage.gaussian_filter(image, 1.0)
            image = image + self._uniform(cfg["sharpen"]["strength"]) * (image - blurred)
        if self._fires("noise"):
            sigma = self._uniform(cfg["noise"]["sigma"]) * std
            image = image + self.rng.normal(0.0, sigma, image.shape).astype(np.float32)
        if self._fires("brightness"):
            image = image * self._uniform(cfg["brightness"]["range"])
        if self._fires("contrast"):
            m = image.mean()
            image = (image - m) * self._uniform(cfg["contrast"]["range"]) + m
        if self._fires("gradient"):
            direction = self.rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            coords = np.meshgrid(*[np.linspace(-0.5, 0.5, n, dtype=np.float32)
                                   for n in image.shape], indexing="ij", sparse=True)
            ramp = sum(d * c for d, c in zip(direction, coords))
            image = image + self._uniform(cfg["gradient"]["strength"]) * std * ramp
        if self._fires("gamma"):
            image = self._gamma(image)
        if self._fires("erase"):
            size = [max(1, int(n * self._uniform(cfg["erase"]["size"]))) for n in image.shape]
            start = [int(self.rng.integers(0, n - s + 1)) for n, s in zip(image.shape, size)]
            box = tuple(slice(a, a + s) for a, s in zip(start, size))
            image = image.copy()
            image[box] = self.rng.normal(mean, std, size).astype(np.float32)
        if self._fires("polarity"):
            image = 2.0 * float(image.mean()) - image
        return image.astype(np.float32, copy=False)

    def _gamma(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config["gamma"]
        invert = self.rng.random() < cfg["invert_p"]
        work = -image if invert else image
        lo, hi = float(work.min()), float(work.max())
        if hi <= lo:
            return image
        mean, std = work.mean(), work.std()
        unit = (work - lo) / (hi - lo)
        work = unit ** self._uniform(cfg["range"]) * (hi - lo) + lo
        # nnU-Net keeps the patch mean and std through the gamma change
        work = (work - work.mean()) / (work.std() or 1.0) * std + mean
        return -work if invert else work
