"""Simulator: determinism, label conventions, particle table vs maps, missing wedge, files, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("scipy")

from scipy import ndimage  # noqa: E402

import formats  # noqa: E402
from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.simulate import (  # noqa: E402
    SimulationConfig,
    simulate_tomogram,
    write_simulation,
)
from cryoet_integration.simulate import labels as lab  # noqa: E402
from cryoet_integration.simulate.shapes import CLASSES  # noqa: E402

SIZE = (64, 64, 32)
BUSY = SimulationConfig(voxel_size=10.0, n_vesicles=2, n_sheets=1, n_tubes=1, crowding=0.15,
                        attached_fraction=0.8, fiducials_per_angst2=200.0 / 1e8, measure_snr=False,
                        membrane_proteins_per_angst2=2000.0 / 1e8)


@pytest.fixture(scope="module")
def sim():
    return simulate_tomogram(seed=3, size_xyz=SIZE, config=BUSY)


@pytest.fixture(scope="module")
def big_sim():
    """A larger crowded field with fine voxels so that many particles lie fully inside."""
    cfg = dataclasses.replace(BUSY, voxel_size=8.0, crowding=0.25, n_sheets=0, n_tubes=0,
                              ice_fraction=1.0, tilt_step_deg=6.0,
                              class_weights={"rod": 2.0, "stalked": 1.0, "barrel": 1.0,
                                             "cube": 1.0, "globular": 1.0})
    return simulate_tomogram(seed=5, size_xyz=(96, 96, 48), config=cfg)


def test_deterministic_per_seed(sim):
    again = simulate_tomogram(seed=3, size_xyz=SIZE, config=BUSY)
    assert np.array_equal(again.tomogram.data, sim.tomogram.data)
    assert np.array_equal(again.instances, sim.instances)
    assert again.particles[["x", "y", "z"]].equals(sim.particles[["x", "y", "z"]])
    other = simulate_tomogram(seed=4, size_xyz=SIZE, config=BUSY)
    assert not np.array_equal(other.tomogram.data, sim.tomogram.data)


def test_randomised_config_is_seeded_and_varies():
    a, b = SimulationConfig.randomised(11), SimulationConfig.randomised(11)
    assert a == b
    drawn = [SimulationConfig.randomised(s) for s in range(40)]
    sizes = [c.voxel_size for c in drawn]
    assert 6.0 <= min(sizes) and max(sizes) <= 14.0 and np.ptp(sizes) > 4.0
    assert len({c.phase_flip for c in drawn}) == 2
    for c in drawn:
        c.validate()
    with pytest.raises(ValueError, match="tilt range"):
        SimulationConfig(tilt_min_deg=10, tilt_max_deg=-10).validate()


def test_outputs_have_contract_types(sim):
    assert sim.tomogram.data.shape == SIZE[::-1]
    assert sim.tomogram.data.dtype == np.float32
    assert sim.tomogram.voxel_size == 10.0
    assert sim.labels.dtype == np.int16 and sim.instances.dtype == np.int32
    assert sim.membranes.dtype == np.uint8 and set(np.unique(sim.membranes)) <= {0, 1}
    json.dumps(sim.metadata)
    assert sim.metadata["labels"]["membrane"] == 1
    assert sim.metadata["labels"]["fiducial"] == lab.class_label("fiducial")
    assert sim.metadata["densities"]["source"] == "procedural"
    assert set(sim.particles["class"]) <= set(lab.CLASS_ORDER)
    assert (sim.particles["id"].to_numpy() == np.arange(1, len(sim.particles) + 1)).all()


def test_labels_agree_with_instances_and_membranes(sim):
    inst, labels, memb = sim.instances, sim.labels, sim.membranes
    assert not np.any((inst > 0) & (memb > 0))
    assert np.array_equal(labels == lab.MEMBRANE, (memb > 0) & (inst == 0))
    assert np.array_equal(labels >= 2, inst > 0)
    names = dict(zip(sim.particles["id"], sim.particles["class"]))
    for pid in np.unique(inst[inst > 0])[:50]:
        assert set(np.unique(labels[inst == pid])) == {lab.class_label(names[pid])}


def test_particles_do_not_touch(sim):
    inst = sim.instances
    for axis in range(3):
        a = np.moveaxis(inst, axis, 0)
        left, right = a[:-1], a[1:]
        touching = (left > 0) & (right > 0) & (left != right)
        assert not touching.any()


def test_centre_ball_inside_each_instance(sim):
    shape = sim.instances.shape
    assert len(sim.particles) > 5
    for row in sim.particles.itertuples():
        ball = lab.centre_ball(shape, np.array([row.x, row.y, row.z]))
        assert ball.any()
        assert np.all(sim.instances[ball] == row.id)


def test_membrane_mask_is_5nm_thick_around_a_sphere():
    from cryoet_integration.simulate import membranes as mem
    from cryoet_integration.simulate.scene import _Builder

    cfg = SimulationConfig(voxel_size=8.0, ice_fraction=2.0)
    b = _Builder((40, 64, 64), cfg, np.random.default_rng(0))
    b.build_slab()
    centre = np.array([250.0, 260.0, 160.0])
    assert b.add_membrane(mem.Ellipsoid(centre, np.full(3, 150.0), np.eye(3)))
    z, y, x = np.indices(b.membranes.shape) * 8.0
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    d = np.abs(r - 150.0)
    assert d[b.membranes > 0].max() <= 25.0 + 1e-3
    assert b.membranes[d <= 25.0 - 1e-3].all()
    # the density has two head-group peaks about 4 nm apart
    prof = [b.potential[(r > lo) & (r <= lo + 4)].mean() for lo in range(120, 180, 4)]
    peaks = [120 + 4 * i + 2 for i in range(1, len(prof) - 1)
             if prof[i] > prof[i - 1] and prof[i] > prof[i + 1]]
    assert len(peaks) == 2 and 28 <= peaks[1] - peaks[0] <= 52


def test_simulated_membrane_mask_thickness(sim):
    # the deepest point of the mask lies 2.5 nm (here 2.5 voxels) from its edges
    depth = ndimage.distance_transform_edt(sim.membranes)
    inner = depth[(sim.membranes > 0)]
    assert 2.0 <= inner.max() <= 4.0


def test_centroids_and_orientations_match_instance_map(big_sim):
    inst, table = big_sim.instances, big_sim.particles
    shape_xyz = np.array(inst.shape[::-1])
    ids = table.set_index("id")
    objects = ndimage.find_objects(inst)
    checked = rods = 0
    for pid, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        lo = np.array([s.start for s in sl][::-1])
        hi = np.array([s.stop for s in sl][::-1])
        if np.any(lo == 0) or np.any(hi == shape_xyz):
            continue  # cut by the box edge
        zz, yy, xx = np.nonzero(inst[sl] == pid)
        pts = np.stack([xx + lo[0], yy + lo[1], zz + lo[2]], 1).astype(float)
        row = ids.loc[pid]
        listed = np.array([row.x, row.y, row.z])
        assert np.linalg.norm(pts.mean(0) - listed) < 1.0, row["class"]
        checked += 1
        if row["class"] == "rod":
            evals, evecs = np.linalg.eigh(np.cov((pts - pts.mean(0)).T))
            long_axis = evecs[:, -1]
            r = formats.orientations(table[table["id"] == pid])[0]
            assert abs(long_axis @ r[:, 2]) > 0.95
            rods += 1
    assert checked >= 10 and rods >= 1


def test_attached_particles_sit_on_membranes(big_sim):
    table = big_sim.particles
    attached = table[table["attached"]]
    assert len(attached) >= 1
    near_membrane = ndimage.binary_dilation(big_sim.membranes > 0, iterations=2)
    for pid in attached["id"]:
        assert np.any(near_membrane & (big_sim.instances == pid))
    assert set(attached["class"]) <= {n for n, c in CLASSES.items() if c.binds_membrane}


def test_projector_geometry_and_missing_wedge():
    from cryoet_integration.simulate.projector import forward_project
    from cryoet_integration.simulate.reconstruct import weighted_back_projection

    vol = np.zeros((1, 16, 4, 32), np.float32)
    vol[0, 12, :, 20] = 1.0  # x' = 20 - 15.5, z' = 12 - 7.5
    proj = forward_project(vol, np.array([30.0]))
    u = 4.5 * np.cos(np.pi / 6) + 4.5 * np.sin(np.pi / 6) + 15.5
    assert abs((proj[0, 0, 1] * np.arange(32)).sum() / proj[0, 0, 1].sum() - u) < 0.1

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(1, 48, 8, 48)).astype(np.float32)
    angles = np.arange(-60, 61, 3.0)
    rec = weighted_back_projection(forward_project(noise, angles)[:, 0], angles, 48)
    power = np.abs(np.fft.fftn(rec)) ** 2
    kz = np.fft.fftfreq(48)[:, None, None]
    kx = np.fft.fftfreq(48)[None, None, :]
    k = np.hypot(kx, kz) * np.ones((1, 8, 1))
    angle_from_kz = np.degrees(np.arctan2(np.abs(kx), np.abs(kz))) * np.ones((1, 8, 1))
    band = (k > 0.08) & (k < 0.4)
    wedge = power[band & (angle_from_kz < 20)].mean()
    seen = power[band & (angle_from_kz > 40)].mean()
    assert wedge < 0.05 * seen


def test_simulated_tomogram_has_missing_wedge(sim):
    power = np.abs(np.fft.fftn(sim.tomogram.data)) ** 2
    nz, _, nx = power.shape
    kz = np.fft.fftfreq(nz)[:, None, None]
    kx = np.fft.fftfreq(nx)[None, None, :]
    k = np.hypot(kx, kz) * np.ones_like(power)
    angle_from_kz = np.degrees(np.arctan2(np.abs(kx), np.abs(kz))) * np.ones_like(power)
    band = (k > 0.1) & (k < 0.4)
    assert power[band & (angle_from_kz < 20)].mean() < 0.1 * power[band & (angle_from_kz > 40)
                                                                     ].mean()


def test_ctf_makes_dense_matter_dark_in_underfocus():
    from cryoet_integration.simulate.imaging import simulate_tilt_series

    pot = np.zeros((16, 32, 32), np.float32)
    zz, yy, xx = np.indices(pot.shape)
    pot[(xx - 15.5) ** 2 + (yy - 15.5) ** 2 + (zz - 7.5) ** 2 < 16] = 2.3
    cfg = SimulationConfig(tilt_min_deg=-3, tilt_max_deg=3, dose_total=1e6, defocus_angst=3.0e4,
                           misalign_shift_angst=0, misalign_rotation_deg=0, tilt_error_deg=0)
    slab = {"normal": [0, 0, 1], "thickness_angst": 160.0}
    ts = simulate_tilt_series(pot, pot * 0.07, slab, cfg, np.random.default_rng(0))
    centre = ts.clean[1, 14:18, 14:18].mean()
    assert centre < -0.01  # darker than the mean background (0)


def test_written_files_read_back(sim, tmp_path):
    paths = write_simulation(sim, tmp_path, name="tomo_007")
    for key in ("tomogram", "labels", "instances", "membranes"):
        vol = formats.read_volume(paths[key])
        assert vol.voxel_size == pytest.approx(10.0, abs=1e-3)
        assert vol.data.shape == SIZE[::-1]
    assert np.array_equal(formats.read_volume(paths["labels"]).data, sim.labels)
    assert np.array_equal(formats.read_volume(paths["instances"]).data, sim.instances)
    table = formats.read_particles(paths["particles_csv"])
    assert len(table) == len(sim.particles)
    assert list(table["id"]) == list(sim.particles["id"])
    np.testing.assert_allclose(table[["x", "y", "z"]], sim.particles[["x", "y", "z"]],
                               atol=1e-5)
    np.testing.assert_allclose(formats.orientations(table), formats.orientations(sim.particles),
                               atol=1e-4)
    assert set(table["tomo_name"]) == {"tomo_007"}
    star = formats.read_particles(paths["particles_star"], tomo_size_xyz="64x64x32")
    np.testing.assert_allclose(star[["x", "y", "z"]], sim.particles[["x", "y", "z"]],
                               atol=1e-3)
    np.testing.assert_allclose(formats.orientations(star), formats.orientations(sim.particles),
                               atol=1e-4)
    meta = json.loads((tmp_path / "tomo_007.json").read_text())
    assert meta["voxel_size_angst"] == 10.0 and meta["name"] == "tomo_007"
    with pytest.raises(formats.FormatError, match="exists"):
        write_simulation(sim, tmp_path, name="tomo_007")
    write_simulation(sim, tmp_path, name="tomo_007", overwrite=True)


def test_cli_end_to_end(tmp_path, capsys):
    from formats import read_tomograms

    out = tmp_path / "sims"
    args = ["simulate", "--out", str(out), "--n", "2", "--size", "48x40x24", "--seed", "1",
            "--tilt-step", "6", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_tomograms"] == 2
    for name in ("tomo_000", "tomo_001"):
        for suffix in (".mrc", "_labels.mrc", "_instances.mrc", "_membranes.mrc",
                       "_particles.csv", "_particles.star", ".json"):
            assert (out / f"{name}{suffix}").is_file()
        meta = json.loads((out / f"{name}.json").read_text())
        vol = formats.read_volume(out / f"{name}.mrc")
        assert vol.voxel_size == pytest.approx(meta["voxel_size_angst"], abs=1e-3)
        assert vol.data.shape == (24, 40, 48)
    seeds = [t["seed"] for t in summary["tomograms"]]
    assert seeds[0] != seeds[1]
    tomos = read_tomograms(out / "tomograms.star")
    assert list(tomos["tomo_name"]) == ["tomo_000", "tomo_001"]
    assert list(tomos["size_x"]) == [48, 48]
    picks = formats.read_particles(out / "tomo_001_particles.star",
                                   tomograms=out / "tomograms.star")
    csv = formats.read_particles(out / "tomo_001_particles.csv")
    np.testing.assert_allclose(picks[["x", "y", "z"]], csv[["x", "y", "z"]], atol=1e-3)
    assert picks["voxel_size"].iloc[0] == pytest.approx(csv["voxel_size"].iloc[0])
    first = formats.read_volume(out / "tomo_000.mrc").data.copy()
    stamp = (out / "tomo_000.mrc").stat().st_mtime_ns
    assert main(args) == 0  # a re-run keeps the complete tomograms
    assert "2 of 2 tomograms already complete" in capsys.readouterr().err
    assert (out / "tomo_000.mrc").stat().st_mtime_ns == stamp
    assert main(args + ["--force"]) == 0
    assert np.array_equal(formats.read_volume(out / "tomo_000.mrc").data, first)


def test_cli_rejects_bad_options(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path), "--size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert "XxYxZ" in err and err.count("\n") == 1
    assert main(["simulate", "--out", str(tmp_path / "x"), "--tilt-range", "50", "-50",
                 "--size", "16x16x16"]) == 2
    assert "tilt range" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("seed", range(6))
def test_vesicle_distances_are_accurate_near_the_bilayer(seed):
    from cryoet_integration.simulate import membranes as mem

    rng = np.random.default_rng(seed)
    ves = mem.random_vesicle(rng, np.zeros(3), float(rng.uniform(150, 600)))
    for _ in range(50):
        point, normal = ves.sample_surface(rng)
        offsets = np.array([-25.0, -10.0, 0.0, 10.0, 25.0])
        d = ves.distance(point + offsets[:, None] * normal)
        np.testing.assert_allclose(d, offsets, atol=1.5)


def test_cli_fixed_and_ranged_conditions(tmp_path, capsys):
    out = tmp_path / "fixed"
    assert main(["simulate", "--out", str(out), "--n", "2", "--size", "32x32x16", "--seed", "2",
                 "--no-randomise", "--voxel-size", "8:12", "--tilt-step", "6",
                 "--phase-flip", "yes", "--prefix", "sim", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    sizes = [t["voxel_size"] for t in summary["tomograms"]]
    assert all(8.0 <= s <= 12.0 for s in sizes) and sizes[0] != sizes[1]
    meta = json.loads((out / "sim_001.json").read_text())
    assert meta["config"]["phase_flip"] is True
    assert meta["config"]["tilt_step_deg"] == 6.0
    assert meta["config"]["defocus_angst"] == SimulationConfig().defocus_angst
    assert meta["imaging"]["phase_flipped"] is True


def test_sirt_like_variant():
    from cryoet_integration.simulate.reconstruct import sirt_like_weighting

    w = sirt_like_weighting(256, 20)
    assert w[1] == pytest.approx(1.0) and np.all(np.diff(w[1:]) <= 1e-7) and w[-1] < 0.2
    cfg = dataclasses.replace(BUSY, sirt_iterations=15, tilt_step_deg=5.0, measure_snr=True)
    sim = simulate_tomogram(seed=1, size_xyz=(32, 32, 16), config=cfg)
    assert np.isfinite(sim.tomogram.data).all()
    assert "SIRT" in sim.metadata["reconstruction"]["method"]
    assert sim.metadata["snr"] > 0


def test_filaments_are_labelled_but_not_particles():
    from cryoet_integration.simulate.filaments import MICROTUBULE_RADII_ANGST

    cfg = SimulationConfig(voxel_size=10.0, n_vesicles=1, n_sheets=0, n_microtubules=1,
                           n_actin=3, crowding=0.05, tilt_step_deg=6.0, measure_snr=False)
    sim = simulate_tomogram(seed=4, size_xyz=(96, 96, 48), config=cfg)
    kinds = [f["kind"] for f in sim.metadata["filaments"]]
    assert "microtubule" in kinds and "actin" in kinds
    names = sim.metadata["labels"]
    tube = sim.labels == names["microtubule"]
    assert tube.any() and (sim.labels == names["actin"]).any()
    filament = (sim.labels == names["microtubule"]) | (sim.labels == names["actin"])
    assert not np.any(filament & (sim.instances > 0))
    assert not np.any(filament & (sim.membranes > 0))
    assert set(sim.particles["class"]) <= set(lab.CLASS_ORDER)
    # the microtubule is hollow: its axis is not labelled
    from cryoet_integration.simulate.filaments import Filament

    mt = next(f for f in sim.metadata["filaments"] if f["kind"] == "microtubule")
    fil = Filament("microtubule", np.array(mt["arc_centre_angst"]), np.array(mt["arc_normal"]),
                   mt["curvature_radius_angst"], np.array(mt["through_angst"]))
    z, y, x = np.indices(sim.labels.shape) * 10.0
    r = fil.axis_distance(np.stack([x, y, z], axis=-1))
    assert not tube[r < MICROTUBULE_RADII_ANGST[0] - 15].any()
    assert tube[(r > 95) & (r < 115)].mean() > 0.5


def test_cli_runs_merge_into_one_summary(tmp_path):
    from formats import read_tomograms

    base = ["simulate", "--out", str(tmp_path), "--size", "24x24x12", "--tilt-step", "10",
            "--no-randomise"]
    assert main(base + ["--n", "2", "--prefix", "a"]) == 0
    assert main(base + ["--n", "1", "--prefix", "b", "--seed", "5"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = [t["name"] for t in summary["tomograms"]]
    assert names == ["a_000", "a_001", "b_000"] and summary["n_tomograms"] == 3
    assert list(read_tomograms(tmp_path / "tomograms.star")["tomo_name"]) == names


def test_ctf_inverts_contrast_beyond_first_zero_unless_phase_flipped():
    from cryoet_integration.simulate.imaging import simulate_tilt_series
    from cryoet_integration.simulate.reconstruct import weighted_back_projection
    from cryoet_integration.simulate.scene import build_scene

    shape = (32, 64, 64)
    base = SimulationConfig(voxel_size=7.0, defocus_angst=5.0e4, bfactor_angst2=0.0, crowding=0.2,
                            misalign_shift_angst=0, misalign_rotation_deg=0, tilt_error_deg=0,
                            tilt_step_deg=4.0)
    k = np.sqrt(sum(np.meshgrid(*[np.fft.fftfreq(n) ** 2 for n in shape], indexing="ij")))
    # at 5 µm and 7 Å/voxel the CTF's first two zeros lie at 0.22 and 0.31 cycles/voxel
    beyond = (k > 0.24) & (k < 0.30)
    corr = {}
    for flip in (False, True):
        cfg = dataclasses.replace(base, phase_flip=flip)
        scene = build_scene(shape, cfg, np.random.default_rng(0))
        ts = simulate_tilt_series(scene.potential, scene.absorption, scene.slab, cfg,
                                  np.random.default_rng(1))
        f = np.fft.fftn(weighted_back_projection(ts.clean, ts.angles_deg, shape[0]))
        g = np.fft.fftn(scene.potential)
        corr[flip] = float(np.real((f[beyond] * np.conj(g[beyond])).sum())
                           / np.sqrt((abs(f[beyond]) ** 2).sum() * (abs(g[beyond]) ** 2).sum()))
    assert corr[False] > 0.1, corr  # reversed contrast between the first and second zero
    assert corr[True] < -0.1  # flipped back: dense matter dark at all frequencies


def _profile_draws(n: int) -> list[SimulationConfig]:
    return [SimulationConfig.randomised(s) for s in range(n)]


def test_randomised_bilayer_profile_stays_in_its_ranges():
    from cryoet_integration.simulate.shapes import PROTEIN_DENSITY_V

    drawn = _profile_draws(60)
    single = []
    for c in drawn:
        c.validate()
        assert 30.0 <= c.leaflet_spacing_angst <= 50.0
        assert 4.0 <= c.head_sigma_angst <= 12.0
        assert 0.6 <= c.head_density_v / PROTEIN_DENSITY_V <= 1.4
        assert -0.3 <= c.core_density_v / c.head_density_v <= 2.5
        assert 5.0 <= c.core_sigma_angst <= c.leaflet_spacing_angst / 4 + 1e-9
        single.append(c.bilayer_profile().n_peaks(c.voxel_size) == 1)
    # about a third are one merged band, and both kinds of per-membrane setting occur
    assert 0.2 <= np.mean(single) <= 0.5
    assert len({c.profile_per_membrane for c in drawn}) == 2
    cores = [c.core_density_v / c.head_density_v for c in drawn]
    assert min(cores) < 0 and max(cores) > 0.8
    # the fixed default keeps the sharp two-leaflet profile
    default = SimulationConfig()
    assert default.bilayer_profile().n_peaks(default.voxel_size) == 2
    assert not default.profile_per_membrane


def _flat_sheet_column(cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Potential and mask along the normal of a flat sheet through a voxel centre, and the
    signed distance (Å) of those voxels to the mid-surface."""
    from cryoet_integration.simulate import membranes as mem
    from cryoet_integration.simulate.scene import _Builder

    cfg = dataclasses.replace(cfg, ice_fraction=2.0, ice_tilt_deg=0.0,
                              profile_per_membrane=False)
    vs = cfg.voxel_size
    b = _Builder((40, 12, 12), cfg, np.random.default_rng(0))
    b.build_slab()
    sheet = mem.Sheet(np.array([5.0, 5.0, 20.0]) * vs, np.eye(3), np.zeros((1, 4)))
    assert b.add_membrane(sheet)
    d = (np.arange(40) - 20.0) * vs
    return b.potential[:, 6, 6].astype(float), b.membranes[:, 6, 6], d


