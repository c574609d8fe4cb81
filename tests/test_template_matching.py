"""Template matching: SO(3) grids, the pruned FFT correlation, peaks, the search itself,
resuming, and the ``cryovis pick --method template`` command on real MRC/STAR files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation
from scipy.stats import norm

from cryoet_integration.cli import main
from cryoet_integration.picking.template import (
    TemplateMatchOptions,
    angular_distance,
    match_template,
    prepare_template,
    uniform_grid,
)
from cryoet_integration.picking.template.engine import TemplateMatcher
from cryoet_integration.picking.template.filters import rotate, wedge
from cryoet_integration.picking.template.peaks import extract_peaks, false_positive_threshold
from cryoet_integration.picking.template.so3 import local_grid, parse_symmetry
from formats import (
    Volume,
    make_table,
    orientations,
    positions_voxels,
    read_particles,
    write_particles,
    write_volume,
)

VS = 10.0


# SO(3) -------------------------------------------------------------------------------------
def test_grid_size_follows_8pi2_over_step_cubed_and_symmetry():
    for step in (7.0, 12.0, 20.0):
        expected = 8 * np.pi ** 2 / np.radians(step) ** 3
        assert abs(len(uniform_grid(step)) / expected - 1) < 0.05
    expected = 8 * np.pi ** 2 / np.radians(12.0) ** 3
    assert abs(len(uniform_grid(12.0, "C7")) * 7 / expected - 1) < 0.1
    assert abs(len(uniform_grid(12.0, "D6")) * 12 / expected - 1) < 0.1


@pytest.mark.parametrize("symmetry", ["C1", "C4", "D3"])
def test_grid_covers_so3_modulo_symmetry(symmetry):
    step = 15.0
    grid = uniform_grid(step, symmetry)
    rng = np.random.default_rng(0)
    probes = Rotation.random(150, random_state=rng).as_matrix()
    worst = max(angular_distance(np.repeat(p[None], len(grid), 0), grid, symmetry).min()
                for p in probes)
    assert worst <= step


def test_symmetric_copies_are_zero_apart_and_parse_errors():
    r = Rotation.from_euler("ZYZ", [20, 40, 70], degrees=True).as_matrix()
    c7 = Rotation.from_euler("z", 360 / 7, degrees=True).as_matrix()
    assert angular_distance(r, r @ c7, "C7")[0] < 1e-6
    assert angular_distance(r, r @ c7, "C1")[0] == pytest.approx(360 / 7, abs=1e-6)
    assert parse_symmetry("d6") == ("D", 6)
    for bad in ("X3", "C0", "C", "D-2", "C2.5"):
        with pytest.raises(ValueError, match="does not parse"):
            parse_symmetry(bad)


def test_local_grid_stays_within_radius():
    local = local_grid(6.0, 2.0)
    assert np.allclose(local[0], np.eye(3))
    d = angular_distance(np.repeat(np.eye(3)[None], len(local), 0), local)
    assert d.max() <= 6.0 + 1e-6 and len(local) > 100


# Filters -----------------------------------------------------------------------------------
def test_wedge_keeps_the_tilt_range_fraction():
    w = wedge((64, 64, 64), (-60, 60))
    kz = np.fft.fftfreq(64)[:, None]
    kx = np.fft.rfftfreq(64)[None, :]
    plane = w[:, 0, :]
    ring = (np.hypot(kz, kx) > 0.2) & (np.hypot(kz, kx) < 0.45) & (kx > 0)
    assert abs(plane[ring].mean() - 120 / 180) < 0.05
    assert plane[0, 10] == 1 and plane[10, 0] == 0  # kx axis seen, kz axis in the wedge


# Correlation against a plain implementation ------------------------------------------------
def _blob_template(n: int = 13) -> np.ndarray:
    """An asymmetric density: a body with three arms of different lengths."""
    t = np.zeros((n, n, n), np.float32)
    c = n // 2
    for (x, y, z), s in (((0, 0, 0), 2.0), ((4, 0, 0), 1.2), ((0, 3, 0), 1.0),
                         ((0, 0, -2), 1.0), ((2, 2, 2), 0.8)):
        t[c + z, c + y, c + x] = 1.0 * s
    return ndimage.gaussian_filter(t, 1.0) * 10


def _plain_ncc(tomo: np.ndarray, prepared, matrix: np.ndarray, low: float | None,
               fft_shape: tuple[int, int, int]) -> np.ndarray:
    """Full-size FFT NCC with scipy on the zero-padded grid ``fft_shape``: rotate, weight,
    normalise, correlate, divide by the statistics over the mask's part inside."""
    import scipy.fft as sfft

    from cryoet_integration.picking.template.filters import bandpass, radial_frequency

    nz, ny, nx = tomo.shape
    n, c = prepared.size, prepared.size // 2
    f = np.zeros(fft_shape)
    f[:nz, :ny, :nx] = tomo - tomo.mean()
    f = sfft.irfftn(sfft.rfftn(f) * bandpass(radial_frequency(fft_shape), low, None),
                    s=fft_shape)
    t = rotate(prepared.data, matrix)
    t = sfft.irfftn(sfft.rfftn(t) * prepared.weights, s=t.shape)
    m = prepared.mask
    mean = (t * m).sum() / m.sum()
    t = (t - mean) * m
    t = prepared.sign * t / np.sqrt((t * t).sum() / m.sum())

    def corr(kernel: np.ndarray, volume: np.ndarray) -> np.ndarray:
        pad = np.zeros(fft_shape)
        pad[:n, :n, :n] = kernel
        g = np.roll(volume, (c, c, c), axis=(0, 1, 2))
        return sfft.irfftn(np.conj(sfft.rfftn(pad)) * sfft.rfftn(g), s=fft_shape)[:nz, :ny, :nx]

    inside = np.zeros(fft_shape)
    inside[:nz, :ny, :nx] = 1.0
    n_in = corr(m, inside)
    mu = corr(m, f * inside) / np.maximum(n_in, 1e-9)
    sigma = np.sqrt(np.clip(corr(m, (f * inside) ** 2) / np.maximum(n_in, 1e-9) - mu * mu, 0,
                            None))
    score = corr(t, f) / (np.sqrt(m.sum() * np.maximum(n_in, 1e-9)) * sigma)
    return np.where(n_in >= 0.5 * m.sum(), score, 0.0)


@pytest.mark.parametrize("low_pass_voxels", [4.0, 2.0])
def test_pruned_correlation_equals_plain_fft_ncc(low_pass_voxels):
    rng = np.random.default_rng(1)
    tomo = ndimage.gaussian_filter(rng.normal(size=(30, 36, 40)), 1.0).astype(np.float32)
    opts = TemplateMatchOptions(angular_step_deg=30, tilt_range_deg=(-50, 60),
                                low_pass_angst=low_pass_voxels * VS)
    prepared = prepare_template(Volume(_blob_template(), voxel_size=VS), VS, opts)
    low = 1.0 / low_pass_voxels
    matcher = TemplateMatcher(tomo, prepared, low_pass=low if low < 0.5 else None)
    mats = Rotation.from_euler("ZYZ", [[10, 50, 200], [300, 120, 30]], degrees=True).as_matrix()
    ours = matcher.correlate(matcher.prepare(mats)).numpy()
    for i, m in enumerate(mats):
        plain = _plain_ncc(tomo, prepared, m, low if low < 0.5 else None, matcher.fft_shape)
        assert np.abs(ours[i] - plain).max() < 1e-4
        assert np.abs(plain).max() > 0.1 and ((ours[i] == 0) == (plain == 0)).all()


def _direct_ncc(matcher, template: np.ndarray, zyx) -> float:
    """The score at voxel ``zyx`` from its definition: the template against the band-passed
    tomogram (zero-padded), normalised over the part of the mask inside the tomogram and
    weighted by sqrt(inside / whole mask)."""
    prepared = matcher.template
    n, c = prepared.size, prepared.size // 2
    index = [(v - c + np.arange(n)) % m for v, m in zip(zyx, matcher.fft_shape)]
    window = matcher.filtered[np.ix_(*index)].astype(np.float64)
    iz, iy, ix = [(i < m) for i, m in zip(index, matcher.shape)]
    support = (iz[:, None, None] & iy[None, :, None] & ix[None, None, :]) * prepared.mask
    n_in, n_mask = support.sum(), prepared.mask.sum()
    mean = (window * support).sum() / n_in
    sigma = np.sqrt((window ** 2 * support).sum() / n_in - mean ** 2)
    return float((template * window).sum() / (np.sqrt(n_mask * n_in) * sigma))


def test_scores_at_the_faces_follow_the_overlap_definition():
    rng = np.random.default_rng(4)
    tomo = ndimage.gaussian_filter(rng.normal(size=(30, 36, 40)), 1.0).astype(np.float32)
    opts = TemplateMatchOptions(angular_step_deg=30, low_pass_angst=3 * VS)
    prepared = prepare_template(Volume(_blob_template(), voxel_size=VS), VS, opts)
    matcher = TemplateMatcher(tomo, prepared, low_pass=1 / 3)
    mat = Rotation.from_euler("ZYZ", [40, 70, 10], degrees=True).as_matrix()[None]
    template = matcher.prepare(mat)[0].numpy().astype(np.float64)
    ours = matcher.correlate(matcher.prepare(mat))[0].numpy()
    # faces, an edge and the interior; corners keep an eighth of the mask: not scored
    for zyx in [(0, 18, 20), (2, 17, 3), (15, 35, 20), (28, 20, 5), (15, 18, 20)]:
        assert ours[zyx] == pytest.approx(_direct_ncc(matcher, template, zyx), abs=1e-4)
    assert ours[0, 0, 0] == 0.0 and ours[29, 0, 39] == 0.0 and matcher.n_valid < tomo.size


def test_background_scores_spread_alike_at_faces_and_inside():
    rng = np.random.default_rng(5)
    tomo = ndimage.gaussian_filter(rng.normal(size=(40, 48, 48)), 1.0).astype(np.float32)
    opts = TemplateMatchOptions(angular_step_deg=30, low_pass_angst=3 * VS)
    prepared = prepare_template(Volume(_blob_template(), voxel_size=VS), VS, opts)
    matcher = TemplateMatcher(tomo, prepared, low_pass=1 / 3)
    mats = Rotation.random(6, random_state=rng).as_matrix()
    maps = matcher.correlate(matcher.prepare(mats)).numpy()
    c = prepared.size // 2
    face, inner = maps[:, :2, c:-c, c:-c], maps[:, c + 2:-c - 2, c:-c, c:-c]
    assert 0.85 < face.std() / inner.std() < 1.15


# Peaks and the cut-off ---------------------------------------------------------------------
def test_false_positive_threshold_is_the_gaussian_tail():
    for space, nfp in ((1e6, 1.0), (3e9, 5.0)):
        assert false_positive_threshold(0.05, space, nfp) == pytest.approx(
            0.05 * norm.isf(nfp / space), rel=1e-9)
    with pytest.raises(ValueError):
        false_positive_threshold(0.05, 1e6, 0.0)


def test_peaks_respect_the_exclusion_radius():
    s = np.zeros((20, 20, 20), np.float32)
    s[10, 10, 10], s[10, 10, 13], s[10, 10, 17] = 1.0, 0.9, 0.8
    xyz, val = extract_peaks(s, radius=4.0, threshold=0.1)
    assert xyz.tolist() == [[10, 10, 10], [17, 10, 10]] and val.tolist() == pytest.approx([1, .8])


# The search on a synthetic tomogram --------------------------------------------------------
TRUE_XYZ = np.array([[12, 12, 12], [30, 26, 14], [20, 30, 23]])
TRUE_EULER = np.array([[30, 60, 75], [200, 110, 10], [120, 35, 300]], float)


