"""Template matching with orientations: the function ``cryovis pick --method template`` calls.

>>> options = TemplateMatchOptions(angular_step_deg=12.0, tilt_range_deg=(-60, 60))
>>> prepared = prepare_template(template_volume, tomogram.voxel_size, options)
>>> result = match_template(tomogram, prepared, options)
>>> result.table            # canonical particle table: x, y, z voxels, orientation, score

Positions are voxels of the tomogram (``x, y, z``, 0-based voxel centres); orientations map
the template into the tomogram (``formats`` convention), so every particle writer exports
them in its own angle convention. See docs/template_matching.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from formats import Volume, make_table

from .engine import PreparedTemplate, ProgressFn, SearchResult, TemplateMatcher
from .filters import (
    bandpass,
    ctf_weight,
    make_odd,
    particle_radius,
    radial_frequency,
    rescale_cubic,
    sphere,
    wedge,
)
from .peaks import extract_peaks, false_positive_threshold
from .so3 import local_grid, parse_symmetry, uniform_grid

# Default band limit: 4 voxels per period (half of Nyquist), where the pruned FFTs save most
# and where a 10 Å/voxel tomogram still resolves a 25 nm particle's shape.
DEFAULT_LOW_PASS_VOXELS = 4.0
VOXEL_SIZE_TOLERANCE = 1e-3  # relative


@dataclasses.dataclass
class TemplateMatchOptions:
    """Settings of a template search (lengths in Å, angles in degrees).

    Attributes:
        angular_step_deg: spacing of the global SO(3) grid (0 < step <= 90).
        symmetry: ``Cn`` or ``Dn`` of the template about its z axis.
        low_pass_angst: resolution cut-off in Å (default 4 voxel sizes; >= 2 voxel sizes).
        high_pass_angst: low-frequency cut-off in Å (None: none).
        tilt_range_deg: (min, max) tilt about y of the tilt series: missing-wedge weighting.
        defocus_um: underfocus (µm) for CTF modulation of the template (None: no CTF).
        voltage_kv, cs_mm, amplitude_contrast: microscope for the CTF.
        phase_flipped: the tomogram was phase-flipped (use |CTF|).
        polarity: "dark" (raw cryo-ET, dense matter dark) or "light".
        n_false_positives: expected false positives the score cut-off allows.
        threshold: fixed score cut-off instead of the false-positive estimate.
        max_picks: keep at most this many picks.
        refine: local angular refinement (two rounds, to step / 9) around each pick.
        rescale_template: resample a template at another voxel size instead of failing.
        device: torch device (None: CUDA when present, else CPU).
        batch: orientations per batch (None: by tomogram size).
    """

    angular_step_deg: float
    symmetry: str = "C1"
    low_pass_angst: float | None = None
    high_pass_angst: float | None = None
    tilt_range_deg: tuple[float, float] | None = None
    defocus_um: float | None = None
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    phase_flipped: bool = False
    polarity: str = "dark"
    n_false_positives: float = 1.0
    threshold: float | None = None
    max_picks: int | None = None
    refine: bool = True
    rescale_template: bool = False
    device: str | None = None
    batch: int | None = None


@dataclasses.dataclass
class TemplateMatchResult:
    """Picks and the maps behind them.

    Attributes:
        table: canonical particle table (voxels of the tomogram, orientations, ``score``).
        grid: (N, 3, 3) orientations of the global grid.
        search: running maxima of the global search (None for ``positions``).
        threshold: score cut-off used.
        sigma: standard deviation of single-orientation scores (None for ``positions``).
        unrefined: the picks before local refinement (the grid orientations).
    """

    table: pd.DataFrame
    grid: np.ndarray
    search: SearchResult | None
    threshold: float
    sigma: float | None
    unrefined: pd.DataFrame | None = None


def _band(options: TemplateMatchOptions, voxel_size: float) -> tuple[float, float | None]:
    low_a = options.low_pass_angst or DEFAULT_LOW_PASS_VOXELS * voxel_size
    if low_a < 2.0 * voxel_size - 1e-9:
        raise ValueError(f"low-pass {low_a:g} Å is beyond Nyquist ({2 * voxel_size:g} Å at "
                         f"{voxel_size:g} Å/voxel)")
    low = voxel_size / low_a
    high = voxel_size / options.high_pass_angst if options.high_pass_angst else None
    if high is not None and high >= low:
        raise ValueError(f"high-pass {options.high_pass_angst:g} Å must be coarser than the "
                         f"low-pass {low_a:g} Å")
    return low, high


def check_options(options: TemplateMatchOptions) -> None:
    """Raise ValueError (one line) on settings that cannot work, before any work."""
    parse_symmetry(options.symmetry)
    step = options.angular_step_deg
    if not (np.isfinite(step) and 0.0 < step <= 90.0):
        raise ValueError(f"angular step must be > 0 and <= 90 degrees, got {step:g}")
    if options.polarity not in ("dark", "light"):
        raise ValueError(f"polarity must be 'dark' or 'light', got {options.polarity!r}")
    if options.tilt_range_deg is not None:
        lo, hi = options.tilt_range_deg
        if not (-90.0 <= lo < hi <= 90.0):
            raise ValueError(f"tilt range must satisfy -90 <= MIN < MAX <= 90, got {lo:g} {hi:g}")
    if options.defocus_um is not None and not options.defocus_um > 0:
        raise ValueError(f"defocus must be > 0 µm (underfocus), got {options.defocus_um:g}")
    if not 0.0 <= options.amplitude_contrast < 1.0:
        raise ValueError("amplitude contrast must be in [0, 1)")


def prepare_template(template: Volume, voxel_size: float, options: TemplateMatchOptions,
                     mask: Volume | None = None, name: str = "template") -> PreparedTemplate:
    """Check and prepare ``template`` (and ``mask``) for a tomogram at ``voxel_size`` Å.

    Raises ValueError naming ``name`` when the template is not cubic, is at another voxel
    size (unless ``options.rescale_template``), or the mask does not match it.
    """
    check_options(options)
    data = np.asarray(template.data, dtype=np.float32)
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise ValueError(f"{name}: template must be a cubic 3D map, got {data.shape[::-1]} "
                         "(x, y, z) voxels")
    if not np.isfinite(data).all() or not np.abs(data).max() > 0:
        raise ValueError(f"{name}: template is empty or has non-finite voxels")
    t_vs = float(template.voxel_size or 0.0)
    same = t_vs > 0 and abs(t_vs - voxel_size) <= VOXEL_SIZE_TOLERANCE * voxel_size
    if t_vs <= 0:
        raise ValueError(f"{name}: the template's voxel size is not set in its header; it must "
                         f"be known (tomogram: {voxel_size:g} Å)")
    m_data = None if mask is None else np.asarray(mask.data, dtype=np.float32)
    if m_data is not None and m_data.shape != data.shape:
        raise ValueError(f"mask {m_data.shape[::-1]} does not match the template "
                         f"{data.shape[::-1]} (x, y, z voxels)")
    if not same:
        if not options.rescale_template:
            raise ValueError(f"{name}: template is at {t_vs:g} Å/voxel, the tomogram at "
                             f"{voxel_size:g} Å/voxel (pass --rescale-template to resample it)")
        data = rescale_cubic(data, t_vs, voxel_size)
        if m_data is not None:
            m_data = np.clip(rescale_cubic(m_data, t_vs, voxel_size), 0.0, 1.0)
    data = make_odd(data)
    n = data.shape[0]
    low, high = _band(options, voxel_size)
    k = radial_frequency((n, n, n))
    weights = bandpass(k, low, high)
    if options.tilt_range_deg is not None:
        weights = weights * wedge((n, n, n), options.tilt_range_deg)
    if options.defocus_um is not None:
        weights = weights * ctf_weight(k / voxel_size, options.defocus_um, options.voltage_kv,
                                       options.cs_mm, options.amplitude_contrast,
                                       options.phase_flipped)
    radius = particle_radius(data)
    if m_data is None:
        m_data, rotate_mask = sphere(n, radius), False
    else:
        from .filters import is_rotation_invariant

        m_data = make_odd(m_data)
        rotate_mask = not is_rotation_invariant(m_data)
        if not (m_data > 0).any():
            raise ValueError("mask is empty")
    sign = -1.0 if options.polarity == "dark" else 1.0
    return PreparedTemplate(data=data, mask=m_data.astype(np.float32),
                            weights=weights.astype(np.float32), sign=sign,
                            rotate_mask=rotate_mask, radius=float(radius))


def check_sizes(tomogram_shape_zyx: tuple[int, ...], prepared: PreparedTemplate,
                name: str = "template") -> None:
    """ValueError when the template box does not fit in the tomogram."""
    if len(tomogram_shape_zyx) != 3:
        raise ValueError(f"tomogram must be 3D, got shape {tuple(tomogram_shape_zyx)}")
    if any(s < prepared.size for s in tomogram_shape_zyx):
        raise ValueError(f"{name}: template box {prepared.size} voxels is larger than the "
                         f"tomogram {tuple(tomogram_shape_zyx)[::-1]} (x, y, z)")


def fingerprint(tomogram: np.ndarray, prepared: PreparedTemplate, grid: np.ndarray,
                options: TemplateMatchOptions) -> str:
    """Hash of everything a global search's maxima depend on (for resuming)."""
    h = hashlib.sha256()
    for arr in (tomogram, prepared.data, prepared.mask, prepared.weights, grid):
        a = np.ascontiguousarray(arr)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(repr((prepared.sign, options.low_pass_angst, options.high_pass_angst)).encode())
    return h.hexdigest()


def refine_orientations(matcher: TemplateMatcher, centres_xyz: np.ndarray,
                        matrices: np.ndarray, step_deg: float, rounds: int = 2
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse-to-fine local search around each (position, orientation).

    Round ``r`` tries rotations within ``step / 3^r`` degrees of the current best on a
    lattice three times finer, at the position and its 26 neighbours.
    Returns refined positions (P, 3) voxels, orientations (P, 3, 3) and scores (P,).
    """
    centres = np.asarray(centres_xyz, dtype=int).reshape(-1, 3).copy()
    mats = np.asarray(matrices, dtype=float).reshape(-1, 3, 3).copy()
    scores = np.zeros(len(centres))
    for r in range(rounds):
        radius = step_deg / 3.0 ** r
        local = local_grid(radius, radius / 3.0)
        cand = np.einsum("pij,kjl->pkil", mats, local)
        s, shifts = matcher.local_search(centres, cand, shift=1)
        best = s.argmax(axis=1)
        rows = np.arange(len(centres))
        mats = cand[rows, best]
        centres = np.clip(centres + shifts[rows, best], 0, np.array(matcher.shape[::-1]) - 1)
        scores = s[rows, best]
    return centres, mats, scores


def match_template(tomogram: Volume, prepared: PreparedTemplate, options: TemplateMatchOptions,
                   positions_xyz: np.ndarray | None = None, checkpoint: Path | None = None,
                   progress: ProgressFn | None = None, stop_after: int | None = None,
                   class_name: str = "template",
                   on_search: Callable[[SearchResult, np.ndarray], None] | None = None,
                   ) -> TemplateMatchResult:
    """Find the template in ``tomogram`` and give every pick an orientation and score.

    Args:
        tomogram: the tomogram (``data [z, y, x]``, ``voxel_size`` Å).
        prepared: from :func:`prepare_template` at the tomogram's voxel size.
        options: search settings.
        positions_xyz: (P, 3) voxel positions to orient instead of a global search: each is
            searched over the whole grid within 2 voxels of the given position.
        checkpoint: resumable state of the global search (deleted by the caller when done).
        progress: ``progress(done, total, seconds)`` after each batch of orientations.
        stop_after: search only this many orientations (timed subsets, benchmarks).
        class_name: class written into the table.
        on_search: called with the finished search and the grid before peak extraction.
    """
    data = np.asarray(tomogram.data, dtype=np.float32)
    check_sizes(data.shape, prepared)
    low, high = _band(options, tomogram.voxel_size)
    grid = uniform_grid(options.angular_step_deg, options.symmetry)
    matcher = TemplateMatcher(data, prepared, low_pass=low, high_pass=high,
                              device=options.device)
    search, sigma = None, None
    if positions_xyz is None:
        search = matcher.search(grid, batch=options.batch, checkpoint=checkpoint,
                                fingerprint=fingerprint(data, prepared, grid, options),
                                progress=progress, stop_after=stop_after)
        if on_search is not None:
            on_search(search, grid)
        sigma = search.sigma
        searched = search.done
        threshold = options.threshold if options.threshold is not None else \
            false_positive_threshold(sigma, float(matcher.n_valid) * searched,
                                     options.n_false_positives)
        centres, scores = extract_peaks(search.scores, prepared.radius, threshold,
                                        options.max_picks)
        mats = grid[search.index[centres[:, 2], centres[:, 1], centres[:, 0]]]
    else:
        threshold = -np.inf if options.threshold is None else options.threshold
        pos = np.rint(np.asarray(positions_xyz, dtype=float).reshape(-1, 3)).astype(int)
        centres = np.clip(pos, 0, np.array(data.shape[::-1]) - 1)
        mats = np.zeros((0, 3, 3))
        scores = np.zeros(0)
        if len(centres):
            s, shifts = matcher.local_search(centres, grid, shift=2)
            best = s.argmax(axis=1)
            rows = np.arange(len(centres))
            mats, scores = grid[best], s[rows, best]
            centres = np.clip(centres + shifts[rows, best], 0, np.array(data.shape[::-1]) - 1)
    names = [class_name] * len(centres)
    unrefined = make_table(centres.astype(float), voxel_size=tomogram.voxel_size,
                           matrices=mats if len(centres) else None, classes=names,
                           scores=scores)
    if options.refine and len(centres):
        centres, mats, scores = refine_orientations(matcher, centres, mats,
                                                    options.angular_step_deg)
    if positions_xyz is not None and options.threshold is not None:
        keep = scores > options.threshold
        centres, mats, scores = centres[keep], mats[keep], scores[keep]
    table = make_table(centres.astype(float), voxel_size=tomogram.voxel_size,
                       matrices=mats if len(centres) else None,
                       classes=[class_name] * len(centres), scores=scores)
    return TemplateMatchResult(table=table, grid=grid, search=search,
                               threshold=float(threshold), sigma=sigma, unrefined=unrefined)