def _n_maxima(p: np.ndarray) -> int:
    step = np.diff(p)
    return int(np.sum((step[:-1] > 0) & (step[1:] <= 0)))


def test_single_band_and_two_leaflet_profiles_across_a_flat_sheet():
    drawn = _profile_draws(40)
    single = next(c for c in drawn if c.bilayer_profile().n_peaks(c.voxel_size) == 1)

    def resolved(c: SimulationConfig) -> bool:
        # head groups sampled by the voxel grid well above the core
        p = c.bilayer_profile()
        k = round(p.leaflet_spacing_angst / 2 / c.voxel_size)
        v = p.density(np.array([0.0, k * c.voxel_size]), c.voxel_size)
        return p.n_peaks(c.voxel_size) == 2 and k >= 1 and v[1] > 1.2 * v[0] + 0.1

    double = next(c for c in drawn if resolved(c))
    for cfg, n_bands in ((single, 1), (double, 2)):
        pot, mask, d = _flat_sheet_column(cfg)
        # dense matter is dark in the tomogram: one or two density maxima = dark minima
        assert _n_maxima(pot) == n_bands, cfg
        # the label does not follow the profile: every voxel within 2.5 nm, nothing else
        assert np.array_equal(mask > 0, np.abs(d) <= 25.0)


