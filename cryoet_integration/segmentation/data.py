"""Training data: tomogram/label pairs at the model's voxel size and random patch sampling.

Labels: 0 background, 1..K classes, -1 ignore. Pseudo-labels (soft maps in [0, 1] from
another tool) keep only their confident voxels: above 0.7 is class 1, below 0.3 background,
and the uncertain band in between is ignored.

K soft maps (``cryovis pseudolabel``'s output family, see :mod:`.classmaps`) are targets in
one of two forms: ``regression`` (K = 2: the second class's probability as a float target,
for MSE on the raw network output, the paper's best) or ``ce`` (the argmax as class indices
0..K-1 in the painted order, for cross-entropy). The network then has one channel per
painted class (or one regression channel), not an extra background channel.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from formats import read_volume

from ..errors import CryovisError
from .classmaps import ClassMaps

IGNORE = -1
PSEUDO_LOW, PSEUDO_HIGH = 0.3, 0.7
_MAX_FOREGROUND_SAMPLES = 200_000


@dataclass
class TrainVolume:
    """One training tomogram at the model voxel size: normalised ``image`` float32 and
    ``label`` int8 ``[z, y, x]`` (padded with ignore to at least one patch), and a sample
    of foreground voxel indices for foreground-biased sampling."""

    name: str
    image: np.ndarray
    label: np.ndarray
    foreground: np.ndarray


def _resample_labels(label: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resample an integer label map to ``shape`` by linear interpolation of each class's
    indicator and taking the most likely class (thin membranes survive, unlike nearest).

    Target sample ``j`` sits at ``j * n_src / n_target`` of the source, the grid of the
    Fourier-rescaled tomogram.
    """
    from scipy import ndimage

    values = np.unique(label)
    scale = [n / s for n, s in zip(label.shape, shape)]
    best = np.full(shape, -np.inf, dtype=np.float32)
    out = np.zeros(shape, dtype=np.int8)
    for v in values:
        ind = ndimage.affine_transform((label == v).astype(np.float32), scale,
                                       output_shape=tuple(shape), order=1, mode="nearest")
        take = ind > best
        out[take] = v
        best[take] = ind[take]
    return out


def pseudolabels_to_labels(soft: np.ndarray) -> np.ndarray:
    """Confident voxels of a soft map: 1 above 0.7, 0 below 0.3, ignore (-1) between."""
    lab = np.full(soft.shape, IGNORE, dtype=np.int8)
    lab[soft >= PSEUDO_HIGH] = 1
    lab[soft <= PSEUDO_LOW] = 0
    return lab


SOFT_TARGETS = ("regression", "ce")


def read_soft_maps(tomogram: str | Path, maps: ClassMaps, shape: tuple[int, ...]
                   ) -> np.ndarray:
    """The K maps of ``maps`` as float32 ``[K, z, y, x]``; CryovisError naming the file for
    a map of another shape or with values outside [0, 1]."""
    out = np.empty((len(maps.paths),) + tuple(shape), np.float32)
    for k, path in enumerate(maps.paths):
        data = np.asarray(read_volume(path).data)
        if data.shape != tuple(shape):
            raise CryovisError(f"{path}: pseudo-label map shape {data.shape} differs from the "
                               f"tomogram's {tuple(shape)} ({tomogram})")
        if not (np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1 + 1e-4):
            raise CryovisError(f"{path}: pseudo-label values must be probabilities in [0, 1]")
        out[k] = data
    return out


def soft_targets(soft: np.ndarray, target: str) -> np.ndarray:
    """Training targets from K soft maps ``[K, z, y, x]``: ``regression`` gives the second
    class's probability (float32, K must be 2), ``ce`` the argmax index 0..K-1 (int8)."""
    if target == "regression":
        if soft.shape[0] != 2:
            raise ValueError(f"regression targets need 2 classes, got {soft.shape[0]}")
        return np.ascontiguousarray(soft[1], dtype=np.float32)
    if target == "ce":
        return np.argmax(soft, axis=0).astype(np.int8)
    raise ValueError(f"soft target must be one of {', '.join(SOFT_TARGETS)}, got {target!r}")


def channel_labels(label: np.ndarray, values: list[int]) -> np.ndarray:
    """A label map numbered as the strokes (``values``, e.g. 1..K) as channel indices
    0..K-1 of a model trained on K painted classes; other values become ignore (-1)."""
    out = np.full(label.shape, IGNORE, np.int8)
    for k, v in enumerate(values):
        out[label == v] = k
    return out


