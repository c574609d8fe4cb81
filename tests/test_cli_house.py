"""One command-line language: shared options, outputs checked before work, errors by kind,
progress on stderr, resumable simulation, label maps in render, one home per idea."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryoet_integration.cli import main
from cryoet_integration.commands import options
from formats import Volume, read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]
COMPUTING = [["simulate"], ["evaluate", "picks"], ["evaluate", "segmentation"], ["segment"],
             ["train", "segmenter"], ["pick"], ["train", "picker"], ["pseudolabel"], ["render"],
             ["classify"], ["train", "classifier"],
             ["average"], ["membranes"], ["demo"]]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _volume(path, data, voxel_size=10.0):
    write_volume(path, Volume(np.asarray(data), voxel_size=voxel_size))
    return path


def _help(argv) -> str:
    proc = subprocess.run([sys.executable, "-m", "cryoet_integration.cli", *argv, "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- one place for the shared options ------------------------------------------------------

def test_sizes_parse_in_one_place():
    xyz = options.size_arg("XxYxZ", minimum=8)
    assert xyz("64x48X32") == (64, 48, 32)
    for bad in ("64x48", "64x48x4", "axbxc", "64,48,32"):
        with pytest.raises(argparse.ArgumentTypeError, match="XxYxZ"):
            xyz(bad)
    assert options.size_arg("WxH")("640x480") == (640, 480)


def test_tilt_range_is_min_max_everywhere(tmp_path, capsys):
    code, _, err = _run(["simulate", "--out", tmp_path / "s", "--tilt-range", "-50,50"],
                        capsys)  # the old MIN,MAX form is a one-line usage error
    assert code == 2 and err.count("\n") == 1 and "--tilt-range: expected 2 arguments" in err
    for cmd in (["simulate"], ["evaluate", "segmentation"]):
        assert "--tilt-range MIN MAX" in _help(cmd)


def test_available_cpus_honours_affinity_and_omp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert options.available_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert options.available_cpus() == 3


@pytest.mark.parametrize("cmd", COMPUTING, ids=" ".join)
def test_every_computing_command_has_threads_and_json_means_one_thing(cmd):
    text = _help(cmd)
    n = len(os.sched_getaffinity(0)) if "OMP_NUM_THREADS" not in os.environ else None
    assert "--threads N" in text
    if n is not None:
        assert f"the {n} CPUs this process may use" in text
    if cmd != ["demo"]:
        assert "--json [OUT]" in text and "(no OUT or '-': stdout)" in text


@pytest.mark.parametrize("cmd", [["info"], ["convert"]] + COMPUTING, ids=" ".join)
def test_help_texts_are_clean(cmd):
    text = _help(cmd)
    assert "``" not in text and "%(default)" not in text
    for word in ("None", "True", "False"):
        assert f" {word}" not in text, word
    # ArgumentDefaultsHelpFormatter appends "(default: X)" after a help that already says it
    for block in text.split("\n  -")[1:]:
        assert block.count("default") <= 1, block


def test_device_cuda_without_cuda_is_bad_input(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    tomo = _volume(tmp_path / "t.mrc", np.zeros((16, 16, 16), np.float32))
    code, out, err = _run(["segment", tomo, "--out", tmp_path / "p.mrc", "--device", "cuda"],
                          capsys)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "no usable CUDA GPU" in err
    assert "AssertionError" not in err and not (tmp_path / "p.mrc").exists()


# --- outputs checked before any compute -----------------------------------------------------

def _unwritable_folder(tmp_path) -> Path:
    """A folder this process cannot create files in (root writes anywhere on a normal fs)."""
    if os.geteuid() == 0:
        return Path("/proc/self")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


@pytest.fixture()
def seg_inputs(tmp_path):
    truth = np.zeros((8, 12, 12), np.uint8)
    truth[3:5] = 1
    return (_volume(tmp_path / "truth.mrc", truth),
            _volume(tmp_path / "pred.mrc", truth.astype(np.float32) * 0.9))


@pytest.mark.parametrize("problem", ["folder", "readonly", "extension"])
def test_segment_refuses_outputs_before_reading_the_tomogram(tmp_path, capsys, problem):
    pytest.importorskip("torch")
    out = {"folder": tmp_path, "readonly": _unwritable_folder(tmp_path) / "p.mrc",
           "extension": tmp_path / "p.xyz"}[problem]
    # The tomogram does not exist: an error naming the output proves the output came first.
    code, _, err = _run(["segment", tmp_path / "missing.mrc", "--out", out], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(out) in lines[0], err
    assert "missing.mrc" not in lines[0] and ".part" not in lines[0]


@pytest.mark.parametrize("command", ["evaluate", "render"])
def test_unwritable_or_misnamed_outputs_are_refused_first(tmp_path, capsys, seg_inputs, command):
    truth, pred = seg_inputs
    base = (["evaluate", "segmentation", "--truth", truth, "--prediction", pred, "--png"]
            if command == "evaluate" else ["render", truth, "--classes", pred, "--out"])
    for out in (_unwritable_folder(tmp_path) / "f.png", tmp_path / "f.jpg", tmp_path):
        code, _, err = _run(base + [out], capsys)
        assert code == 2 and err.count("\n") == 1 and str(out) in err, err


def test_missing_output_folders_are_created(tmp_path, capsys, seg_inputs):
    truth, pred = seg_inputs
    out = tmp_path / "new" / "deeper" / "scores.json"
    code, _, err = _run(["evaluate", "segmentation", "--truth", truth, "--prediction", pred,
                         "--json", out], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["dice"] == 1.0
    for cmd in (["segment"], ["render"], ["simulate"], ["train", "segmenter"], ["demo"]):
        assert options.CREATES_DIRS in _help(cmd).replace("\n", " ").replace("  ", " ")


# --- errors by kind -------------------------------------------------------------------------

def test_internal_error_exits_1_with_a_traceback_log(tmp_path, capsys, seg_inputs, monkeypatch):
    from cryoet_integration.commands import evaluate

    def bug(args):
        raise ValueError("an unexpected bug deep inside")

    monkeypatch.setattr(evaluate, "_score_segmentation", bug)
    monkeypatch.setenv("HOME", str(tmp_path))
    truth, pred = seg_inputs
    code, _, err = _run(["evaluate", "segmentation", "--truth", truth, "--prediction", pred],
                        capsys)
    assert code == 1 and err.count("\n") == 1
    assert "internal error: ValueError" in err and "error: an unexpected" not in err
    log = Path(err.split("traceback in ")[1].split(";")[0])
    assert log.is_file() and "an unexpected bug deep inside" in log.read_text()
    assert "Traceback" in log.read_text()


def test_bad_input_exits_2_in_one_line(tmp_path, capsys):
    code, out, err = _run(["evaluate", "segmentation", "--truth", tmp_path / "nope.mrc",
                           "--prediction", tmp_path / "nope.mrc"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "nope.mrc" in err


def test_convert_json_is_the_shared_option(tmp_path, capsys):
    src = tmp_path / "picks.csv"
    src.write_text("x,y,z\n1,2,3\n4,5,6\n")
    out, record = tmp_path / "picks.tbl", tmp_path / "convert.json"
    assert "--json [OUT]" in _help(["convert"])
    code, stdout, _ = _run(["convert", src, out, "--json", record], capsys)
    assert code == 0 and json.loads(record.read_text())["particles"] == 2
    assert "2" in stdout and not stdout.lstrip().startswith("{")
    # an existing JSON file is refused before OUT is written
    second = tmp_path / "again.tbl"
    code, _, err = _run(["convert", src, second, "--json", record], capsys)
    assert code == 2 and "convert.json" in err and not second.exists()
    code, stdout, _ = _run(["convert", src, tmp_path / "third.tbl", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["particles"] == 2


# --- progress, what is done, summary; JSON only when asked ---------------------------------

def test_segment_says_what_it_does_and_keeps_stdout_for_json(tmp_path, capsys):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    tomo = _volume(tmp_path / "t.mrc", rng.normal(size=(20, 28, 28)).astype(np.float32),
                   voxel_size=13.69)
    code, out, err = _run(["segment", tomo, "--out", tmp_path / "a" / "p.mrc"], capsys)
    assert code == 0, err
    assert out == ""  # no --json: nothing on stdout
    assert "rescaling 13.69 -> 10 Å" in err
    assert "tiles 1/" in err  # plain progress lines when stderr is not a terminal
    assert err.strip().splitlines()[-1].startswith("cryovis segment: wrote probabilities")
    code, out, err = _run(["segment", tomo, "--out", tmp_path / "b.mrc", "--json"], capsys)
    assert code == 0 and json.loads(out)["rescaled"] is True


# --- non-finite input is refused ------------------------------------------------------------

def test_evaluate_refuses_an_all_nan_prediction(tmp_path, capsys, seg_inputs):
    truth, _ = seg_inputs
    nan = _volume(tmp_path / "nan.mrc", np.full((8, 12, 12), np.nan, np.float32))
    code, out, err = _run(["evaluate", "segmentation", "--truth", truth, "--prediction", nan,
                           "--json"], capsys)
    assert code == 2 and out == "" and "nan.mrc" in err and "NaN" in err


# --- simulate resumes -----------------------------------------------------------------------

def test_interrupted_simulation_resumes(tmp_path, capsys):
    pytest.importorskip("scipy")
    out = tmp_path / "sim"
    argv = ["simulate", "--out", out, "--n", "2", "--size", "32x32x16", "--seed", "4",
            "--no-randomise"]
    assert _run(argv, capsys)[0] == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("tomo_000*")}
    second = read_volume(out / "tomo_001.mrc").data.copy()
    # An interruption during the second tomogram: its record and the collection files missing.
    for name in ("tomo_001.json", "summary.json", "tomograms.star"):
        (out / name).unlink()
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert "1 of 2 tomograms already complete" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("tomo_000*")} == first
    assert np.array_equal(read_volume(out / "tomo_001.mrc").data, second)  # same seed
    summary = json.loads((out / "summary.json").read_text())
    assert [t["name"] for t in summary["tomograms"]] == ["tomo_000", "tomo_001"]
    assert (out / "tomograms.star").is_file()
    # Other options over complete tomograms: refused, nothing replaced.
    code, _, err = _run(argv[:-1] + ["--dose", "50", "--no-randomise"], capsys)
    assert code == 2 and "other options" in err


# --- render label maps ----------------------------------------------------------------------

def test_render_takes_a_label_map_with_legend_and_scale_bar(tmp_path, capsys):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(1)
    labels = np.zeros((16, 32, 32), np.int16)
    labels[6:9] = 1
    labels[2:5, 5:12, 5:12] = 3
    raw = (rng.normal(0, 0.3, labels.shape) - (labels > 0)).astype(np.float32)
    tomo = _volume(tmp_path / "t.mrc", raw)
    lab = _volume(tmp_path / "t_labels.mrc", labels)
    (tmp_path / "t.json").write_text(json.dumps({"labels": {"membrane": 1, "ribosome": 3}}))
    code, _, err = _run(["render", tomo, "--classes", lab, "--out", tmp_path / "v.png",
                         "--size", "160x120", "--json", tmp_path / "v.json"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "v.json").read_text())["classes"] == ["membrane", "ribosome"]
    code, _, err = _run(["render", tomo, "--classes", lab, "--out", tmp_path / "plain.png",
                         "--size", "160x120", "--no-legend"], capsys)
    assert code == 0, err
    with_legend = read_png(tmp_path / "v.png")
    plain = read_png(tmp_path / "plain.png")
    differs = np.any(with_legend != plain, axis=2)
    assert differs[90:, :60].any()  # legend, bottom left
    assert differs[100:, 100:].any()  # scale bar, bottom right
    assert not differs[:40, 60:100].any()  # the picture itself is unchanged


def read_png(path):
    import imageio.v3 as iio

    return iio.imread(path)


def test_scale_bar_length_is_round_and_fits():
    from cryoet_integration.rendering.annotate import scale_bar_nm

    assert scale_bar_nm(10.0, 1000) == 200  # 1000 px of 1 nm: a fifth is 200 nm
    assert scale_bar_nm(3.0, 640) == 25  # 38.4 nm target
    assert scale_bar_nm(0.5, 50) == 1


# --- one home for each idea -----------------------------------------------------------------

def test_one_zscore_one_wavelength_one_json_sanitiser():
    from cryoet_integration import json_output, optics
    from cryoet_integration.evaluate import report
    from cryoet_integration.picking import blob
    from cryoet_integration.preprocess import robust_normalize
    from cryoet_integration.simulate import imaging

    assert not hasattr(blob, "robust_zscore") and not hasattr(imaging, "wavelength_angst")
    assert not hasattr(report, "json_ready")
    source = (REPO / "cryoet_integration/segmentation/threshold_baseline.py").read_text()
    assert "picking" not in source
    assert optics.electron_wavelength(300.0) == pytest.approx(0.019687, abs=2e-6)
    data = np.random.default_rng(0).normal(3.0, 2.0, (30, 30, 30))
    for z in (robust_normalize(data), robust_normalize(data, axis_step=3)):
        assert abs(float(np.median(z))) < 0.05 and 0.9 < float(np.std(z)) < 1.1
    assert json.loads(json_output.dumps({"a": float("nan"), "b": np.float32(2.5),
                                         "c": np.arange(2), "d": Path("x")})) == \
        {"a": None, "b": 2.5, "c": [0, 1], "d": "x"}


def test_metrics_take_truth_then_prediction_keyword_only_after():
    from cryoet_integration.evaluate.segmentation import (
        binary_scores,
        evaluate_segmentation,
        per_slice_dice,
        surface_dice,
    )

    truth = np.zeros((6, 10, 10), bool)
    truth[2:4] = True
    prediction = truth.copy()
    prediction[2:4, :, 5:] = False  # finds half of the truth, nothing else
    s = surface_dice(truth, prediction)
    assert s["surface_precision"] == 1.0 and s["surface_recall"] == pytest.approx(0.5)
    b = binary_scores(truth, prediction, surface=False)
    assert b["precision"] == 1.0 and b["recall"] == pytest.approx(0.5)
    assert evaluate_segmentation(truth, prediction)["recall"] == pytest.approx(0.5)
    assert np.nanmean(per_slice_dice(truth, prediction)) == pytest.approx(2 / 3)
    for call in (lambda: surface_dice(truth, prediction, None),
                 lambda: evaluate_segmentation(truth, prediction, 0.5),
                 lambda: binary_scores(truth, prediction, None, False)):
        with pytest.raises(TypeError):
            call()


def _function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    return {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_long_functions_are_split_into_steps():
    assert _function_lengths(REPO / "cryoet_integration/commands/render.py")["run"] <= 60
    assert _function_lengths(REPO / "cryoet_integration/evaluate/picks.py")[
        "evaluate_picks"] <= 60


def test_validation_is_apart_from_benchmarks_and_runs_as_a_module():
    assert not list((REPO / "benchmarks").glob("*phantom*"))
    for name in ("phantom_sim", "cross_simulator", "score_membrane_model", "score_baselines"):
        source = (REPO / "validation" / f"{name}.py").read_text()
        assert "sys.path" not in source, name
    proc = subprocess.run([sys.executable, "-m", "validation.cross_simulator", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for script in list((REPO / "benchmarks").glob("*.py")) + list(
            (REPO / "validation").glob("*.py")):
        text = script.read_text()
        assert "update_card" not in text and "card_path.write_text" not in text, script
