"""Front-to-back compositing and cameras, on hand-made premultiplied RGBA volumes."""

import numpy as np
import pytest

from cryoet_integration.rendering.camera import Camera
from cryoet_integration.rendering.composite import OrientedStack, march


def _stack(shape=(20, 24, 24)):
    return np.zeros((4,) + shape, np.float32)


def _put(data, region, rgb, alpha):
    for ch in range(3):
        data[(ch,) + region] = rgb[ch] * alpha
    data[(3,) + region] = alpha


def test_opaque_slab_hides_what_is_behind():
    data = _stack()
    _put(data, np.s_[14:17, 4:20, 4:20], (1, 0, 0), 1.0)  # red slab, near the +z camera
    _put(data, np.s_[3:8, 8:16, 8:16], (0, 1, 0), 1.0)  # green block behind it
    stack = OrientedStack(data)
    front = march(stack, Camera(32, 32).geometry(data.shape[1:]), backend="numpy")
    c = front[:, 16, 16]
    assert c[0] == pytest.approx(1.0, abs=1e-3) and c[1] < 1e-4 and c[3] == pytest.approx(1, 1e-3)
    back = march(stack, Camera(32, 32, azimuth=180).geometry(data.shape[1:]), backend="numpy")
    assert back[1, 16, 16] == pytest.approx(1.0, abs=1e-3) and back[0, 16, 16] < 1e-4


def test_uniform_fog_transmittance_matches_beer_lambert():
    data = _stack((10, 16, 16))
    _put(data, np.s_[:, :, :], (1, 1, 1), 0.2)
    out = march(OrientedStack(data), Camera(16, 16, zoom=2.0).geometry((10, 16, 16)),
                backend="numpy")
    # 10 samples one voxel apart along z, each of opacity 0.2
    assert out[3, 8, 8] == pytest.approx(1 - 0.8 ** 10, rel=1e-4)
    assert out[0, 8, 8] == pytest.approx(1 - 0.8 ** 10, rel=1e-4)  # white emission
    # three samples per slice interval, each over a third of a voxel: the same opacity per
    # unit length, except that the first interval ramps up linearly from the empty outside
    finer = march(OrientedStack(data), Camera(16, 16, zoom=2.0).geometry((10, 16, 16)),
                  backend="numpy", substeps=3)
    first = ((1 - 0.2 / 3) * (1 - 0.4 / 3) * 0.8) ** (1 / 3)
    assert finer[3, 8, 8] == pytest.approx(1 - 0.8 ** 9 * first, rel=1e-4)


def test_oblique_rays_are_corrected_for_step_length():
    data = _stack((12, 40, 40))
    _put(data, np.s_[:, :, :], (1, 1, 1), 0.1)
    cam = Camera(40, 40, azimuth=30.0, zoom=3.0)
    out = march(OrientedStack(data), cam.geometry(data.shape[1:]), backend="numpy")
    # each slice is crossed over 1/cos(30 deg) voxels of path
    expected = 1 - 0.9 ** (12 / np.cos(np.radians(30)))
    assert out[3, 20, 20] == pytest.approx(expected, rel=2e-3)


def test_maximum_intensity_projection():
    vol = np.zeros((1, 8, 9, 9), np.float32)
    vol[0, 2, 4, 4], vol[0, 6, 4, 4], vol[0, 3, 1, 7] = 0.4, 0.9, 0.5
    zoom = np.sqrt(8 ** 2 + 9 ** 2 + 9 ** 2) / 9  # one pixel per voxel
    out = march(OrientedStack(vol), Camera(9, 9, zoom=zoom).geometry((8, 9, 9)),
                mode="max", backend="numpy")
    assert out[0, 4, 4] == pytest.approx(0.9, abs=1e-5)
    assert out[0, 7, 7] == pytest.approx(0.5, abs=1e-5)  # y = 1 is near the bottom (y up)


def test_camera_basis_is_right_handed():
    right, up, back = Camera(azimuth=90).basis()
    np.testing.assert_allclose(back, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(np.cross(right, up), back, atol=1e-12)
    _, up, back = Camera(elevation=90).basis()
    np.testing.assert_allclose(back, [0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError):
        Camera(projection="fisheye")


def test_perspective_magnifies_near_objects():
    data = _stack((30, 30, 30))
    _put(data, np.s_[26:29, 4:8, 22:26], (1, 1, 1), 1.0)  # near the camera, off-centre (+x)
    stack = OrientedStack(data)

    def x_centroid(projection):
        img = march(stack, Camera(64, 64, projection=projection).geometry((30, 30, 30)),
                    backend="numpy")[3]
        cols = np.arange(64)[None, :]
        return float((img * cols).sum() / img.sum())

    assert x_centroid("perspective") > x_centroid("ortho") + 1.0


def test_numpy_and_torch_agree():
    pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    data = rng.random((4, 14, 18, 22)).astype(np.float32)
    data[:3] *= data[3]
    data[:, 9:, 4:] = 0  # empty space, which the numpy path skips
    data[:, :, :, :6] = 0
    stack = OrientedStack(data)
    for cam in (Camera(40, 30, azimuth=35, elevation=20),
                Camera(40, 30, azimuth=-120, elevation=50, projection="perspective", zoom=1.4)):
        geom = cam.geometry(data.shape[1:])
        for mode in ("composite", "max"):
            for substeps in (1, 2):
                a = march(stack, geom, mode, backend="numpy", substeps=substeps)
                b = march(stack, geom, mode, backend="torch", substeps=substeps)
                np.testing.assert_allclose(a, b, atol=2e-4)


@pytest.mark.parametrize("projection", ["ortho", "perspective"])
def test_points_land_where_the_camera_projects_them(projection):
    shape = (40, 48, 56)
    point = np.array([40.0, 12.0, 30.0])  # x, y, z voxels
    x, y, z = point.astype(int)
    data = np.zeros((4,) + shape, np.float32)
    data[:, z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = 1.0
    for az, el in ((30, 20), (-70, 40), (120, -30)):
        geom = Camera(200, 160, az, el, zoom=1.2, projection=projection).geometry(shape)
        img = march(OrientedStack(data), geom, backend="numpy")[3]
        rows, cols = np.indices(img.shape)
        got = ((img * cols).sum() / img.sum(), (img * rows).sum() / img.sum())
        on_plane = point
        if geom.eye is not None:  # where the eye-to-point ray meets the centre plane
            v = point - geom.eye
            t = np.dot(geom.centre - geom.eye, geom.back) / np.dot(v, geom.back)
            on_plane = geom.eye + t * v
        rel = on_plane - geom.centre
        want = (np.dot(rel, geom.right) / geom.pixel + (geom.width - 1) / 2,
                (geom.height - 1) / 2 - np.dot(rel, geom.up) / geom.pixel)
        np.testing.assert_allclose(got, want, atol=0.5)
