"""Segmentation within a memory budget: the tomogram streams through a band of z-slices.

:func:`predict_probabilities` holds the probabilities of the whole tomogram while its tiles
are blended. Here the same tiles are computed in the same order (z, then y, then x), but the
blended sums live in *cells*: the pieces of the volume between consecutive tile edges along
z and y, each spanning all x. A cell exists from the first tile that touches it to the last;
then it is divided by its blending weights and handed to a sink (the command writes it into
its output files), so only the cells of the current band of tiles, plus the overlap that the
next band shares, are in memory. Every voxel receives the same sums in the same order and is
divided by the same weights as in :func:`predict_probabilities`: the results are identical.

The input is read one band of tile rows at a time (``formats.read_rows``: ``os.preadv`` from
the file behind a memory map, so its pages never count in this process) and normalised with
robust statistics gathered in a streaming pass (:func:`preprocess.robust_stats`).

:func:`plan_stream` chooses the largest tile (up to the requested one) whose estimated peak
resident memory fits the budget: what the process already holds, the network's activations
for one tile, the largest set of live cells, and one band of input rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import CryovisError
from .inference import (
    AxisPlan,
    _pad_to,
    _window_sums,
    blend_window,
    forward_tile,
    keep_freed_memory,
    output_channels,
)

MIB = 2**20
# Resident bytes of one forward pass per voxel of the tile and channel of the network's
# first level, beyond what the first (warm-up) pass leaves: measured (VmHWM) with the
# shipped U-Net on the CPU at 32^3-64^3 tiles, 20 B in bf16 and 28 B in fp32; 32 B leaves
# a margin for the allocator.
ACTIVATION_BYTES = 32
# Tile edges tried, largest first, down to the smallest tile ``cryovis segment`` accepts.
MIN_TILE = 16
# ``cryovis segment --memory``'s default: a quarter of a 2 GiB (1024x1024x512 float32)
# tomogram.
DEFAULT_BUDGET_MIB = 512


def resident_mib() -> float:
    """This process's resident memory now (VmRSS, MiB; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Cells:
    """The cells of one axis: segment bounds ``[edges[k], edges[k + 1])`` and, per segment,
    the first and last tile row (index into the axis plan's starts) that cover it."""

    edges: list[int]
    first: list[int]
    last: list[int]


def axis_cells(plan: AxisPlan, n: int) -> Cells:
    """Cut an axis of ``n`` voxels at every tile edge of ``plan``."""
    ends = [min(s + plan.tile, n) for s in plan.starts]
    edges = sorted({0, n, *plan.starts, *ends})
    first, last = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        rows = [i for i, (s, e) in enumerate(zip(plan.starts, ends)) if s < b and e > a]
        first.append(min(rows))
        last.append(max(rows))
    return Cells(edges, first, last)


def peak_cell_bytes(plans: list[AxisPlan], shape: tuple[int, int, int],
                    channels: int) -> int:
    """Largest total size of the cells alive at once (float32), over the run."""
    cz, cy = axis_cells(plans[0], shape[0]), axis_cells(plans[1], shape[1])
    rows_y = len(plans[1].starts)
    steps = len(plans[0].starts) * rows_y
    alive = np.zeros(steps + 1, dtype=np.int64)
    for a in range(len(cz.first)):
        for b in range(len(cy.first)):
            size = (channels * (cz.edges[a + 1] - cz.edges[a]) * (cy.edges[b + 1] - cy.edges[b])
                    * shape[2] * 4)
            alive[cz.first[a] * rows_y + cy.first[b]] += size
            alive[cz.last[a] * rows_y + cy.last[b] + 1] -= size
    return int(np.cumsum(alive).max())


@dataclass
class StreamPlan:
    """The tiling and memory estimate of a streamed segmentation (sizes in MiB)."""

    tile: int
    plans: list[AxisPlan]
    held_mib: float
    activations_mib: float
    cells_mib: float
    rows_mib: float

    @property
    def estimate_mib(self) -> float:
        """Estimated peak resident memory of the whole process."""
        return self.held_mib + self.activations_mib + self.cells_mib + self.rows_mib


def _estimate(shape: tuple[int, int, int], tile: int, overlap: int, net, channels: int,
              held_mib: float, itemsize: int) -> StreamPlan:
    from .inference import tiles

    plans, _ = tiles(shape, tile, overlap, tuple(net.size_multiple))
    tz, ty, tx = (p.tile for p in plans)
    base = int(getattr(net, "config", {}).get("base_channels", 16))
    activations = ACTIVATION_BYTES * base * tz * ty * tx
    # One tile's probabilities, its weighted copy and TTA sum, plus the padded patch.
    activations += (3 * channels + 1) * tz * ty * tx * 4
    # The raw rows of a band and their normalised float32 copy.
    rows = tz * ty * shape[2] * (itemsize + 4)
    return StreamPlan(tile, plans, held_mib, activations / MIB,
                      peak_cell_bytes(plans, shape, channels) / MIB, rows / MIB)


def warm_up(net, device: str = "cpu", bf16: bool = False, output: str = "auto") -> None:
    """One forward pass on the smallest tile, so that what the first pass allocates for
    good (thread pools, kernels) is in the resident memory :func:`plan_stream` reads."""
    tile = tuple(max(MIN_TILE, m) for m in net.size_multiple)
    forward_tile(net, np.zeros(tile, dtype=np.float32), bf16=bf16, device=device,
                 output=output)


