"""Subtomograms: extraction around picks, averaging under orientations with missing-wedge
weighting, and Fourier shell correlation (``cryovis extract``, ``cryovis average``).

Arrays are ``[z, y, x]``; positions ``x, y, z`` in voxels of the tomogram; orientations are
rotation matrices mapping the reference into the tomogram (``formats.orientations``).
"""
