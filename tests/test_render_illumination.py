"""Ambient occlusion and soft shadows on simple solids."""

import numpy as np
import pytest

from cryoet_integration.rendering.illumination import (
    ao_kernel,
    illumination,
    shadow_kernel,
    unit,
)


def test_kernels_are_normalised():
    up = unit((0, 0, 1))
    assert ao_kernel(4, 2, up).sum() == pytest.approx(1.0)
    k = shadow_kernel(10, 20, up)
    # every distance shell sums to its linear fade weight, and the cone points to +z
    assert k.sum() == pytest.approx(sum(1 - s / 11 for s in range(1, 11)), rel=1e-6)
    assert k[:10].sum() == 0  # nothing below the voxel (z < 0 half of the kernel)


def test_ambient_occlusion_darkens_a_cavity():
    vol = np.zeros((32, 40, 40), np.float32)
    vol[:20] = 1.0  # solid below z = 20, flat top face
    vol[12:20, 18:23, 18:23] = 0.0  # a pit 5 voxels wide, 8 deep
    lao, _ = illumination(vol, light_dir=(0, 0, 1), ao_strength=1.0, shadow_strength=0.0)
    flat = lao[19, 20, 4]  # top face far from the pit
    pit = lao[11, 20, 20]  # pit floor
    assert pit < flat - 0.1


def test_shadow_falls_away_from_the_light():
    vol = np.zeros((30, 48, 48), np.float32)
    vol[:3] = 1.0  # floor
    vol[3:15, 20:28, 20:28] = 1.0  # a block standing on it
    light = (1.0, 0.0, 1.0)  # up and towards +x
    _, ssc = illumination(vol, light_dir=light, ao_strength=0.0, shadow_strength=1.0)
    away = ssc[2, 24, 14]  # floor on the -x side of the block
    towards = ssc[2, 24, 34]  # floor on the +x side, same distance from the block
    assert away < towards - 0.2
    assert ssc[2, 24, 44] > 0.95  # open floor is lit


def test_strengths_are_checked():
    with pytest.raises(ValueError, match="ao_strength"):
        illumination(np.zeros((4, 4, 4), np.float32), ao_strength=1.5)
    with pytest.raises(ValueError, match="light direction"):
        unit((0, 0, 0))