def load_pair(tomogram: str | Path, labels: str | Path | ClassMaps, voxel_size: float,
              patch_size: tuple[int, int, int], pseudo: bool = False,
              soft_target: str | None = None, normalisation: str = "robust") -> TrainVolume:
    """Read a tomogram and its label map (same shape), rescale both to ``voxel_size`` Å and
    normalise the tomogram (``robust`` z-score or per-volume ``minmax``).

    ``pseudo`` treats ``labels`` as one soft pseudo-label map (confident voxels only);
    ``labels`` given as :class:`ClassMaps` are K soft maps turned into ``soft_target``
    targets (:func:`soft_targets`). Arrays are ``[z, y, x]``."""
    from cryoet_integration.preprocess import normalize, rescale_to_voxel_size

    from .inference import _resample_to, check_input

    vol = read_volume(tomogram)
    check_input(vol)
    if isinstance(labels, ClassMaps):
        raw = soft_targets(read_soft_maps(tomogram, labels, vol.data.shape),
                           soft_target or "ce")
        pseudo = False
    else:
        lab_vol = read_volume(labels)
        if lab_vol.data.shape != vol.data.shape:
            raise CryovisError(f"{labels}: label map shape {lab_vol.data.shape} differs from "
                               f"the tomogram's {vol.data.shape} ({tomogram})")
        raw = np.asarray(lab_vol.data)
    if soft_target == "regression" and isinstance(labels, ClassMaps):
        lab = raw
    elif pseudo:
        lab = pseudolabels_to_labels(raw.astype(np.float32))
    else:
        if np.issubdtype(raw.dtype, np.floating) and not np.all(raw == np.round(raw)):
            raise CryovisError(f"{labels}: labels must be integers (0 background, 1..K, -1 "
                               "ignore); use --pseudolabels for soft maps")
        if raw.min() < IGNORE or raw.max() > 127:
            raise CryovisError(f"{labels}: label values must lie in -1..127, got "
                               f"{raw.min()}..{raw.max()}")
        lab = raw.astype(np.int8)
    vs = float(vol.voxel_size) or voxel_size
    image = np.asarray(vol.data, dtype=np.float32)
    if abs(vs / voxel_size - 1) > 0.02:
        image = rescale_to_voxel_size(image, vs, voxel_size)
        lab = (_resample_to(lab, image.shape) if lab.dtype == np.float32
               else _resample_labels(lab, image.shape))
    image = normalize(image, normalisation)
    pad = [(0, max(0, p - n)) for n, p in zip(image.shape, patch_size)]
    if any(b for _, b in pad):
        image = np.pad(image, pad, mode="reflect")
        lab = np.pad(lab, pad, constant_values=IGNORE)
    fg = np.flatnonzero(lab >= 0.5 if lab.dtype == np.float32 else lab > 0)
    if fg.size > _MAX_FOREGROUND_SAMPLES:
        fg = np.random.default_rng(0).choice(fg, _MAX_FOREGROUND_SAMPLES, replace=False)
    return TrainVolume(Path(tomogram).stem, image, lab, fg)


