"""``cryovis segment --memory MIB``: the tomogram streams through bands of blended cells
within a memory budget, with exactly the in-memory result; a budget that cannot be met is a
one-line error before any work. (Peak memory on a 2 GiB tomogram: benchmarks/bench_batch.py.)
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from cli_batch import run_one  # noqa: E402

from cryoet_integration.cli import main  # noqa: E402
from cryoet_integration.preprocess import robust_normalize, robust_stats  # noqa: E402
from cryoet_integration.segmentation.checkpoint import load_model  # noqa: E402
from cryoet_integration.segmentation.inference import (  # noqa: E402
    predict_probabilities,
    segment_volume,
)
from cryoet_integration.segmentation.streaming import (  # noqa: E402
    plan_stream,
    resident_mib,
    stream_probabilities,
    warm_up,
)
from formats import MrcBlockWriter, Volume, read_rows, read_volume, write_volume  # noqa: E402


@pytest.fixture(scope="module")
def tomogram(tmp_path_factory):
    path = tmp_path_factory.mktemp("memory") / "tomo.mrc"
    data = np.random.default_rng(5).normal(size=(32, 40, 40)).astype(np.float32)
    data[14:17] -= 2.5  # a dark sheet, like a membrane
    write_volume(path, Volume(data, voxel_size=10.0, origin=(1.0, 2.0, 3.0)))
    return path


def _segment(*args: str) -> dict:
    """``cryovis segment ARGS --json`` in its own process (a fresh process's memory)."""
    proc = run_one(["segment", *args, "--precision", "fp32", "--threads", "1", "--json"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_tiny_budget_streams_several_bands_with_the_in_memory_result(tomogram, tmp_path):
    roomy = _segment(str(tomogram), "--out", str(tmp_path / "roomy.mrc"), "--memory", "1e5")
    assert roomy["streamed"] and roomy["tile_rows"] == 1  # the default tile holds it all
    # A budget a few MiB above what the process holds forces small tiles: many bands.
    held = roomy["memory_held_mib"]
    tight = _segment(str(tomogram), "--out", str(tmp_path / "tight.mrc"), "--memory",
                     f"{held + 12:.0f}", "--labels-out", str(tmp_path / "labels.mrc"))
    assert tight["tile"] < 40 and tight["tile_rows"] >= 4 and tight["cells"] > 4
    assert tight["memory_estimate_mib"] <= held + 12
    net, card = load_model()
    reference = segment_volume(read_volume(tomogram, mmap=False), net, card,
                               tile=tight["tile"], overlap=16)
    mine = read_volume(tmp_path / "tight.mrc")
    np.testing.assert_allclose(mine.data, reference.class_map(1), rtol=0, atol=1e-6)
    assert mine.voxel_size == 10.0 and mine.origin == pytest.approx((1.0, 2.0, 3.0))
    labels = read_volume(tmp_path / "labels.mrc").data
    assert labels.dtype == np.int8
    np.testing.assert_array_equal(labels, reference.labels(0.5))
    stats = mine.metadata["header_stats"]
    assert stats["max"] == pytest.approx(float(reference.class_map(1).max()), abs=1e-6)
    assert stats["mean"] == pytest.approx(float(reference.class_map(1).mean()), rel=1e-5)


def test_streamed_cells_equal_predict_probabilities(tomogram):
    """The library level: every finished cell is exactly its part of the in-memory map."""
    net, card = load_model()
    volume = read_volume(tomogram, mmap=True)
    warm_up(net)
    plan = plan_stream(volume.data.shape, net, resident_mib() + 200, 24, 8)
    assert plan.tile == 24
    out = np.full((1,) + volume.data.shape, np.nan, dtype=np.float32)

    def sink(z0, y0, probs):
        part = out[:, z0:z0 + probs.shape[1], y0:y0 + probs.shape[2]]
        assert np.isnan(part).all()  # each voxel is finished once
        part[...] = probs

    counts = stream_probabilities(net, volume.data, robust_stats(volume.data), plan, 8, sink)
    assert counts["tile_rows"] == 2 * 2 and counts["cells"] == 3 * 3
    whole = predict_probabilities(net, robust_normalize(np.asarray(volume.data)), tile=24,
                                  overlap=8)
    np.testing.assert_array_equal(out, whole)


def test_budget_too_small_fails_before_any_work(tomogram, tmp_path, capsys):
    out = tmp_path / "seg.mrc"
    assert main(["segment", str(tomogram), "--out", str(out), "--memory", "50",
                 "--labels-out", str(tmp_path / "labels.mrc")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tomogram) in err
    assert "--memory 50 MiB is too small" in err and "holds" in err
    assert os.listdir(tmp_path) == []  # no output, no staged file, no folder
    # Rescaling needs the whole tomogram: a budget below that is refused too.
    assert main(["segment", str(tomogram), "--out", str(out), "--memory", "50",
                 "--voxel-size", "13.7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "rescaling" in err and "--memory 50 MiB" in err and os.listdir(tmp_path) == []
    assert main(["segment", str(tomogram), "--out", str(out), "--memory", "0"]) == 2
    assert "--memory" in capsys.readouterr().err


def test_bad_input_is_reported_before_the_budget(tmp_path, capsys):
    bad = tmp_path / "cut.mrc"
    write_volume(bad, Volume(np.zeros((16, 16, 16), np.float32), voxel_size=10.0))
    bad.write_bytes(bad.read_bytes()[:4000])
    assert main(["segment", str(bad), "--out", str(tmp_path / "o.mrc"),
                 "--memory", "50"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cut.mrc" in err and "truncated" in err and "--memory" not in err
    assert not (tmp_path / "o.mrc").exists()


def test_block_writer_writes_blocks_in_any_order_atomically(tmp_path):
    data = np.random.default_rng(1).normal(size=(7, 9, 5)).astype(np.float32)
    with MrcBlockWriter(tmp_path / "a.mrc", data.shape, np.float32, 10.0,
                        (1.0, 2.0, 3.0)) as w:
        assert not (tmp_path / "a.mrc").exists()  # staged until the end
        w.write(3, 4, data[3:, 4:])
        w.write(0, 0, data[:3])
        w.write(3, 0, data[3:, :4])
    write_volume(tmp_path / "b.mrc", Volume(data, voxel_size=10.0, origin=(1.0, 2.0, 3.0)))
    a, b = read_volume(tmp_path / "a.mrc"), read_volume(tmp_path / "b.mrc")
    np.testing.assert_array_equal(a.data, b.data)
    assert a.voxel_size == b.voxel_size and a.origin == b.origin and not a.metadata["warnings"]
    for key in ("min", "max", "mean", "rms"):
        assert a.metadata["header_stats"][key] == pytest.approx(
            b.metadata["header_stats"][key], rel=1e-5)
    with pytest.raises(RuntimeError), MrcBlockWriter(tmp_path / "c.mrc", data.shape,
                                                     np.float32, 10.0, (0, 0, 0)) as w:
        w.write(0, 0, data[:2])
        raise RuntimeError("killed mid-way")
    assert sorted(os.listdir(tmp_path)) == ["a.mrc", "b.mrc"]


def test_read_rows_reads_a_memory_map_from_its_file(tomogram):
    mapped = read_volume(tomogram, mmap=True)
    loaded = read_volume(tomogram, mmap=False).data
    rows = read_rows(mapped.data, 3, 9, 10, 30)
    assert not isinstance(rows, np.memmap)
    np.testing.assert_array_equal(rows, loaded[3:9, 10:30])
    np.testing.assert_array_equal(read_rows(loaded, 3, 9, 10, 30), loaded[3:9, 10:30])