def plan_stream(shape: tuple[int, int, int], net, budget_mib: float, tile: int,
                overlap: int, itemsize: int = 4, output: str = "auto",
                what: str = "tomogram") -> StreamPlan:
    """The largest tile edge ``<= tile`` (voxels) whose estimated peak fits ``budget_mib``.

    Raises CryovisError naming ``what`` and the memory needed when even the smallest tile
    does not fit. Call :func:`warm_up` first so the memory the process holds is counted.
    """
    channels = output_channels(net, output)
    held = resident_mib()
    step = max(int(m) for m in net.size_multiple)
    smallest = None
    # Tiles stay larger than the overlap, as ``cryovis segment`` requires of --tile.
    for edge in range(tile, max(MIN_TILE, overlap + 1) - 1, -step):
        plan = _estimate(shape, edge, overlap, net, channels, held, itemsize)
        if plan.estimate_mib <= budget_mib:
            return plan
        smallest = plan
    edge = tile if smallest is None else smallest.tile
    need = smallest.estimate_mib if smallest else held
    raise CryovisError(
        f"{what}: --memory {budget_mib:g} MiB is too small: this process holds {held:.0f} MiB "
        f"(torch, the model) and the smallest tile ({edge}) needs about {need:.0f} MiB "
        f"in all; give --memory {int(np.ceil(need))} or more")


def stream_probabilities(net, source: Any, stats: tuple[float, float], plan: StreamPlan,
                         overlap: int, sink: Callable[[int, int, np.ndarray], None],
                         tta: bool = False, bf16: bool = False, device: str = "cpu",
                         logit_bias: float = 0.0, output: str = "auto",
                         progress: Callable[[int, int], None] | None = None) -> dict:
    """Blend tile predictions over ``source`` (the raw tomogram ``[z, y, x]`` at the
    model's voxel size: a memory map, an OME-Zarr array or an array) and give every finished
    cell to ``sink(z0, y0, probabilities)`` with probabilities ``(C, dz, dy, x)`` float32,
    exactly the part ``[:, z0:z0 + dz, y0:y0 + dy, :]`` of :func:`predict_probabilities`'s
    result with the same tiles (``plan.tile``), ``overlap`` and ``stats``.

    Returns counts: tiles, cells, tile rows.
    """
    from formats import read_rows

    from ..preprocess import normalize_with

    keep_freed_memory()
    shape = tuple(int(n) for n in source.shape)
    plans = plan.plans
    tile_shape = tuple(p.tile for p in plans)
    window = blend_window(tile_shape, overlap)
    weight_z, weight_y, weight_x = (_window_sums(p, n, overlap) for p, n in zip(plans, shape))
    plane = (weight_y[:, None] * weight_x[None, :]).astype(np.float32)
    channels = output_channels(net, output)
    cz, cy = axis_cells(plans[0], shape[0]), axis_cells(plans[1], shape[1])
    cells: dict[tuple[int, int], np.ndarray] = {}
    total = len(plans[0].starts) * len(plans[1].starts) * len(plans[2].starts)
    done = 0
    for i, z in enumerate(plans[0].starts):
        ez = min(z + tile_shape[0], shape[0]) - z
        zsegs = [a for a in range(len(cz.first)) if cz.first[a] <= i <= cz.last[a]]
        for j, y in enumerate(plans[1].starts):
            ey = min(y + tile_shape[1], shape[1]) - y
            ysegs = [b for b in range(len(cy.first)) if cy.first[b] <= j <= cy.last[b]]
            rows = normalize_with(read_rows(source, z, z + ez, y, y + ey), stats)
            for x in plans[2].starts:
                patch = _pad_to(rows[:, :, x:x + tile_shape[2]], tile_shape)
                probs = forward_tile(net, patch, tta=tta, bf16=bf16, device=device,
                                     logit_bias=logit_bias, output=output)
                ex = min(x + tile_shape[2], shape[2]) - x
                contrib = probs[:, :ez, :ey, :ex] * window[:ez, :ey, :ex]
                for a in zsegs:
                    z0, z1 = cz.edges[a], cz.edges[a + 1]
                    for b in ysegs:
                        y0, y1 = cy.edges[b], cy.edges[b + 1]
                        cell = cells.get((a, b))
                        if cell is None:
                            cell = cells[(a, b)] = np.zeros(
                                (channels, z1 - z0, y1 - y0, shape[2]), dtype=np.float32)
                        cell[:, :, :, x:x + ex] += contrib[:, z0 - z:z1 - z, y0 - y:y1 - y]
                done += 1
                if progress is not None:
                    progress(done, total)
            del rows
            for a in zsegs:
                for b in ysegs:
                    if cz.last[a] == i and cy.last[b] == j:
                        cell = cells.pop((a, b))
                        z0, y0 = cz.edges[a], cy.edges[b]
                        cell /= (weight_z[z0:cz.edges[a + 1], None, None].astype(np.float32)
                                 * plane[y0:cy.edges[b + 1]])
                        sink(z0, y0, cell)
                        del cell
    if cells:
        raise RuntimeError(f"cells never finished: {sorted(cells)}")  # a planning bug
    return {"tiles": total, "cells": (len(cz.first)) * len(cy.first),
            "tile_rows": len(plans[0].starts) * len(plans[1].starts)}
