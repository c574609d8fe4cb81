"""Membrane instances and surface fitting on analytic shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cryoet_integration.evaluate.segmentation import binary_scores
from cryoet_integration.membranes import fit_membranes, membrane_mask
from cryoet_integration.membranes.ellipsoid import fit_ellipse, fit_ellipsoid
from cryoet_integration.membranes.gp import fit_implicit_surface, thin_plate_kernel
from cryoet_integration.membranes.instances import (
    membrane_instances,
    membrane_like,
    thickness_voxels,
)
from cryoet_integration.membranes.meshes import mean_curvature
from cryoet_integration.membranes.orientation import normal_matrices
from cryoet_integration.membranes.pipeline import MembraneInputError
from cryoet_integration.membranes.surfaces import fit_height_field


def shell_mask(shape, centre_xyz, radii, half=2.0, rot=None):
    """Voxels within ``half`` voxels (first-order distance) of an ellipsoid; and the unit
    outward normal's z component at each voxel, ``[z, y, x]``."""
    zz, yy, xx = np.indices(shape, dtype=float)
    p = np.stack([xx, yy, zz], -1) - centre_xyz
    rot = np.eye(3) if rot is None else rot
    q = p @ rot / radii
    r = np.linalg.norm(q, axis=-1)
    grad = (q / radii / np.maximum(r, 1e-9)[..., None]) @ rot.T
    g = np.linalg.norm(grad, axis=-1)
    dist = (r - 1) / np.maximum(g, 1e-12)
    nz = grad[..., 2] / np.maximum(g, 1e-12)
    return np.abs(dist) <= half, nz


def test_thin_plate_kernels_fall_from_r_to_the_d_to_zero():
    for dim in (2, 3):
        k = thin_plate_kernel(np.array([0.0, 5.0, 10.0]), 10.0, dim)
        assert k[0] == pytest.approx(10.0 ** dim)
        assert k[2] == pytest.approx(0.0, abs=1e-9)
        assert k[0] > k[1] > k[2]


def test_ellipsoid_fit_of_a_sphere_and_of_a_capless_rotated_ellipsoid():
    mask, _ = shell_mask((64, 64, 64), np.array([31.0, 33.0, 30.0]), np.full(3, 15.0))
    pts = np.argwhere(mask)[:, ::-1].astype(float)
    ell, rms = fit_ellipsoid(pts)
    assert np.allclose(ell.centre, [31, 33, 30], atol=0.3)
    assert np.allclose(ell.radii, 15, atol=0.3)
    assert rms < 1.5  # the shell is 5 voxels thick
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("zyx", [30, 10, 5], degrees=True).as_matrix()
    radii = np.array([20.0, 14.0, 11.0])
    mask, nz = shell_mask((64, 80, 80), np.array([40.0, 40.0, 32.0]), radii, rot=rot)
    mask &= np.abs(nz) < np.cos(np.deg2rad(35))  # the missing wedge's caps are gone
    ell, _ = fit_ellipsoid(np.argwhere(mask)[:, ::-1].astype(float))
    assert np.allclose(np.sort(ell.radii), np.sort(radii), atol=0.8)
    assert np.allclose(ell.centre, [40, 40, 32], atol=0.5)


def ellipse_points(gap_deg=(60, 150)):
    t = np.deg2rad(np.arange(0, 360, 2.0))
    keep = ~((t >= np.deg2rad(gap_deg[0])) & (t <= np.deg2rad(gap_deg[1])))
    c, a, b, th = np.array([40.0, 35.0]), 18.0, 11.0, np.deg2rad(20)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    xy = c + (np.column_stack([a * np.cos(t), b * np.sin(t)])) @ rot.T
    return xy[keep], xy[~keep], (c, a, b, th)


