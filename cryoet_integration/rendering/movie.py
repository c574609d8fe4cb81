"""Turntable movies: a full turn of azimuth, written as MP4 (ffmpeg) or animated GIF."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .camera import Camera

MOVIE_SUFFIXES = (".mp4", ".gif")


def turntable_cameras(camera: Camera, frames: int) -> Iterator[Camera]:
    """``frames`` cameras a full turn apart in azimuth, starting at ``camera.azimuth``."""
    if frames < 2:
        raise ValueError(f"a turntable needs at least 2 frames, got {frames}")
    for i in range(frames):
        yield dataclasses.replace(camera, azimuth=camera.azimuth + 360.0 * i / frames)


def write_movie(path: str | Path, frames: Iterator[np.ndarray], fps: float = 24.0,
                overwrite: bool = False,
                progress: Callable[[int], None] | None = None) -> int:
    """Write uint8 ``[H, W, 3]`` frames to ``.mp4`` (H.264 via imageio-ffmpeg) or ``.gif``.

    The file appears only when complete (temporary file + rename). Returns the frame count.
    """
    import imageio.v2 as imageio

    from formats import atomic_path

    suffix = Path(path).suffix.lower()
    if suffix not in MOVIE_SUFFIXES:
        raise ValueError(f"{path}: movie must be .mp4 or .gif")
    count = 0
    with atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".mp4":
            writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264",
                                        quality=8, pixelformat="yuv420p", macro_block_size=2)
        else:
            writer = imageio.get_writer(tmp, format="GIF", duration=1000.0 / fps, loop=0)
        with writer:
            for frame in frames:
                writer.append_data(_even(frame) if suffix == ".mp4" else frame)
                count += 1
                if progress is not None:
                    progress(count)
    return count


def _even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where needed: H.264 in yuv420p needs even sizes."""
    pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
    return np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame
