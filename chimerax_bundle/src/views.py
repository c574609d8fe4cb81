"""The ChimeraX camera expressed as the engine's camera, for the engine's CPU render.

The engine's :class:`cryoet_integration.rendering.Camera` orbits the volume centre in the
volume's voxel frame (azimuth about y, elevation towards +y, no roll, the volume centre at
the image centre). A ChimeraX view may also roll and pan: the CPU image is rendered for the
matching azimuth, elevation, zoom and projection, then rotated by the roll and shifted by
the pan, so it shows what the window shows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass
class EngineView:
    """A ChimeraX view of a volume in the engine's terms.

    Attributes:
        camera: the engine camera (azimuth, elevation, zoom, projection, distance).
        roll_deg: counter-clockwise image rotation from the engine's up to ChimeraX's up.
        shift_px: (right, down) pixel offset of the volume centre from the image centre.
    """

    camera: object
    roll_deg: float
    shift_px: tuple[float, float]


def engine_view(view, volume, width: int, height: int) -> EngineView:
    """The engine camera matching ChimeraX ``view`` (its current camera) for ``volume``.

    Args:
        view: ``session.main_view``.
        volume: the ChimeraX Volume the engine renders (its grid defines the voxel frame).
        width, height: image size in pixels.

    Raises:
        ValueError: a perspective camera inside the volume's bounding sphere (the engine's
            perspective camera needs the eye outside it).
    """
    from cryoet_integration.rendering import Camera

    cam = view.camera
    ijk_to_scene = volume.scene_position * volume.data.ijk_to_xyz_transform
    lin = np.asarray(ijk_to_scene.matrix)[:, :3]
    to_ijk = np.linalg.inv(lin)
    axes = np.asarray(cam.position.matrix)[:, :3]  # columns: camera right, up, back (scene)
    up = _unit(to_ijk @ axes[:, 1])
    back = _unit(to_ijk @ axes[:, 2])
    elevation = math.degrees(math.asin(float(np.clip(back[1], -1.0, 1.0))))
    azimuth = math.degrees(math.atan2(back[0], back[2]))
    engine = Camera(width, height, azimuth=azimuth, elevation=elevation)
    _, e_up, _ = engine.basis()
    # signed angle from the engine's up to ChimeraX's up about the axis towards the viewer
    roll = math.degrees(math.atan2(float(np.dot(np.cross(e_up, up), back)),
                                   float(np.dot(e_up, up))))

    nz, ny, nx = volume.data.size[::-1]
    centre_ijk = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    centre = ijk_to_scene * centre_ijk
    voxel = float(np.cbrt(abs(np.linalg.det(lin))))  # Å per voxel in the scene
    radius_vox = 0.5 * math.sqrt(nx * nx + ny * ny + nz * nz)
    origin = np.asarray(cam.position.origin())
    offset = centre - origin
    depth = float(np.dot(offset, -axes[:, 2]))
    lateral = (float(np.dot(offset, axes[:, 0])), float(np.dot(offset, axes[:, 1])))
    from chimerax.graphics.camera import OrthographicCamera

    if isinstance(cam, OrthographicCamera):
        pixel_scene = cam.field_width / width
        camera = dataclasses.replace(engine, projection="ortho")
    else:
        pixel_scene = 2.0 * depth * math.tan(math.radians(cam.field_of_view) / 2) / width
        distance = depth / (radius_vox * voxel)
        if not distance > 1.0:
            raise ValueError("the camera is inside the volume's bounding sphere; the CPU "
                             "render needs it outside (zoom out or use 'camera ortho')")
        camera = dataclasses.replace(engine, projection="perspective", distance=distance)
    pixel_vox = pixel_scene / voxel
    camera.zoom = 2.0 * radius_vox / (pixel_vox * min(width, height))
    shift = (lateral[0] / pixel_scene, -lateral[1] / pixel_scene)
    return EngineView(camera, roll, shift)


def cpu_image(scene, ev: EngineView) -> np.ndarray:
    """``[H, W, 3]`` float RGB in [0, 1]: the engine's render of ``scene`` for ``ev``,
    rotated by its roll and shifted by its pan (uncovered pixels get the background)."""
    from scipy import ndimage

    rgb = scene.render_float(ev.camera, "ours")
    if abs(ev.roll_deg) < 1e-3 and max(abs(s) for s in ev.shift_px) < 1e-3:
        return rgb
    bg = np.asarray(scene.settings.background, np.float32)
    h, w = rgb.shape[:2]
    # ChimeraX's camera axes are the engine's turned by the roll (counter-clockwise), so a
    # window pixel (x right, y up from the volume centre) is the engine pixel turned back
    a = math.radians(ev.roll_deg)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    x = cols - (w - 1) / 2 - ev.shift_px[0]
    y = (h - 1) / 2 - rows + ev.shift_px[1]
    xe = math.cos(a) * x - math.sin(a) * y
    ye = math.sin(a) * x + math.cos(a) * y
    src = np.array([(h - 1) / 2 - ye, xe + (w - 1) / 2])
    out = np.empty_like(rgb)
    for ch in range(3):
        out[..., ch] = ndimage.map_coordinates(rgb[..., ch], src, order=1, mode="constant",
                                               cval=float(bg[ch]))
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.linalg.norm(v))
