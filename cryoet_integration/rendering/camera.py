"""Cameras: orthographic and perspective views orbiting the volume centre.

Coordinates are voxel units ``(x, y, z)`` with voxel centres at integer indices of the array
``[z, y, x]``. At azimuth 0 and elevation 0 the camera sits on the +z side looking down -z with
+x to the right and +y up (the usual tomogram slice view, y up). Azimuth turns the camera about
the volume's y axis, elevation raises it towards +y.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PROJECTIONS = ("ortho", "perspective")


@dataclasses.dataclass
class Camera:
    """A view of the volume.

    Attributes:
        width, height: output image size in pixels.
        azimuth, elevation: degrees.
        zoom: 1 fits the volume's bounding sphere to the shorter image side.
        projection: ``"ortho"`` or ``"perspective"``.
        distance: perspective eye distance from the centre, in bounding-sphere radii (> 1).
    """

    width: int = 512
    height: int = 512
    azimuth: float = 0.0
    elevation: float = 0.0
    zoom: float = 1.0
    projection: str = "ortho"
    distance: float = 3.0

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got '{self.projection}'")
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not self.zoom > 0:
            raise ValueError(f"zoom must be positive, got {self.zoom}")
        if not self.distance > 1.0:
            raise ValueError(f"perspective distance must exceed 1 radius, got {self.distance}")

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors ``right, up, back`` (x, y, z) of the camera; it looks along ``-back``."""
        az, el = np.radians(self.azimuth), np.radians(self.elevation)
        back = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        right = np.array([np.cos(az), 0.0, -np.sin(az)])
        up = np.cross(back, right)
        return right, up, back

    def geometry(self, shape_zyx: tuple[int, int, int]) -> ViewGeometry:
        """The rays of this camera for a volume of ``shape_zyx`` voxels."""
        nz, ny, nx = shape_zyx
        centre = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0, (nz - 1) / 2.0])
        radius = 0.5 * float(np.sqrt(nx * nx + ny * ny + nz * nz))
        right, up, back = self.basis()
        pixel = 2.0 * radius / (self.zoom * min(self.width, self.height))
        eye = centre + back * radius * self.distance if self.projection == "perspective" else None
        return ViewGeometry(int(self.width), int(self.height), centre, right, up, back, pixel, eye)


@dataclasses.dataclass
class ViewGeometry:
    """Rays of one view. ``pixel`` is the pixel size in voxels on the plane through ``centre``
    facing the camera; ``eye`` is the perspective centre (``None`` for orthographic)."""

    width: int
    height: int
    centre: np.ndarray
    right: np.ndarray
    up: np.ndarray
    back: np.ndarray
    pixel: float
    eye: np.ndarray | None

    def rays(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Origins and unit directions ``(..., 3)`` (x, y, z) of the rays through pixel centres
        at image column ``cols`` and row ``rows`` (row 0 at the top)."""
        du = (np.asarray(cols, dtype=np.float64) - (self.width - 1) / 2.0) * self.pixel
        dv = ((self.height - 1) / 2.0 - np.asarray(rows, dtype=np.float64)) * self.pixel
        on_plane = self.centre + du[..., None] * self.right + dv[..., None] * self.up
        if self.eye is None:
            direction = np.broadcast_to(-self.back, on_plane.shape)
            return on_plane, direction
        direction = on_plane - self.eye
        direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        return np.broadcast_to(self.eye, on_plane.shape), direction

    def main_direction(self) -> np.ndarray:
        """The viewing direction at the image centre (x, y, z), unit length."""
        return -self.back
