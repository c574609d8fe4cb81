"""One device and precision decision for inference and training (segmentation/device.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.errors import CryovisError  # noqa: E402
from cryoet_integration.segmentation import device as dev  # noqa: E402
from cryoet_integration.segmentation.train import resolve_config  # noqa: E402

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_default_device_is_automatic():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dev.resolve_device(None) == dev.resolve_device("auto") == expected
    assert dev.resolve_device("cpu") == "cpu"


@no_cuda
def test_cuda_request_without_cuda_is_one_line_error():
    with pytest.raises(CryovisError, match="no usable CUDA GPU") as info:
        dev.resolve_device("cuda")
    assert "\n" not in str(info.value)
    with pytest.raises(CryovisError, match="not a torch device"):
        dev.resolve_device("gpu0")


@no_cuda
@pytest.mark.parametrize("command", [
    ["segment", "TOMO", "--out", "OUT", "--device", "cuda"],
    ["train", "segmenter", "--tomograms", "TOMO", "--labels", "TOMO", "--out", "OUT",
     "--device", "cuda"]])
def test_cli_device_cuda_without_cuda_exits_2_before_work(command, tmp_path, capsys):
    argv = [str(tmp_path / "t.mrc") if a == "TOMO" else str(tmp_path / "o") if a == "OUT"
            else a for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_training_and_inference_decide_bf16_the_same_way():
    cfg = resolve_config(None)
    assert cfg["precision"] == "auto"
    # what inference does for --precision auto is what training does for its default
    assert dev.use_bf16(cfg["precision"], "cpu") == dev.native_bf16("cpu")
    assert dev.use_bf16("fp32", "cpu") is False and dev.use_bf16("bf16", "cpu") is True
    with pytest.raises(ValueError, match="precision"):
        resolve_config({"precision": "half"})
    with pytest.raises(ValueError, match="now 'precision'"):
        resolve_config({"bf16": True})


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert dev.native_bf16("cpu") and dev.use_bf16("auto", "cpu")
    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not dev.native_bf16("cpu") and not dev.use_bf16("auto", "cpu")