def test_per_membrane_profiles_are_recorded():
    cfg = next(c for c in _profile_draws(40) if c.profile_per_membrane)
    cfg = dataclasses.replace(cfg, n_vesicles=2, n_sheets=1, n_tubes=0, tilt_step_deg=6.0,
                              measure_snr=False, crowding=0.02)
    sim = simulate_tomogram(seed=2, size_xyz=(48, 48, 32), config=cfg)
    json.dumps(sim.metadata)
    assert sim.metadata["membrane_profile"]["per_membrane"] is True
    profiles = [m["profile"] for m in sim.metadata["membranes"]]
    assert len(profiles) >= 2
    assert len({p["head_sigma_angst"] for p in profiles}) == len(profiles)
    for p in profiles:
        assert 30.0 <= p["leaflet_spacing_angst"] <= 50.0
        assert 4.0 <= p["head_sigma_angst"] <= 12.0
        assert isinstance(p["single_band"], bool)
    depth = ndimage.distance_transform_edt(sim.membranes) * cfg.voxel_size
    assert 25.0 - cfg.voxel_size <= depth.max() <= 25.0 + 2 * cfg.voxel_size


def test_default_profile_is_recorded(sim):
    prof = sim.metadata["membrane_profile"]
    assert prof["per_membrane"] is False and prof["single_band"] is False
    assert prof["head_sigma_angst"] == 5.0 and prof["core_density_v"] == -0.4
    assert all(m["profile"] == {k: v for k, v in prof.items() if k != "per_membrane"}
               for m in sim.metadata["membranes"])


