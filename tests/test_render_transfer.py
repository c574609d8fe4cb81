"""Ramp transfer functions and Algorithm 1 thresholds against hand-computed values."""

import numpy as np
import pytest

from cryoet_integration.rendering.colors import default_colors, parse_color, resolve_colors
from cryoet_integration.rendering.transfer import (
    estimate_threshold,
    isodata_level,
    quantize,
    ramp,
    slice_threshold,
)


def test_ramp_matches_equation_1():
    # r = clamp((p - a) / (1 - a), 0, 1) with a = 0.5
    np.testing.assert_allclose(ramp(np.array([0.2, 0.5, 0.75, 1.0]), 0.5), [0, 0, 0.5, 1])
    # a raw-data ramp with both limits
    np.testing.assert_allclose(ramp(np.array([0.1, 0.4, 0.6]), 0.2, 0.6), [0, 0.5, 1],
                               atol=1e-6)
    with pytest.raises(ValueError):
        ramp(np.zeros(3), 0.5, 0.5)


def test_isodata_two_clusters_by_hand():
    # 3 pixels at level 10, 1 at level 200: mean 57.5 -> T0 = 58; means 10 and 200 -> 105;
    # the split is unchanged -> stays 105.
    counts = np.zeros(256)
    counts[10], counts[200] = 3, 1
    assert isodata_level(counts) == 105


def test_isodata_rounds_half_up_and_flat_is_undefined():
    counts = np.zeros(256)
    counts[0], counts[255] = 2, 2  # mean 127.5 -> 128; (0 + 255) / 2 = 127.5 -> 128
    assert isodata_level(counts) == 128
    flat = np.zeros(256)
    flat[40] = 9
    assert isodata_level(flat) is None


def test_slice_threshold_quantizes_probabilities():
    assert quantize(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    image = np.array([[10, 10], [10, 200]]) / 255.0
    assert slice_threshold(image) == pytest.approx(105 / 255)


def test_volume_threshold_is_mean_over_non_flat_slices():
    a = np.array([[10, 10], [10, 200]]) / 255.0
    b = np.array([[0, 0], [1, 1]], dtype=float)
    flat = np.full((2, 2), 0.3)
    est = estimate_threshold(np.stack([a, b, flat]))
    assert est.value == pytest.approx((105 / 255 + 128 / 255) / 2)
    assert np.isnan(est.per_slice[2])
    assert estimate_threshold(np.zeros((2, 3, 3)), fallback=0.4).value == 0.4


def test_colours_parse_names_and_hex():
    assert parse_color("#ff8000") == pytest.approx((1.0, 128 / 255, 0.0))
    assert parse_color("skyblue") == pytest.approx((0x56 / 255, 0xB4 / 255, 0xE9 / 255))
    assert parse_color("White") == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown colour"):
        parse_color("notacolour")
    with pytest.raises(ValueError, match="2 colours given for 3"):
        resolve_colors(["red", "blue"], 3)
    defaults = default_colors(4)
    assert len(set(defaults)) == 4
