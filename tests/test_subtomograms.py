"""Subtomogram extraction and averaging, proven with real RELION 3.1 (Debian's ``relion``).

A simulated tomogram (the project's simulator, one asymmetric class: the ribosome-like
shape) is cut by ``cryovis extract`` at the TRUE particle positions with the TRUE
orientations; ``relion_reconstruct --3d_rot`` and ``cryovis average`` must give the particle:
its noise-free density (the simulator's class template) correlates >= 0.8 with the average
and clearly better than with transposed rotations or zero angles. Maps are compared inside
the particle's envelope after both are low-passed to 40 Å (the first lobe of the simulated
CTF: beyond it the tomogram's contrast flips, the template's does not). The dose is three
times the simulator's default so that ~30 particles stand for the hundreds of a real set.

RELION is installed by ``external_envs.relion_program`` when missing (apt-get; fails, never
skips, when it cannot be).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from external_envs import relion_program

from cryoet_integration.cli import main
from formats import (
    euler,
    orientations,
    positions_voxels,
    read_particles,
    read_star,
    read_volume,
    write_particles,
    write_star,
    write_volume,
)

BOX = 40
LOWPASS_ANGST = 40.0
TILT = (-60.0, 60.0)


@pytest.fixture(scope="module")
def relion() -> Path:
    """``relion_reconstruct`` (installed now when missing)."""
    return relion_program("relion_reconstruct")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> dict:
    """A 128x128x96 tomogram at 10 Å with ~30 ribosome-like particles, written to disk."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram, write_simulation

    cfg = SimulationConfig(n_vesicles=0, n_sheets=0, fiducials_per_angst2=0.0,
                           class_weights={"ribosome": 1.0}, crowding=0.15, dose_total=300.0,
                           tilt_min_deg=TILT[0], tilt_max_deg=TILT[1], measure_snr=False)
    sim = simulate_tomogram(seed=3, size_xyz=(128, 128, 96), config=cfg, tomo_name="tomo")
    out = tmp_path_factory.mktemp("sim")
    paths = write_simulation(sim, out, name="tomo")
    assert len(sim.particles) >= 20
    # the simulator's positions are off-grid: every particle has a sub-voxel remainder
    frac = positions_voxels(sim.particles) - np.round(positions_voxels(sim.particles))
    assert np.abs(frac).max() > 0.1
    return {"dir": out, "tomogram": Path(paths["tomogram"]), "csv": Path(paths["particles_csv"]),
            "star5": Path(paths["particles_star"]), "table": sim.particles,
            "voxel_size": sim.tomogram.voxel_size}


def true_density(box: int, voxel_size: float) -> np.ndarray:
    """The simulator's noise-free ribosome density, centred on voxel box // 2."""
    from cryoet_integration.simulate.shapes import CLASSES, class_template

    t = class_template(CLASSES["ribosome"], voxel_size)
    n, c = t.shape[0], box // 2
    out = np.zeros((box,) * 3, np.float32)
    lo_t, hi_t = max(0, n // 2 - c), min(n, n // 2 - c + box)
    lo_b = max(0, c - n // 2)
    sl_t, sl_b = slice(lo_t, hi_t), slice(lo_b, lo_b + hi_t - lo_t)
    out[sl_b, sl_b, sl_b] = t[sl_t, sl_t, sl_t]
    return out


def particle_cc(average: np.ndarray, voxel_size: float) -> float:
    """CC of a map with the true density, both low-passed to 40 Å, inside the particle's
    envelope (the low-passed truth above 10 % of its peak, grown by 2 voxels): the shape, not
    just a blob of the right size, is what scores."""
    from scipy import ndimage

    from cryoet_integration.preprocess import lowpass_filter

    truth = lowpass_filter(true_density(average.shape[0], voxel_size), LOWPASS_ANGST,
                           voxel_size)
    mask = ndimage.binary_dilation(truth > 0.1 * truth.max(), iterations=2)
    a = lowpass_filter(average, LOWPASS_ANGST, voxel_size)[mask].astype(float)
    b = truth[mask].astype(float)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def map_cc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def run_relion(relion: Path, folder: Path, star: str, out: str, *extra: str) -> np.ndarray:
    """``relion_reconstruct --i STAR --o OUT --3d_rot [EXTRA]`` in ``folder``; the map."""
    proc = subprocess.run([str(relion), "--i", star, "--o", out, "--3d_rot", *extra],
                          cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return np.asarray(read_volume(folder / out).data, dtype=np.float32)


def with_angles(star: Path, out: Path, matrices: np.ndarray | None = None,
                origin_factor: float = 1.0) -> str:
    """A copy of a subtomogram STAR with other orientations (None: zero angles) and/or its
    origins multiplied by ``origin_factor``; returns the copy's name."""
    blocks = read_star(star)
    part = blocks["particles"].copy()
    angles = np.zeros((len(part), 3)) if matrices is None else euler.matrix_to_relion(matrices)
    part["rlnAngleRot"], part["rlnAngleTilt"], part["rlnAnglePsi"] = angles.T
    for a in "XYZ":
        part[f"rlnOrigin{a}Angst"] = part[f"rlnOrigin{a}Angst"] * origin_factor
    blocks["particles"] = part
    write_star(out, blocks, version="30001")
    return out.name


def extract(args: list[str], capsys=None) -> dict:
    code = main(["extract", *args, "--json"])
    assert code == 0
    if capsys is not None:
        return json.loads(capsys.readouterr().out)
    return {}


@pytest.fixture(scope="module")
def extracted(simulated, tmp_path_factory) -> dict:
    """``cryovis extract`` at the true positions and orientations (RELION 3.1 STAR)."""
    out = tmp_path_factory.mktemp("extract") / "subtomos"
    code = main(["extract", str(simulated["tomogram"]), str(simulated["csv"]), "--box",
                 str(BOX), "--out", str(out), "--invert", "--normalise"])
    assert code == 0
    return {"dir": out, "star": out / "particles.star"}


def test_extract_star_conventions(simulated, extracted):
    """The STAR is RELION 3.1 subtomogram style and reads back to the exact true picks."""
    blocks = read_star(extracted["star"])
    optics, part = blocks["optics"], blocks["particles"]
    assert int(optics["rlnImageDimensionality"][0]) == 3
    assert int(optics["rlnImageSize"][0]) == BOX
    assert float(optics["rlnImagePixelSize"][0]) == pytest.approx(simulated["voxel_size"])
    for label in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        assert label in optics.columns
    for label in ("rlnImageName", "rlnCtfImage", "rlnCoordinateX", "rlnAngleRot",
                  "rlnOriginXAngst", "rlnClassNumber", "rlnMicrographName"):
        assert label in part.columns
    # the tilt range came from the tomogram's .json sidecar: one wedge weight for all
    assert set(part["rlnCtfImage"]) == {"wedge.mrc"}
    wedge = read_volume(extracted["dir"] / "wedge.mrc").data
    assert wedge.shape == (BOX,) * 3 and 0.5 < float(wedge.mean()) < 0.8
    # coordinates are whole voxels; true position = coordinate - origin
    coords = part[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(float)
    assert np.allclose(coords, np.round(coords))
    back = read_particles(extracted["star"])
    truth = simulated["table"]
    assert len(back) == len(truth)
    assert np.allclose(positions_voxels(back), positions_voxels(truth), atol=1e-4)
    assert np.allclose(orientations(back), orientations(truth), atol=1e-5)
    sub = read_volume(extracted["dir"] / part["rlnImageName"][0]).data
    assert sub.shape == (BOX,) * 3 and sub.dtype == np.float32


@pytest.fixture(scope="module")
def relion_true_map(extracted, relion) -> np.ndarray:
    """RELION's average of the extracted particles with their true orientations."""
    return run_relion(relion, extracted["dir"], extracted["star"].name, "relion_true.mrc")


def test_relion_averages_true_orientations(simulated, extracted, relion, relion_true_map):
    """RELION 3.1 gives the particle from our files, and only with the true rotations."""
    folder, star = extracted["dir"], extracted["star"]
    vs = simulated["voxel_size"]
    matrices = orientations(read_particles(star))
    true = particle_cc(relion_true_map, vs)
    transposed = particle_cc(run_relion(
        relion, folder, with_angles(star, folder / "transposed.star",
                                    np.swapaxes(matrices, 1, 2)), "relion_transposed.mrc"), vs)
    zero = particle_cc(run_relion(relion, folder, with_angles(star, folder / "zero.star"),
                                  "relion_zero.mrc"), vs)
    print(f"RELION CC: true {true:.3f}, transposed {transposed:.3f}, zero angles {zero:.3f}")
    assert true >= 0.8
    assert true >= transposed + 0.1
    assert true >= zero + 0.1


def test_relion_weights_by_our_wedge(simulated, extracted, relion, relion_true_map):
    """RELION reads our rlnCtfImage (the missing-wedge weight) with ``--ctf`` and still
    gives the particle."""
    folder, star = extracted["dir"], extracted["star"]
    weighted = run_relion(relion, folder, star.name, "relion_wedge.mrc", "--ctf")
    cc = particle_cc(weighted, simulated["voxel_size"])
    print(f"RELION --ctf (wedge-weighted) CC {cc:.3f}")
    assert cc >= 0.8 and map_cc(weighted, relion_true_map) >= 0.8


def test_cryovis_average_matches_relion(simulated, extracted, relion_true_map, capsys,
                                       tmp_path):
    """``cryovis average`` (wedge-weighted, half maps, FSC) gives the particle too, and the
    same map RELION gives."""
    folder, star = extracted["dir"], extracted["star"]
    vs = simulated["voxel_size"]
    out = tmp_path / "avg.mrc"
    capsys.readouterr()
    assert main(["average", str(star), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ours = np.asarray(read_volume(out).data, dtype=np.float32)
    theirs = relion_true_map
    cc_ours, agree = particle_cc(ours, vs), map_cc(ours, theirs)
    print(f"cryovis average CC {cc_ours:.3f}; vs RELION's map {agree:.3f}; "
          f"FSC 0.143 {result['resolution_fsc0143_angst']:.1f} Å, "
          f"0.5 {result['resolution_fsc05_angst']:.1f} Å")
    assert cc_ours >= 0.8
    assert agree >= 0.8
    assert result["wedge_weighted"] and result["rotated"]
    assert sum(result["half_counts"]) == result["n_particles"]
    # a resolution between Nyquist (20 Å) and the particle's size
    assert 2 * vs <= result["resolution_fsc0143_angst"] <= result["resolution_fsc05_angst"]
    assert result["resolution_fsc05_angst"] < 150
    # the same discrimination as RELION's: transposed rotations or zero angles do not give it
    for name, matrices in (("transposed", np.swapaxes(orientations(read_particles(star)), 1, 2)),
                           ("zero", None)):
        wrong = tmp_path / f"{name}.star"
        with_angles(star, wrong, matrices)
        # the copy names the subtomograms relative to its own folder: put it beside them
        wrong = wrong.replace(folder / f"cryovis_{name}.star")
        assert main(["average", str(wrong), "--out", str(tmp_path / f"{name}.mrc")]) == 0
        cc_wrong = particle_cc(np.asarray(read_volume(tmp_path / f"{name}.mrc").data), vs)
        print(f"cryovis average CC with {name} angles {cc_wrong:.3f}")
        assert cc_ours >= cc_wrong + 0.1
    for key in ("half1", "half2", "fsc_png"):
        assert Path(result["outputs"][key]).is_file()
    assert Path(result["outputs"]["fsc_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_origin_sign_with_relion(simulated, relion, tmp_path):
    """Whole-voxel crops up to 3 voxels off the particle, the offset in rlnOrigin*Angst:
    RELION recentres them only with our sign (the place tools go wrong)."""
    from cryoet_integration.subtomograms.extract import crop_subtomograms
    from cryoet_integration.subtomograms.tables import write_relion_subtomograms

    vs = simulated["voxel_size"]
    table = simulated["table"]
    truth = positions_voxels(table)
    rng = np.random.default_rng(5)
    offset = rng.integers(-3, 4, size=truth.shape).astype(float)
    volume = read_volume(simulated["tomogram"], mmap=True)
    stack, kept, shifts = crop_subtomograms(volume.data, truth + offset, BOX)
    assert kept.sum() >= 20  # an offset may put the centre of a pick at the border outside
    truth, offset, matrices = truth[kept], offset[kept], orientations(table)[kept]
    # the particle's centre in its box: box // 2 + (truth - crop centre)
    centres = np.round(truth + offset)
    remainder = truth - centres
    assert np.allclose(remainder, shifts - offset)
    names = []
    for i, sub in enumerate(stack):
        names.append(f"off_{i:03d}.mrc")
        write_volume(tmp_path / names[-1], -sub, voxel_size=vs)
    write_relion_subtomograms(tmp_path / "offset.star", names, centres, remainder,
                              matrices, np.ones(len(names), int), "tomo.mrc", vs,
                              BOX, {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7,
                                    "rlnAmplitudeContrast": 0.07})
    assert np.allclose(positions_voxels(read_particles(tmp_path / "offset.star")), truth,
                       atol=1e-4)
    right = particle_cc(run_relion(relion, tmp_path, "offset.star", "right.mrc"), vs)
    wrong = particle_cc(run_relion(relion, tmp_path, with_angles(
        tmp_path / "offset.star", tmp_path / "flipped.star", matrices, -1.0),
        "wrong.mrc"), vs)
    print(f"RELION with origins: our sign {right:.3f}, flipped sign {wrong:.3f}")
    assert right >= 0.8
    assert right >= wrong + 0.1


def _pre_rotated_relion5(table, size_xyz, voxel_size: float, path: Path) -> None:
    """A RELION 5 particle file of ``table`` with a random subtomogram pre-rotation A_sub
    (R = A_sub . A_particle) and origins in the pre-rotated frame (centred Å)."""
    from scipy.spatial.transform import Rotation

    n = len(table)
    rng = np.random.default_rng(11)
    a_sub = Rotation.random(n, random_state=12).as_matrix()
    a_part = np.einsum("nji,njk->nik", a_sub, orientations(table))
    origin_sub = rng.uniform(-20, 20, size=(n, 3))  # Å, in the subtomogram frame
    xyz = positions_voxels(table)
    centred = (xyz - np.asarray(size_xyz) / 2.0) * voxel_size \
        + np.einsum("nij,nj->ni", a_sub, origin_sub)
    sub_angles, part_angles = euler.matrix_to_relion(a_sub), euler.matrix_to_relion(a_part)
    particles = {"rlnTomoName": ["tomo"] * n}
    particles.update({f"rlnCenteredCoordinate{a}Angst": centred[:, i]
                      for i, a in enumerate("XYZ")})
    particles.update({f"rlnOrigin{a}Angst": origin_sub[:, i] for i, a in enumerate("XYZ")})
    for i, label in enumerate(("Rot", "Tilt", "Psi")):
        particles[f"rlnTomoSubtomogram{label}"] = sub_angles[:, i]
        particles[f"rlnAngle{label}"] = part_angles[:, i]
    particles["rlnOpticsGroup"] = [1] * n
    import pandas as pd

    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnTomoTiltSeriesPixelSize": [voxel_size],
                           "rlnImagePixelSize": [voxel_size]})
    write_star(path, {"optics": optics, "particles": pd.DataFrame(particles)},
               version="50001")


def test_relion5_pre_rotated_equals_relion4_and_dynamo(simulated, tmp_path, capsys):
    """RELION 5 (centred Å, subtomogram pre-rotation, rotated origins), RELION 4 and Dynamo
    files of the same particles give the same subtomograms and the same STAR."""
    table = simulated["table"]
    tomo = simulated["tomogram"]
    vs = simulated["voxel_size"]
    size = read_volume(tomo, mmap=True).data.shape[::-1]
    files = {"relion5": tmp_path / "pre_rotated.star", "relion4": tmp_path / "r4.star",
             "dynamo": tmp_path / "picks.tbl"}
    _pre_rotated_relion5(table, size, vs, files["relion5"])
    write_particles(files["relion4"], table, format="relion4")
    write_particles(files["dynamo"], table, format="dynamo")
    outs = {}
    for name, path in files.items():
        out = tmp_path / f"out_{name}"
        capsys.readouterr()
        info = extract([str(tomo), str(path), "--box", str(BOX), "--out", str(out)], capsys)
        assert info["n_extracted"] == len(table)
        outs[name] = out
    ref = read_star(outs["relion4"] / "particles.star")["particles"]
    for name in ("relion5", "dynamo"):
        other = read_star(outs[name] / "particles.star")["particles"]
        for col in ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnOriginXAngst",
                    "rlnOriginYAngst", "rlnOriginZAngst"):
            assert np.allclose(other[col].to_numpy(float), ref[col].to_numpy(float),
                               atol=1e-3), (name, col)
        m_ref = euler.relion_to_matrix(ref[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]]
                                       .to_numpy(float))
        m_other = euler.relion_to_matrix(other[["rlnAngleRot", "rlnAngleTilt",
                                                "rlnAnglePsi"]].to_numpy(float))
        assert np.allclose(m_other, m_ref, atol=1e-4), name
        for image in ref["rlnImageName"]:
            a = read_volume(outs["relion4"] / image).data
            b = read_volume(outs[name] / image).data
            assert np.array_equal(a, b), (name, image)


def test_dynamo_particle_folder(simulated, relion_true_map, tmp_path, capsys):
    """``--format dynamo`` (odd box allowed): particle_NNNNN.em + crop.tbl whose positions
    (x + dx) are the true picks, wedge in the tilt-range columns; ``cryovis average`` of the
    folder gives the particle too."""
    tomo, csv = simulated["tomogram"], simulated["csv"]
    out = tmp_path / "dyn"
    info = extract([str(tomo), str(csv), "--box", "41", "--out", str(out), "--format",
                    "dynamo", "--invert", "--normalise"], capsys)
    assert info["n_extracted"] == len(simulated["table"])
    back = read_particles(out / "crop.tbl")
    assert np.allclose(positions_voxels(back), positions_voxels(simulated["table"]), atol=1e-4)
    assert np.allclose(orientations(back), orientations(simulated["table"]), atol=1e-4)
    cols = np.loadtxt(out / "crop.tbl", ndmin=2)
    assert (cols[:, 12] == 1).all() and np.allclose(cols[:, 13:15], TILT)
    assert read_volume(out / "particle_00001.em").data.shape == (41,) * 3
    assert main(["average", str(out / "crop.tbl"), "--out", str(tmp_path / "dyn.mrc"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["wedge_weighted"] and result["rotated"]
    cc = particle_cc(np.asarray(read_volume(tmp_path / "dyn.mrc").data), simulated["voxel_size"])
    print(f"cryovis average of the Dynamo folder: CC {cc:.3f}")
    assert cc >= 0.8


def test_edge_picks_padded_or_dropped(simulated, tmp_path, capsys):
    """A pick near the border is padded (counted) or dropped (counted); one outside is
    always dropped."""
    tomo = simulated["tomogram"]
    picks = tmp_path / "edge.csv"
    picks.write_text("x,y,z\n64,64,48\n2.2,64,48\n64,64,95.4\n-5,64,48\n")
    padded = extract([str(tomo), str(picks), "--box", str(BOX), "--out",
                      str(tmp_path / "pad")], capsys)
    assert (padded["n_extracted"], padded["n_edge"], padded["n_outside"]) == (3, 2, 1)
    sub = read_volume(tmp_path / "pad" / "subtomo_000002.mrc").data
    # the padded part takes the mean of the inside voxels
    inside = sub[:, :, BOX // 2 - 2:]
    assert np.allclose(sub[:, :, 0], inside.mean(), atol=1e-4)
    # --normalise takes its statistics from the inside voxels: the padding cannot collapse
    # the MAD and blow a box up
    extract([str(tomo), str(picks), "--box", str(BOX), "--out", str(tmp_path / "norm"),
             "--normalise"], capsys)
    sub = read_volume(tmp_path / "norm" / "subtomo_000002.mrc").data
    inside = sub[:, :, BOX // 2 - 2:]
    assert 0.8 < float(inside.std()) < 1.25 and float(np.abs(sub).max()) < 10
    assert np.allclose(sub[:, :, 0], inside.mean(), atol=1e-4)
    dropped = extract([str(tomo), str(picks), "--box", str(BOX), "--out",
                       str(tmp_path / "drop"), "--edge", "drop"], capsys)
    assert (dropped["n_extracted"], dropped["n_dropped"]) == (1, 3)


@pytest.mark.parametrize("args, message", [
    (["--box", "200"], "larger than the tomogram"),
    (["--box", "41"], "RELION needs an even box"),
])
def test_bad_box(simulated, tmp_path, capsys, args, message):
    out = tmp_path / "never"
    code = main(["extract", str(simulated["tomogram"]), str(simulated["csv"]), "--out",
                 str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_all_picks_outside(simulated, tmp_path, capsys):
    picks = tmp_path / "far.csv"
    picks.write_text("x,y,z\n500,10,10\n-40,10,10\n")
    out = tmp_path / "never"
    code = main(["extract", str(simulated["tomogram"]), str(picks), "--box", str(BOX),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "all 2 picks lie outside" in err and str(picks) in err
    assert not out.exists()


def test_existing_output_needs_force(simulated, extracted, capsys):
    code = main(["extract", str(simulated["tomogram"]), str(simulated["csv"]), "--box",
                 str(BOX), "--out", str(extracted["dir"])])
    err = capsys.readouterr().err
    assert code == 2 and "use --force" in err


def test_average_without_angles(simulated, tmp_path, capsys):
    """Picks without orientations: extraction says so, the average is unrotated and says
    so too."""
    picks = tmp_path / "plain.csv"
    xyz = positions_voxels(simulated["table"])[:6]
    picks.write_text("x,y,z\n" + "\n".join(",".join(f"{v:.3f}" for v in p) for p in xyz))
    out = tmp_path / "plain"
    assert main(["extract", str(simulated["tomogram"]), str(picks), "--box", "24", "--out",
                 str(out)]) == 0
    assert "no orientations" in capsys.readouterr().err
    star = out / "particles.star"
    blocks = read_star(star)
    blocks["particles"] = blocks["particles"].drop(
        columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"])
    write_star(tmp_path / "no_angles.star", blocks, version="30001")
    (tmp_path / "no_angles.star").replace(star)
    assert main(["average", str(star), "--out", str(tmp_path / "avg.mrc"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "averaging without rotation" in captured.err
    assert json.loads(captured.out)["rotated"] is False


def test_average_bad_input(tmp_path, capsys):
    star = tmp_path / "missing.star"
    star.write_text("data_particles\nloop_\n_rlnImageName #1\n_rlnCoordinateX #2\n"
                    "_rlnCoordinateY #3\n_rlnCoordinateZ #4\n"
                    "nothere.mrc 1 2 3\nnothere2.mrc 1 2 3\n")
    code = main(["average", str(star), "--out", str(tmp_path / "avg.mrc")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "avg.mrc").exists()


def test_crop_subtomograms_memmap_equals_memory(tmp_path):
    """The library call the classifier uses: the same boxes from a memory map as from memory,
    remainders pick - round(pick), edge picks padded or dropped, outside ones dropped."""
    from cryoet_integration.subtomograms.extract import crop_subtomograms

    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 50, 60)).astype(np.float32)
    write_volume(tmp_path / "t.mrc", data, voxel_size=5.0)
    mapped = read_volume(tmp_path / "t.mrc", mmap=True).data
    assert isinstance(mapped, np.memmap)
    picks = np.array([[30.3, 25.6, 20.0], [0.2, 3.0, 4.0], [10.5, 10.0, 10.0], [-1.0, 5.0, 5.0]])
    stack, kept, shifts = crop_subtomograms(mapped, picks, 8)
    same, _, _ = crop_subtomograms(data, picks, 8)
    assert np.array_equal(stack, same) and kept.tolist() == [True, True, True, False]
    assert np.allclose(shifts, picks[:3] - np.floor(picks[:3] + 0.5))
    # pick 0: nearest voxel (30, 26, 20) is voxel 4 of its box
    assert np.array_equal(stack[0], data[16:24, 22:30, 26:34])
    dropped, kept_drop, _ = crop_subtomograms(mapped, picks, 8, edge="drop")
    assert kept_drop.tolist() == [True, False, True, False] and len(dropped) == 2


def test_nan_tomogram_refused(tmp_path, capsys):
    data = np.zeros((40, 40, 40), np.float32)
    data[30, 2, 3] = np.nan
    write_volume(tmp_path / "nan.mrc", data, voxel_size=10.0)
    picks = tmp_path / "p.csv"
    picks.write_text("x,y,z\n20,20,20\n")
    code = main(["extract", str(tmp_path / "nan.mrc"), str(picks), "--box", "16", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "NaN" in err and not (tmp_path / "out").exists()


def test_reference_agreement_and_place_back():
    from cryoet_integration.subtomograms.average import (
        centre_in_box,
        place_back,
        reference_agreement,
    )

    rng = np.random.default_rng(3)
    ref = np.zeros((9, 9, 9), np.float32)
    ref[2:7, 3:6, 1:8] = 1.0
    ref[4, 4, 6] = 3.0  # off-centre mark: orientation matters
    boxed = centre_in_box(ref, 16)
    assert boxed.shape == (16,) * 3 and boxed[8, 8, 8] == ref[4, 4, 4]
    assert boxed[8, 8, 10] == 3.0 and boxed.sum() == pytest.approx(ref.sum())
    same = reference_agreement(boxed, ref, 10.0)
    assert same["correlation"] == pytest.approx(1.0) and same["fsc05_angst"] == 20.0
    noisy = reference_agreement(boxed + rng.normal(0, 1.0, boxed.shape), ref, 10.0)
    assert 0.05 < noisy["correlation"] < 0.9 and noisy["fsc05_angst"] > 20.0
    unrelated = reference_agreement(rng.normal(0, 1, boxed.shape), ref, 10.0)
    assert abs(unrelated["correlation"]) < 0.2
    # a copy turned 90° about z (x -> y) at (5, 20, 10) and one unturned at (25, 10, 10)
    rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    placed = place_back((20, 30, 40), ref, np.array([[5, 20, 10], [25, 10, 10]]),
                        np.stack([rz, np.eye(3)]))
    assert placed.sum() == pytest.approx(2 * ref.sum(), rel=1e-5)
    assert placed[10, 10, 27] == 3.0  # unturned: the mark 2 voxels along +x
    assert placed[10, 22, 5] == pytest.approx(3.0)  # turned: along +y
