"""`cryovis render` end to end on small MRC files, the Scene API, and bad inputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryoet_integration.cli import main
from cryoet_integration.rendering import Camera, RenderSettings, Scene
from formats import read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]


def _phantom(shape=(20, 32, 36), seed=0):
    """A noisy tomogram (dark = dense) with a membrane slab and two particles, plus soft maps."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    membrane = (np.abs(z - 8) < 1.5).astype(np.float32)
    particles = (((x - 10) ** 2 + (y - 12) ** 2 + (z - 14) ** 2 < 9)
                 | ((x - 25) ** 2 + (y - 20) ** 2 + (z - 13) ** 2 < 9)).astype(np.float32)
    density = np.maximum(membrane, particles)
    raw = -density + rng.normal(0, 0.5, shape).astype(np.float32)
    soft = [np.clip(ndimage.gaussian_filter(m, 1.0) * 1.3, 0, 1) for m in (membrane, particles)]
    return raw.astype(np.float32), soft


@pytest.fixture()
def mrcs(tmp_path):
    raw, (memb, parts) = _phantom()
    paths = {"tomo": tmp_path / "tomo.mrc", "memb": tmp_path / "membrane.mrc",
             "parts": tmp_path / "particles.mrc"}
    write_volume(paths["tomo"], raw, voxel_size=10.0)
    write_volume(paths["memb"], memb, voxel_size=10.0)
    write_volume(paths["parts"], parts, voxel_size=10.0)
    return paths


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_png_gif_mp4_and_histograms(mrcs, tmp_path, capsys):
    import imageio.v3 as iio

    out, gif, hist = tmp_path / "view.png", tmp_path / "turn.gif", tmp_path / "hist"
    classes = f"{mrcs['memb']},{mrcs['parts']}"
    code, stdout, err = _run(["render", str(mrcs["tomo"]), "--classes", classes, "--out", str(out),
                              "--size", "96x64", "--colors", "orange,#56b4e9", "--turntable",
                              str(gif), "--frames", "4", "--histograms", str(hist),
                              "--azimuth", "20", "--elevation", "30", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert len(summary["thresholds"]) == 2 and all(0 < t < 1 for t in summary["thresholds"])
    image = iio.imread(out)
    assert image.shape == (64, 96, 3) and image.max() > 50
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (64, 96)
    assert sorted(p.name for p in hist.iterdir()) == ["histogram_membrane.png",
                                                       "histogram_particles.png"]
    mp4 = tmp_path / "turn.mp4"
    code, _, err = _run(["render", str(mrcs["tomo"]), "--classes", classes, "--turntable",
                         str(mp4), "--frames", "3", "--size", "33x21", "--mode", "mip",
                         "--projection", "perspective"], capsys)
    assert code == 0, err
    assert mp4.stat().st_size > 0
    assert len(list(iio.imiter(mp4, plugin="pyav" if _has_av() else None))) == 3


def _has_av():
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("problem", ["shape", "voxel", "nan", "range", "exists", "colour",
                                     "size", "thresholds", "suffix"])
def test_bad_inputs_give_one_line_and_no_output(mrcs, tmp_path, capsys, problem):
    out = tmp_path / "view.png"
    classes = f"{mrcs['memb']},{mrcs['parts']}"
    extra = []
    if problem == "shape":
        write_volume(tmp_path / "small.mrc", np.zeros((4, 4, 4), np.float32), voxel_size=10.0)
        classes = f"{mrcs['memb']},{tmp_path / 'small.mrc'}"
    elif problem == "voxel":
        vol = read_volume(mrcs["parts"])
        write_volume(tmp_path / "vs.mrc", np.asarray(vol.data), voxel_size=13.0)
        classes = f"{mrcs['memb']},{tmp_path / 'vs.mrc'}"
    elif problem == "nan":
        data = np.asarray(read_volume(mrcs["parts"]).data).copy()
        data[3, 3, 3] = np.nan
        write_volume(tmp_path / "nan.mrc", data, voxel_size=10.0)
        classes = f"{mrcs['memb']},{tmp_path / 'nan.mrc'}"
    elif problem == "range":
        data = np.asarray(read_volume(mrcs["parts"]).data) * 255.0
        write_volume(tmp_path / "bytes.mrc", data, voxel_size=10.0)
        classes = f"{mrcs['memb']},{tmp_path / 'bytes.mrc'}"
    elif problem == "exists":
        out.write_bytes(b"keep me")
    elif problem == "colour":
        extra = ["--colors", "red,notacolour"]
    elif problem == "size":
        extra = ["--size", "big"]
    elif problem == "thresholds":
        extra = ["--thresholds", "0.3,1.5"]
    elif problem == "suffix":
        out = tmp_path / "view.jpg"
    code, _, err = _run(["render", str(mrcs["tomo"]), "--classes", classes, "--out", str(out),
                         "--size", "32x32", *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryovis render: error:")
    if problem == "exists":
        assert out.read_bytes() == b"keep me"
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_images_are_deterministic_and_settings_matter():
    raw, soft = _phantom()
    cam = Camera(48, 40, azimuth=25, elevation=15)
    a = Scene(raw, soft, RenderSettings(backend="numpy")).render(cam)
    b = Scene(raw, soft, RenderSettings(backend="numpy")).render(cam)
    assert np.array_equal(a, b)
    unc = Scene(raw, soft, RenderSettings(backend="numpy", uncertainty=True)).render(cam)
    assert not np.array_equal(a, unc)
    fixed = Scene(raw, soft, RenderSettings(backend="numpy", thresholds=[0.2, None]))
    assert fixed.thresholds[0] == 0.2 and fixed.thresholds[1] > 0


def test_numpy_and_torch_scenes_agree():
    pytest.importorskip("torch")
    raw, soft = _phantom()
    cam = Camera(64, 48, azimuth=-40, elevation=25, projection="perspective")
    for mode in ("ours", "dvr", "mip"):
        a = Scene(raw, soft, RenderSettings(backend="numpy")).render_float(cam, mode)
        b = Scene(raw, soft, RenderSettings(backend="torch")).render_float(cam, mode)
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_rendering_needs_only_numpy_and_scipy(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from cryoet_integration.rendering import render, RenderSettings, Camera\n"
        "raw = np.random.default_rng(0).normal(size=(8, 12, 12)).astype(np.float32)\n"
        "p = np.zeros_like(raw); p[3:5] = 1\n"
        f"render(raw, [p], Camera(16, 16), settings=RenderSettings(backend='numpy'),"
        f" out={str(tmp_path / 'x.png')!r})\n"
        "bad = [m for m in ('torch', 'matplotlib', 'skimage') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    assert (tmp_path / "x.png").stat().st_size > 0