def test_random_shapes_are_new_per_instance_and_in_their_ranges():
    from cryoet_integration.simulate.shapes import (
        PROTEIN_DENSITY_V,
        RANDOM_SHAPE,
        class_template,
        random_shape_class,
    )

    rng = np.random.default_rng(7)
    shapes = [random_shape_class(rng, (80.0, 400.0)) for _ in range(30)]
    again = random_shape_class(np.random.default_rng(7), (80.0, 400.0))
    assert again == shapes[0]
    assert len({s.primitives for s in shapes}) == 30
    sizes = []
    for s in shapes:
        assert s.name == RANDOM_SHAPE and not s.binds_membrane
        assert 0.7 * PROTEIN_DENSITY_V <= s.density_v <= 1.2 * PROTEIN_DENSITY_V
        lo = np.min([p.bounds()[0] for p in s.primitives if not p.carve], axis=0)
        hi = np.max([p.bounds()[1] for p in s.primitives if not p.carve], axis=0)
        sizes.append(float((hi - lo).max()))
        solid = class_template(s, 10.0) > 0.5 * s.density_v
        assert solid.any()
    assert 80.0 - 1e-6 <= min(sizes) and max(sizes) <= 400.0 + 1e-6
    assert max(sizes) / min(sizes) > 2.5


