"""Augmentation: image/label alignment, ignore label, determinism, Fourier augmentations."""

import numpy as np
import pytest

pytest.importorskip("scipy")

from scipy import ndimage  # noqa: E402

from cryoet_integration.segmentation.augment import (  # noqa: E402
    DEFAULT_CONFIG,
    Augmenter,
    apply_missing_wedge,
    fourier_amplitude_walk,
    wedge_mask,
)

TRANSFORMS = [name for name, opts in DEFAULT_CONFIG.items() if "p" in opts]
GEOMETRIC = ["rot90", "flip", "swap", "rotate", "zoom"]


def _only(names, **extra):
    config = {name: {"p": 1.0 if name in names else 0.0} for name in TRANSFORMS}
    for name, opts in extra.items():
        config.setdefault(name, {}).update(opts)
    return config


def _field(shape=(20, 24, 28), seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 2).astype(np.float32) * 10


def _label_of(image):
    return np.where(image > 0.5, 1, np.where(image < -1.0, -1, 0)).astype(np.int64)


@pytest.mark.parametrize("swap_z", [False, True])
def test_geometry_keeps_image_and_label_aligned(swap_z):
    image = _field()
    label = _label_of(image)
    aug = Augmenter(_only(GEOMETRIC, image_order={"order": 0}, swap={"swap_z": swap_z}),
                    seed=3)
    for _ in range(6):
        out_image, out_label = aug(image, label)
        assert out_label.dtype == label.dtype
        np.testing.assert_array_equal(_label_of(out_image), out_label)
    assert (out_label == -1).any() and (out_label == 1).any()


def test_xy_only_swaps_keep_z_axis():
    image = _field(shape=(8, 24, 24))
    out, _ = Augmenter(_only(["rot90", "swap"]), seed=0)(image, _label_of(image))
    assert out.shape == (8, 24, 24)
    # z profile of the xy-mean is unchanged (only xy rotated/transposed, z maybe flipped: off)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), image.mean(axis=(1, 2)), rtol=1e-5)


def test_linear_interpolation_keeps_labels_and_ignore():
    image = _field()
    label = _label_of(image)
    aug = Augmenter({name: {"p": 1.0} for name in TRANSFORMS}, seed=1)
    for _ in range(3):
        out_image, out_label = aug(image, label)
        assert np.isfinite(out_image).all() and out_image.dtype == np.float32
        assert set(np.unique(out_label)) <= {-1, 0, 1}
        assert (out_label == -1).any()


def test_deterministic_per_seed():
    image = _field()
    label = _label_of(image)
    config = {name: {"p": 0.5} for name in TRANSFORMS}
    runs = []
    for seed in (7, 7, 8):
        aug = Augmenter(config, seed=seed)
        runs.append([aug(image, label) for _ in range(3)])
    for (a_img, a_lab), (b_img, b_lab) in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)
    assert any(not np.array_equal(a[0], c[0]) for a, c in zip(runs[0], runs[2]))


def test_inputs_not_modified_and_intensity_leaves_label():
    image = _field()
    label = _label_of(image)
    before = image.copy(), label.copy()
    intensity = ["noise", "blur", "median", "sharpen", "brightness", "contrast", "gamma",
                 "gradient", "low_resolution", "erase", "fourier_amplitude"]
    out_image, out_label = Augmenter(_only(intensity), seed=0)(image, label)
    np.testing.assert_array_equal(out_label, label)
    assert not np.allclose(out_image, image)
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(label, before[1])


def test_missing_wedge_removes_wedge():
    image = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
    out = apply_missing_wedge(image, 60.0)
    power = np.abs(np.fft.rfftn(out)) ** 2
    keep = wedge_mask(image.shape, 60.0)
    assert power[~keep].sum() < 1e-8 * power[keep].sum()
    # about a third of Fourier space (90-60 degrees of each 90) is missing
    assert 0.25 < (~keep).mean() < 0.45
    assert abs(out.std() - image.std()) < 1e-3 and abs(out.mean() - image.mean()) < 1e-3


def test_missing_wedge_augmentation_with_rotation():
    image = _field(shape=(24, 24, 24))
    label = _label_of(image)
    aug = Augmenter(_only(["missing_wedge"], missing_wedge={"max_tilt": (50.0, 50.0)}),
                    seed=2)
    out, out_label = aug(image, label)
    power = np.abs(np.fft.rfftn(out)) ** 2
    assert power[~wedge_mask(out.shape, 50.0)].sum() < 1e-8 * power.sum()
    assert not np.array_equal(out_label, label)  # rotated together with the image
    assert set(np.unique(out_label)) <= {-1, 0, 1}


def test_fourier_amplitude_walk_is_radial_scaling():
    image = np.random.default_rng(1).normal(size=(24, 24, 24)).astype(np.float32)
    out = fourier_amplitude_walk(image, np.random.default_rng(5), sigma=0.2)
    assert abs(out.mean() - image.mean()) < 1e-4 and abs(out.std() - image.std()) < 1e-4
    ratio = np.fft.rfftn(out) / np.fft.rfftn(image)
    assert np.abs(ratio.imag).max() < 1e-3 * np.abs(ratio.real).max()  # phases untouched
    kz = np.fft.fftfreq(24)[:, None, None]
    ky = np.fft.fftfreq(24)[None, :, None]
    kx = np.fft.rfftfreq(24)[None, None, :]
    shell = np.rint(np.sqrt(kz ** 2 + ky ** 2 + kx ** 2) * 24).astype(int)
    values = [ratio.real[shell == r] for r in range(1, 12)]
    assert all(np.ptp(v) < 1e-3 * np.abs(v).max() for v in values)
    assert np.ptp([v.mean() for v in values]) > 0.05


def test_bad_config_and_shapes():
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmenter({"elastic": {"p": 1.0}})
    with pytest.raises(ValueError, match="unknown options"):
        Augmenter({"zoom": {"prob": 1.0}})
    with pytest.raises(ValueError, match="equal shape"):
        Augmenter()(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_non_cubic_patches_keep_their_shape():
    image = _field(shape=(8, 12, 16))
    label = _label_of(image).astype(np.int8)
    config = {name: {"p": 1.0} for name in TRANSFORMS}
    config["swap"] = {"p": 1.0, "swap_z": True}
    aug = Augmenter(config, seed=4)
    for _ in range(4):
        out_image, out_label = aug(image, label)
        assert out_image.shape == out_label.shape == image.shape
        assert out_label.dtype == np.int8


def test_polarity_flip_mirrors_intensities_about_the_mean():
    image = _field()
    label = _label_of(image)
    out, out_label = Augmenter(_only(["polarity"]), seed=0)(image, label)
    np.testing.assert_allclose(out, 2 * image.mean() - image, atol=1e-5)
    np.testing.assert_array_equal(out_label, label)
    # off by default: a default augmenter never flips the sign
    assert Augmenter(seed=0).config["polarity"]["p"] == 0.0
