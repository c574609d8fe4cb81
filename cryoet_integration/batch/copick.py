"""A copick project as the input and output of a batch, through copick's own API.

The inputs are the runs' tomograms of one voxel spacing and type (OME-Zarr, read lazily by
the single commands, named by their run); each finished tomogram's results are written
back into the project under ``--copick-user`` / ``--copick-session``: picks per pickable
object (locations in Å, orientations as copick's 4x4 transformations) and segmentations
(one 0/1 label volume per class at the tomogram's voxel spacing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CryovisError


@dataclass
class CopickProject:
    """A copick project opened for a batch: where results go and which tomograms are read."""

    config: Path
    root: Any
    user: str
    session: str
    voxel_spacing: float | None
    tomo_type: str | None

    def inputs(self) -> list[tuple[str, str]]:
        """``(tomogram .zarr folder, run name)`` of every run holding the chosen tomogram
        (voxel spacing: the given one, else the run's finest; type: the given one, else the
        first in name order)."""
        found = []
        for run in self.root.runs:
            chosen = self.tomogram(run)
            if chosen is None:
                continue
            tomogram, _ = chosen
            store = tomogram.zarr()
            path = getattr(store, "root", None) or getattr(store, "path", None)
            if path is None or not Path(str(path)).is_dir():
                raise CryovisError(f"{self.config}: run {run.name}'s tomogram is not on a "
                                   "local filesystem (copy the project locally first)")
            found.append((str(path), run.name))
        if not found:
            raise CryovisError(f"{self.config}: no run holds a tomogram"
                               + (f" of type {self.tomo_type}" if self.tomo_type else "")
                               + (f" at {self.voxel_spacing:g} Å" if self.voxel_spacing
                                  else ""))
        return found

    def tomogram(self, run: Any) -> tuple[Any, float] | None:
        """The run's tomogram chosen by ``voxel_spacing`` and ``tomo_type`` with its voxel
        spacing (Å), or None."""
        spacings = sorted(run.voxel_spacings, key=lambda vs: vs.voxel_size)
        if self.voxel_spacing is not None:
            spacings = [vs for vs in spacings
                        if abs(vs.voxel_size - self.voxel_spacing) < 1e-3 * self.voxel_spacing]
        for vs in spacings:
            tomograms = sorted(vs.tomograms, key=lambda t: t.tomo_type)
            if self.tomo_type is not None:
                tomograms = [t for t in tomograms if t.tomo_type == self.tomo_type]
            if tomograms:
                return tomograms[0], float(vs.voxel_size)
        return None

    def write_back(self, command: str, run_name: str, summary: dict[str, Any]) -> list[str]:
        """Store one finished tomogram's outputs (the single command's JSON ``summary``) in
        the project; returns what was written (``picks <object> (n)``, ``segmentation
        <class>``)."""
        run = self.root.get_run(run_name)
        _, voxel_size = self.tomogram(run)
        outputs = summary.get("outputs") or {}
        if command == "pick":
            return [w for path in outputs if Path(path).suffix == ".csv"
                    for w in self._picks(run, path)]
        if command == "segment":
            return [self._segmentation(run, name, path, voxel_size)
                    for name, path in outputs.items()]
        return []

    def _picks(self, run: Any, path: str) -> list[str]:
        from copick.util.escape import sanitize_name

        from formats import orientations, positions_voxels, read_particles

        table = read_particles(path)
        known = {o.name for o in self.root.pickable_objects}
        written = []
        for cls, rows in table.groupby(table["class"].astype(str), sort=True):
            # copick names allow no underscores: our random_shape is its random-shape.
            name = sanitize_name(cls, suppress_warnings=True)
            if name not in known:
                raise CryovisError(f"{path}: class '{cls}' is not a pickable object of "
                                   f"{self.config} ({', '.join(sorted(known))})")
            rows = rows.reset_index(drop=True)
            angst = positions_voxels(rows) * rows["voxel_size"].to_numpy(float)[:, None]
            transforms = np.broadcast_to(np.eye(4), (len(rows), 4, 4)).copy()
            transforms[:, :3, :3] = orientations(rows)
            scores = rows["score"].to_numpy(float)
            picks = run.new_picks(name, self.session, self.user, exist_ok=True)
            picks.from_numpy(angst, transforms, scores=np.where(np.isfinite(scores),
                                                                  scores, 1.0))
            picks.store()
            written.append(f"picks {name} ({len(rows)})")
        return written

    def _segmentation(self, run: Any, name: str, path: str, voxel_size: float) -> str:
        from formats import read_volume

        volume = read_volume(path)
        data = np.asarray(volume.data)
        # Probability maps become masks at 0.5; masks and labels (integers) are kept.
        mask = (data > 0.5) if data.dtype.kind == "f" else data
        segmentation = run.new_segmentation(voxel_size, name, self.session, False,
                                            self.user, exist_ok=True)
        segmentation.from_numpy(mask.astype(np.uint8))
        return f"segmentation {name}"


def open_copick(config: str | Path, user: str, session: str, voxel_spacing: float | None,
                tomo_type: str | None) -> CopickProject:
    """Open the copick project of the configuration file ``config``."""
    from formats import open_copick_project

    return CopickProject(Path(config), open_copick_project(config), user, session,
                         voxel_spacing, tomo_type)