def test_ellipse_with_a_gap_fits_and_the_gp_closes_it_with_more_uncertainty_there():
    seen, gap, (c, a, b, th) = ellipse_points()
    centre, ab, theta = fit_ellipse(seen)
    assert np.allclose(centre, c, atol=0.1) and np.allclose(sorted(ab), [b, a], atol=0.1)
    axes = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    surf = fit_implicit_surface(seen, enclosing=(centre, ab, axes))
    # the zero level set crosses the quarter-turn gap within two voxels of the true ellipse
    assert np.abs(surf.distance(gap)).max() < 2.0
    assert np.abs(surf.distance(seen)).max() < 0.2
    _, std_gap = surf.gp.mean_and_std(gap[len(gap) // 3: 2 * len(gap) // 3])
    _, std_seen = surf.gp.mean_and_std(seen + 0.3)
    assert std_gap.mean() > 2.5 * std_seen.mean()


def test_tilted_plane_with_a_wedge_gap_is_completed_by_the_height_field():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 60, size=(900, 2))
    in_gap = (xy[:, 0] > 22) & (xy[:, 0] < 38)
    z = 0.4 * xy[:, 0] - 0.2 * xy[:, 1] + 20
    pts = np.column_stack([xy, z])
    sheet = fit_height_field(pts[~in_gap])
    assert sheet.distance(pts[in_gap]).max() < 0.3
    uv_gap = sheet.local(pts[in_gap])[:, :2]
    uv_seen = sheet.local(pts[~in_gap][:200] + 0.3)[:, :2]
    assert sheet.gp.mean_and_std(uv_gap)[1].mean() > 3 * sheet.gp.mean_and_std(uv_seen)[1].mean()


def test_instances_merge_close_fragments_and_drop_blobs():
    shape = (48, 96, 96)
    a, _ = shell_mask(shape, np.array([25.0, 25.0, 24.0]), np.full(3, 14.0))
    b, _ = shell_mask(shape, np.array([68.0, 66.0, 24.0]), np.full(3, 15.0))
    a[:, :, 25] = False  # cut one vesicle into two fragments one voxel apart
    mask = a | b
    zz, yy, xx = np.indices(shape)
    mask |= (xx - 70) ** 2 + (yy - 20) ** 2 + (zz - 24) ** 2 <= 16  # a solid blob
    labels, info = membrane_instances(mask)
    assert info["instances"] == 2 and info["dropped_small"] == 1
    ball = (xx - 48) ** 2 + (yy - 48) ** 2 + (zz - 24) ** 2 <= 100
    assert not membrane_like(ball, 5.0) and membrane_like(b, 5.0)
    assert labels[24, 25, 11] == labels[24, 25, 39] != 0
    assert 3.0 < thickness_voxels(a | b) < 5.0


def test_capless_vesicle_is_closed_with_the_right_size_and_gaps_more_uncertain():
    shape = (64, 72, 72)
    centre, radius = np.array([36.0, 35.0, 32.0]), 17.0
    truth, nz = shell_mask(shape, centre, np.full(3, radius))
    broken = truth & (np.abs(nz) < np.cos(np.deg2rad(50)))
    result = fit_membranes(broken, voxel_size=10.0)
    assert result.info["instances"] == 1
    row = result.table[0]
    assert row["closed"] and row["model"] in ("ellipsoid", "implicit")
    before = binary_scores(truth, broken, surface=False)["dice"]
    after = binary_scores(truth, result.mask.astype(bool), surface=False)["dice"]
    assert after > before + 0.07 and after > 0.85
    r_a = radius * 10
    assert row["area_angst2"] == pytest.approx(4 * np.pi * r_a ** 2, rel=0.08)
    assert row["volume_angst3"] == pytest.approx(4 / 3 * np.pi * r_a ** 3, rel=0.1)
    assert row["mean_curvature_per_angst"] == pytest.approx(1 / r_a, rel=0.15)
    caps = result.mask.astype(bool) & (np.abs(nz) > np.cos(np.deg2rad(60)))
    band = result.mask.astype(bool) & (np.abs(nz) < np.cos(np.deg2rad(50)))
    assert result.uncertainty[caps].mean() > 2 * result.uncertainty[band].mean()


def test_mean_curvature_of_a_sphere_mesh():
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=4, radius=50.0)
    assert np.nanmean(mean_curvature(mesh)) == pytest.approx(1 / 50, rel=0.02)


def test_normal_matrices_map_z_onto_the_normal():
    n = np.random.default_rng(1).normal(size=(50, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    assert np.allclose(normal_matrices(n)[:, :, 2], n, atol=1e-9)


def test_membrane_mask_refuses_a_threshold_that_separates_nothing():
    prob = np.random.default_rng(0).uniform(0, 0.4, size=(8, 8, 8)).astype(np.float32)
    with pytest.raises(MembraneInputError, match="separates nothing"):
        membrane_mask(prob)
    assert membrane_mask(prob, 0.2)[0].any()
    assert not membrane_mask(np.zeros((4, 4, 4), np.int8))[0].any()