class PatchSampler:
    """Random patches ``[z, y, x]`` from several volumes; a fraction ``foreground_fraction``
    is centred (with jitter) on a labelled voxel so rare classes are seen often."""

    def __init__(self, volumes: list[TrainVolume], patch_size: tuple[int, int, int],
                 foreground_fraction: float, rng: np.random.Generator):
        if not volumes:
            raise ValueError("no training volumes")
        self.volumes = volumes
        self.patch = tuple(int(p) for p in patch_size)
        self.fg_fraction = foreground_fraction
        self.rng = rng

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(image, label)`` patch pair (copies)."""
        vol = self.volumes[int(self.rng.integers(len(self.volumes)))]
        shape = vol.image.shape
        if vol.foreground.size and self.rng.random() < self.fg_fraction:
            centre = np.unravel_index(vol.foreground[int(self.rng.integers(vol.foreground.size))],
                                      shape)
            jitter = self.rng.integers(-(np.array(self.patch) // 4), np.array(self.patch) // 4 + 1)
            start = np.array(centre) + jitter - np.array(self.patch) // 2
        else:
            start = [self.rng.integers(0, n - p + 1) for n, p in zip(shape, self.patch)]
        start = [int(np.clip(s, 0, n - p)) for s, n, p in zip(start, shape, self.patch)]
        box = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
        return vol.image[box].copy(), vol.label[box].copy()


def chunk_grid(shape: tuple[int, ...], chunk: tuple[int, ...], overlap: tuple[int, ...]
               ) -> list[tuple[int, int, int]]:
    """Starts ``(z, y, x)`` of overlapping chunks of ``chunk`` voxels covering ``shape``:
    along each axis the fewest chunks that overlap by at least ``overlap``, spread evenly
    (the last one flush with the end); an axis shorter than a chunk has one at 0."""
    axes = []
    for n, c, o in zip(shape, chunk, overlap):
        if n <= c:
            axes.append([0])
            continue
        k = int(np.ceil((n - o) / max(1, c - o)))
        axes.append(np.linspace(0, n - c, k).round().astype(int).tolist())
    return [(z, y, x) for z in axes[0] for y in axes[1] for x in axes[2]]


class ChunkSampler:
    """Nano-Ötzi's data management: each volume is cut into overlapping chunks, and every
    epoch visits all chunks of all volumes in a random order, drawing one random tile
    (``patch_size``) inside each. Big and small volumes are so seen in proportion to their
    size. The epoch's order depends only on (``seed``, epoch), and the position in it on the
    number of tiles drawn, so a resumed run continues exactly (``drawn`` is restored from
    the step count); the tile positions come from ``rng``."""

    def __init__(self, volumes: list[TrainVolume], patch_size: tuple[int, int, int],
                 chunk_size: tuple[int, int, int], overlap: tuple[int, int, int],
                 rng: np.random.Generator, seed: int = 0, drawn: int = 0):
        if not volumes:
            raise ValueError("no training volumes")
        self.volumes, self.rng, self.seed, self.drawn = volumes, rng, seed, drawn
        self.patch = tuple(int(p) for p in patch_size)
        self.chunks = []
        for i, vol in enumerate(volumes):
            size = tuple(max(int(c), p) for c, p in zip(chunk_size, self.patch))
            self.chunks += [(i, start, tuple(min(c, n - s) for c, n, s in
                                             zip(size, vol.image.shape, start)))
                            for start in chunk_grid(vol.image.shape, size, overlap)]

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.chunks))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(image, label)`` tile pair (copies) from the next chunk of the epoch."""
        epoch, pos = divmod(self.drawn, len(self.chunks))
        i, start, size = self.chunks[int(self._order(epoch)[pos])]
        self.drawn += 1
        vol = self.volumes[i]
        corner = [s + int(self.rng.integers(0, max(1, c - p) + 1))
                  for s, c, p in zip(start, size, self.patch)]
        corner = [int(np.clip(c, 0, n - p)) for c, n, p in
                  zip(corner, vol.image.shape, self.patch)]
        box = tuple(slice(c, c + p) for c, p in zip(corner, self.patch))
        return vol.image[box].copy(), vol.label[box].copy()


class BatchStream:
    """Training batches made ``depth`` ahead by a background thread, so sampling and
    augmentation (numpy/scipy, which release the GIL) overlap the network's step.

    ``make_batch()`` draws from random generators whose state ``get_state()`` returns; the
    thread records that state after each batch, and :meth:`state` gives it for the last batch
    handed out, so a checkpoint resumes exactly where the consumer is, not where the thread
    got to. ``depth=0`` makes each batch on demand in the caller's thread.
    """

    def __init__(self, make_batch: Callable[[], Any], get_state: Callable[[], Any],
                 depth: int = 2):
        self._make, self._get_state = make_batch, get_state
        self._state = get_state()
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if depth > 0:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._run, name="cryovis-batches",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = (self._make(), self._get_state(), None)
            except Exception as exc:  # noqa: BLE001 - re-raised in the consumer's thread
                item = (None, None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    def next(self) -> Any:
        """The next batch (in the order they were made)."""
        if self._queue is None:
            batch, self._state = self._make(), self._get_state()
            return batch
        batch, state, exc = self._queue.get()
        if exc is not None:
            raise exc
        self._state = state
        return batch

    def state(self) -> Any:
        """Generator state after the last batch returned by :meth:`next`."""
        return self._state

    def close(self) -> None:
        """Stop the background thread (batches made ahead are dropped)."""
        self._stop.set()
        if self._queue is not None:
            self._thread.join()