def test_random_shape_particles_are_labelled_listed_and_off_by_default():
    from cryoet_integration.simulate.shapes import RANDOM_SHAPE

    assert SimulationConfig().random_shape_fraction == 0.0
    assert SimulationConfig.randomised(5).random_shape_fraction == 0.0
    cfg = dataclasses.replace(BUSY, random_shape_fraction=0.5, n_vesicles=0, n_tubes=0,
                              n_sheets=0, fiducials_per_angst2=0.0, crowding=0.2)
    s = simulate_tomogram(seed=2, size_xyz=(64, 64, 40), config=cfg)
    counts = s.particles["class"].value_counts().to_dict()
    assert counts.get(RANDOM_SHAPE, 0) >= 5 and len(counts) >= 3
    rid = lab.class_label(RANDOM_SHAPE)
    assert s.metadata["labels"][RANDOM_SHAPE] == rid
    assert RANDOM_SHAPE in s.metadata["densities"]["classes"]
    for pid, name in zip(s.particles["id"], s.particles["class"]):
        region = s.instances == pid
        assert region.any()
        assert np.all(s.labels[region] == lab.class_label(name))
    only = dataclasses.replace(cfg, class_weights={c: 0.0 for c in CLASSES})
    s2 = simulate_tomogram(seed=2, size_xyz=(48, 48, 32), config=only)
    assert set(s2.particles["class"]) == {RANDOM_SHAPE}
    with pytest.raises(ValueError, match="random_shape_fraction"):
        dataclasses.replace(BUSY, random_shape_fraction=1.5).validate()
