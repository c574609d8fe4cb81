"""Preprocessing: normalisation, Fourier rescaling, amplitude matching, deconvolution,
low-pass."""

import numpy as np
import pytest

pytest.importorskip("scipy")

from scipy import ndimage  # noqa: E402

from cryoet_integration.preprocess import (  # noqa: E402
    ctf_1d,
    lowpass_filter,
    match_amplitude_spectrum,
    radial_amplitude,
    radial_frequency,
    rescale_to_voxel_size,
    rescale_volume,
    rescaled_shape,
    robust_normalize,
    wiener_deconvolve,
    wiener_filter_1d,
)
from formats import read_volume, write_volume  # noqa: E402


def _noise(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_robust_normalize_ignores_outliers():
    data = _noise((20, 20, 20)) * 3 + 5
    data[0, 0, :10] = 1e6
    out = robust_normalize(data)
    assert out.dtype == np.float32
    assert abs(np.median(out)) < 0.05
    assert 0.9 < np.median(np.abs(out)) * 1.4826 < 1.1


@pytest.mark.parametrize("shape", [(16, 20, 17), (15, 22, 18)])
@pytest.mark.parametrize("coarse, fine", [(13.0, 10.0), (20.0, 10.0), (14.6, 10.0)])
def test_rescale_round_trips(shape, coarse, fine):
    x_coarse = _noise(rescaled_shape(shape, fine, coarse))
    # upsampling creates band-limited data; downsampling it must give the original back
    x_fine = rescale_to_voxel_size(x_coarse, coarse, fine)
    np.testing.assert_allclose(rescale_to_voxel_size(x_fine, fine, coarse), x_coarse,
                               atol=1e-5)
    # ...and down then up on that band-limited data is exact too
    down = rescale_to_voxel_size(x_fine, fine, coarse)
    np.testing.assert_allclose(rescale_to_voxel_size(down, coarse, fine), x_fine, atol=1e-5)
    assert abs(x_fine.mean() - x_coarse.mean()) < 1e-5


def test_rescale_smooth_object_keeps_shape_and_intensity():
    z, y, x = np.mgrid[:32, :32, :32]
    blob = np.exp(-((z - 16) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) / (2 * 4.0 ** 2))
    half = rescale_to_voxel_size(blob, 10.0, 20.0)
    assert half.shape == (16, 16, 16)
    assert abs(half.max() - 1.0) < 0.05 and np.unravel_index(half.argmax(), half.shape) == (
        8, 8, 8)


def test_rescale_volume_through_mrc(tmp_path):
    path = tmp_path / "tomo.mrc"
    write_volume(path, _noise((12, 16, 20)), voxel_size=7.0)
    out = rescale_volume(read_volume(path), 14.0)
    assert out.data.shape == (6, 8, 10) and out.voxel_size == pytest.approx(14.0)
    write_volume(tmp_path / "small.mrc", out)
    assert read_volume(tmp_path / "small.mrc").voxel_size == pytest.approx(14.0, rel=1e-4)
    with pytest.raises(ValueError, match="positive"):
        rescale_to_voxel_size(np.zeros((4, 4, 4)), 0.0, 10.0)


def test_amplitude_matching_matches_radial_spectrum():
    reference = ndimage.gaussian_filter(_noise((40, 40, 40), 1), 1.5) * 7
    data = _noise((32, 36, 30), 2)
    out = match_amplitude_spectrum(data, reference)
    freq, got = radial_amplitude(out)
    ref_freq, ref_amp = radial_amplitude(reference)
    want = np.interp(freq, ref_freq, ref_amp)
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-3)
    before = radial_amplitude(data)[1]
    assert np.abs(before[1:] / want[1:] - 1).max() > 1.0  # it really changed
    # phases untouched: the result correlates with a low-passed copy of the input
    assert np.corrcoef(out.ravel(), ndimage.gaussian_filter(data, 1.5).ravel())[0, 1] > 0.9


def test_ctf_and_wiener_filter_shape():
    lam_check = ctf_1d(np.array([0.0]), defocus_um=3.0)
    assert lam_check[0] == pytest.approx(0.07)
    f, gain = wiener_filter_1d(10.0, defocus_um=3.0)
    assert gain[0] == 0 and gain.max() > 1  # high-pass at DC, boosts low frequencies
    # first CTF zero (chi ~ pi) of 300 kV (lambda 0.0197 Å), 3 um underfocus is just below
    # 1 / sqrt(lambda * dz) = 0.0411 1/Å
    k = np.linspace(0.001, 0.05, 5000)
    ctf = ctf_1d(k, defocus_um=3.0)
    first_zero = k[np.argmax(np.diff(np.sign(ctf)) != 0)]
    assert 0.039 < first_zero < 0.0411


def test_wiener_deconvolution_restores_low_frequencies():
    rng = np.random.default_rng(3)
    truth = ndimage.gaussian_filter(rng.normal(size=(48, 48, 48)), 2.0).astype(np.float32)
    voxel, defocus = 10.0, 4.0
    radius = radial_frequency(truth.shape)
    ctf = ctf_1d(radius / voxel, defocus).astype(np.float32)
    blurred = np.fft.irfftn(np.fft.rfftn(truth) * ctf, s=truth.shape, axes=(0, 1, 2))
    noisy = blurred + 0.02 * truth.std() * rng.normal(size=truth.shape)
    restored = wiener_deconvolve(noisy, voxel, defocus, strength=1.0, snr_falloff=0.3)
    corr = [np.corrcoef(truth.ravel(), v.ravel())[0, 1] for v in (noisy, restored)]
    assert corr[1] > corr[0] + 0.2 and corr[1] > 0.7


def test_lowpass_soft_edge():
    data = _noise((32, 32, 32))
    out = lowpass_filter(data, resolution_angst=40.0, voxel_size_angst=10.0, edge_width=0.05)
    power = np.abs(np.fft.rfftn(out))
    r = np.broadcast_to(radial_frequency(data.shape), power.shape)
    assert power[r > 0.25 + 0.025].max() < 1e-3
    np.testing.assert_allclose(np.fft.rfftn(out)[r < 0.25 - 0.025],
                               np.fft.rfftn(data)[r < 0.25 - 0.025], rtol=1e-3, atol=1e-3)
    assert out.dtype == np.float32