def _synthetic(seed: int = 3, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """A 44x40x36 tomogram with three dark copies of the template at known orientations."""
    rng = np.random.default_rng(seed)
    tpl = _blob_template()
    vol = np.zeros((36, 40, 44), np.float32)
    n, c = tpl.shape[0], tpl.shape[0] // 2
    mats = Rotation.from_euler("ZYZ", TRUE_EULER, degrees=True).inv().as_matrix()
    for (x, y, z), m in zip(TRUE_XYZ, mats):
        vol[z - c:z - c + n, y - c:y - c + n, x - c:x - c + n] -= rotate(tpl, m)
    vol = vol / vol.std() + noise * rng.normal(size=vol.shape).astype(np.float32)
    return vol.astype(np.float32), mats


def _errors(table, mats) -> tuple[np.ndarray, np.ndarray]:
    xyz = positions_voxels(table)
    found = orientations(table)
    dist = np.linalg.norm(xyz[:, None] - TRUE_XYZ[None], axis=2)
    nearest = dist.argmin(axis=0)
    return dist.min(axis=0), angular_distance(found[nearest], mats)


def test_global_search_finds_positions_and_orientations():
    vol, mats = _synthetic()
    opts = TemplateMatchOptions(angular_step_deg=30.0, max_picks=3, low_pass_angst=3 * VS)
    prepared = prepare_template(Volume(_blob_template(), voxel_size=VS), VS, opts)
    res = match_template(Volume(vol, voxel_size=VS), prepared, opts)
    dist, err = _errors(res.unrefined, mats)
    assert dist.max() <= 1.5 and np.median(err) <= 25
    dist_r, err_r = _errors(res.table, mats)
    assert dist_r.max() <= 1.5 and np.median(err_r) <= 8 and np.median(err_r) < np.median(err)
    assert (res.table["score"].to_numpy() >= res.unrefined["score"].to_numpy() - 1e-6).all()


def test_particles_near_the_faces_are_found():
    """Centres 2-3 voxels from a face (a third of the particle outside the tomogram)."""
    rng = np.random.default_rng(6)
    tpl = _blob_template()
    n, c = tpl.shape[0], tpl.shape[0] // 2
    xyz = np.array([[22, 20, 2], [3, 14, 18], [30, 37, 17]])
    mats = Rotation.from_euler("ZYZ", [[10, 80, 40], [250, 30, 100], [60, 140, 200]],
                               degrees=True).inv().as_matrix()
    big = np.zeros((36 + 2 * n, 40 + 2 * n, 44 + 2 * n), np.float32)
    for (x, y, z), m in zip(xyz, mats):
        big[z + n - c:z + n + c + 1, y + n - c:y + n + c + 1, x + n - c:x + n + c + 1] -= \
            rotate(tpl, m)
    vol = big[n:-n, n:-n, n:-n]
    vol = vol / vol.std() + 0.6 * rng.normal(size=vol.shape).astype(np.float32)
    opts = TemplateMatchOptions(angular_step_deg=30.0, low_pass_angst=3 * VS)
    prepared = prepare_template(Volume(tpl, voxel_size=VS), VS, opts)
    res = match_template(Volume(vol.astype(np.float32), voxel_size=VS), prepared, opts)
    picks = positions_voxels(res.table)
    dist = np.linalg.norm(picks[None] - xyz[:, None], axis=2)
    assert dist.min(axis=1).max() <= 1.5, (picks, res.threshold)
    found = orientations(res.table)[dist.argmin(axis=1)]
    assert np.median(angular_distance(found, mats)) <= 10
    assert len(res.table) <= len(xyz) + 1  # the cut-off holds at the faces too


def test_interrupted_search_resumes_to_the_same_maps(tmp_path):
    vol, _ = _synthetic()
    opts = TemplateMatchOptions(angular_step_deg=45.0, low_pass_angst=3 * VS)
    prepared = prepare_template(Volume(_blob_template(), voxel_size=VS), VS, opts)
    matcher = TemplateMatcher(vol, prepared, low_pass=1 / 3)
    grid = uniform_grid(45.0)
    full = matcher.search(grid, batch=8)
    ckpt = tmp_path / "state.npz"

    def interrupt(done, total, seconds):
        if done >= 48:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        matcher.search(grid, batch=8, checkpoint=ckpt, fingerprint="a", progress=interrupt)
    assert ckpt.exists()
    resumed = matcher.search(grid, batch=8, checkpoint=ckpt, fingerprint="a")
    assert resumed.done == len(grid)
    np.testing.assert_allclose(resumed.scores, full.scores, atol=1e-6)
    assert (resumed.index == full.index).mean() > 0.999
    assert resumed.sigma == pytest.approx(full.sigma, rel=1e-6)
    with pytest.raises(ValueError, match="different search"):
        matcher.search(grid, batch=8, checkpoint=ckpt, fingerprint="b")


def test_positions_get_orientations():
    vol, mats = _synthetic()
    opts = TemplateMatchOptions(angular_step_deg=30.0, low_pass_angst=3 * VS)
    prepared = prepare_template(Volume(_blob_template(), voxel_size=VS), VS, opts)
    res = match_template(Volume(vol, voxel_size=VS), prepared, opts,
                         positions_xyz=TRUE_XYZ + np.array([1, -1, 1]))
    dist, err = _errors(res.table, mats)
    assert len(res.table) == 3 and dist.max() <= 1.0 and np.median(err) <= 8


# Command line ------------------------------------------------------------------------------
@pytest.fixture()
def files(tmp_path):
    vol, mats = _synthetic()
    write_volume(tmp_path / "tomo.mrc", Volume(vol, voxel_size=VS))
    write_volume(tmp_path / "tpl.mrc", Volume(_blob_template(), voxel_size=VS))
    return tmp_path, mats


@pytest.mark.parametrize("fmt,ext", [("relion5", "star"), ("dynamo", "tbl")])
def test_cli_exports_angles_in_each_convention(files, fmt, ext, capsys):
    d, mats = files
    out = d / f"picks.{ext}"
    rc = main(["pick", str(d / "tomo.mrc"), "--method", "template", "--template",
               str(d / "tpl.mrc"), "--angular-step", "30", "--low-pass", "30",
               "--max-particles", "3", "--polarity", "dark", "--out", str(out), "--format", fmt,
               "--scores-out", str(d / "scores.mrc"), "--angles-out", str(d / "angles.mrc")])
    assert rc == 0, capsys.readouterr().err
    opts = {"tomo_size_xyz": "44x40x36", "tilt_series_pixel_size": VS} if fmt == "relion5" \
        else {"voxel_size": VS}
    table = read_particles(out, format=fmt, **opts)
    dist, err = _errors(table, mats)
    assert dist.max() <= 1.5 and np.median(err) <= 8
    assert "score" in table.columns and (table["score"] > 0.2).all()
    assert (d / "scores.mrc").exists() and (d / "angles.mrc.angles.csv").exists()
    assert not list(d.glob("*.tm-checkpoint.npz"))


def _bad(tmp_path, name, data, vs=VS):
    write_volume(tmp_path / name, Volume(np.asarray(data, np.float32), voxel_size=vs))
    return str(tmp_path / name)


@pytest.mark.parametrize("case,message", [
    ("large", "larger than the tomogram"),
    ("voxel", "Å/voxel"),
    ("cubic", "cubic"),
    ("step0", "angular step"),
    ("step91", "angular step"),
    ("symmetry", "does not parse"),
])
def test_cli_bad_input_is_one_line_exit_2(files, case, message, capsys):
    d, _ = files
    tpl, step, sym = str(d / "tpl.mrc"), "30", "C1"
    if case == "large":
        tpl = _bad(d, "big.mrc", np.ones((41, 41, 41)))
    elif case == "voxel":
        tpl = _bad(d, "vs.mrc", _blob_template(), vs=5.0)
    elif case == "cubic":
        tpl = _bad(d, "flat.mrc", np.ones((9, 13, 13)))
    elif case == "step0":
        step = "0"
    elif case == "step91":
        step = "91"
    else:
        sym = "X3"
    out = d / "picks.star"
    rc = main(["pick", str(d / "tomo.mrc"), "--method", "template", "--template", tpl,
               "--angular-step", step, "--symmetry", sym, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def _gaussians(n: int, scale: float) -> np.ndarray:
    """The arms of ``_blob_template`` as analytic Gaussians, ``scale`` voxels per 10 Å."""
    g = np.arange(n) - n // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    out = np.zeros((n, n, n))
    for (px, py, pz), w in (((0, 0, 0), 2.0), ((4, 0, 0), 1.2), ((0, 3, 0), 1.0),
                            ((0, 0, -2), 1.0), ((2, 2, 2), 0.8)):
        d2 = (x - px * scale) ** 2 + (y - py * scale) ** 2 + (z - pz * scale) ** 2
        out += w * np.exp(-d2 / (2 * scale ** 2))
    return out.astype(np.float32)


def test_template_at_another_voxel_size_is_rescaled_on_request():
    fine = _gaussians(25, 2.0)  # 5 Å/voxel
    opts = TemplateMatchOptions(angular_step_deg=30.0)
    with pytest.raises(ValueError, match="--rescale-template"):
        prepare_template(Volume(fine, voxel_size=5.0), VS, opts)
    opts.rescale_template = True
    prepared = prepare_template(Volume(fine, voxel_size=5.0), VS, opts)
    assert prepared.size == 13
    corr = np.corrcoef(prepared.data.ravel(), _gaussians(13, 1.0).ravel())[0, 1]
    assert corr > 0.95  # a one-voxel shift of the centre gives about 0.6


def test_cli_json_only_when_asked_progress_on_stderr(files, capsys):
    d, _ = files
    base = ["pick", str(d / "tomo.mrc"), "--method", "template", "--template",
            str(d / "tpl.mrc"), "--angular-step", "30", "--low-pass", "30", "--no-refine",
            "--max-particles", "3", "--threads", "1"]
    assert main(base + ["--out", str(d / "a.csv")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "orientations" in err and "3 picks" in err
    assert main(base + ["--out", str(d / "b.csv"), "--json"]) == 0
    out, _ = capsys.readouterr()
    summary = json.loads(out)
    assert summary["method"] == "template" and summary["n_picks"] == 3
    assert summary["orientations"] == len(uniform_grid(30.0))
    assert summary["score_cutoff"] > 0 and summary["class_numbers"] == {"tpl": 1}


def test_cli_positions_get_angles_and_keep_classes(files, capsys):
    d, mats = files
    picks = make_table((TRUE_XYZ + np.array([1, 0, -1])).astype(float), voxel_size=VS,
                       classes=["ribo"] * 3)
    write_particles(d / "unet.csv", picks, format="csv")
    out = d / "oriented.star"
    rc = main(["pick", str(d / "tomo.mrc"), "--method", "template", "--template",
               str(d / "tpl.mrc"), "--angular-step", "30", "--low-pass", "30",
               "--positions", str(d / "unet.csv"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    back = read_particles(out, tomograms=str(d / "oriented_tomograms.star"))
    dist, err = _errors(back, mats)
    assert len(back) == 3 and dist.max() <= 1.0 and np.median(err) <= 8
    assert set(back["class"]) == {"ribo"}


@pytest.mark.parametrize("argv,message", [
    (["--method", "blob", "--template", "tpl.mrc"], "--template is for --method template"),
    (["--method", "template", "--angular-step", "12"], "needs --template"),
    (["--method", "template", "--template", "tpl.mrc", "--angular-step", "12",
      "--positions", "nothere.csv"], "nothere.csv"),
    (["--method", "template", "--template", "tpl.mrc", "--angular-step", "12",
      "--tilt-range", "60", "-60"], "tilt range"),
])
def test_cli_template_options_are_checked_first(files, argv, message, capsys, monkeypatch):
    d, _ = files
    monkeypatch.chdir(d)
    rc = main(["pick", "tomo.mrc", "--out", "p.star", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (d / "p.star").exists()
