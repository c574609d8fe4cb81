"""Membrane instances, fitted surfaces, meshes and orientation priors (``cryovis membranes``).

The pipeline of the membrane paper (002, sections 4-5) on a segmentation's membrane mask:
``instances`` (connected components, size/shape filters, distance-based 3D region
merging), ``ellipsoid`` (per-slice ellipses, the constrained 3D ellipsoid fit), ``gp``
(Gaussian processes with thin-plate kernels: closed implicit surfaces with interior and
exterior anchors, open height fields), ``surfaces`` (per-instance model choice by residual,
the fitted field and its uncertainty), ``meshes`` (marching cubes, trimesh, area, volume,
curvature, surface points), ``orientation`` (membrane normals as particle priors) and
``pipeline`` (the whole step and its outputs).
"""

from .pipeline import MembraneResult, fit_membranes, membrane_mask, write_result

__all__ = ["MembraneResult", "fit_membranes", "membrane_mask", "write_result"]
