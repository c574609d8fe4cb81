"""Large tomograms stream: a memory-mapped (or OME-Zarr) tomogram is segmented tile by
tile into memory-mapped probabilities and written slab by slab, with exactly the result of
the in-memory path. (Peak memory on a 2 GiB tomogram: benchmarks/bench_batch.py.)"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from cryoet_integration.segmentation.checkpoint import load_model  # noqa: E402
from cryoet_integration.segmentation.inference import segment_volume  # noqa: E402
from formats import Volume, read_volume, write_volume  # noqa: E402


@pytest.fixture(scope="module")
def tomogram(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "tomo.mrc"
    rng = np.random.default_rng(5)
    data = rng.normal(size=(40, 72, 56)).astype(np.float32)
    data[18:21] -= 2.5  # a dark sheet, like a membrane
    write_volume(path, Volume(data, voxel_size=10.0, origin=(1.0, 2.0, 3.0)))
    return path


def test_memory_mapped_segmentation_equals_in_memory(tomogram, tmp_path):
    net, card = load_model()
    in_memory = segment_volume(read_volume(tomogram, mmap=False), net, card, tile=32,
                               overlap=8)
    mapped = read_volume(tomogram, mmap=True)
    assert isinstance(mapped.data, np.memmap)
    streamed = segment_volume(mapped, net, card, tile=32, overlap=8, memmap_dir=tmp_path)
    assert streamed.info["streamed"] and not in_memory.info["streamed"]
    assert isinstance(streamed.probabilities, np.memmap)
    np.testing.assert_array_equal(np.asarray(streamed.probabilities),
                                  in_memory.probabilities)
    # Written slab by slab from the memory map: the same file as from memory.
    write_volume(tmp_path / "a.mrc", Volume(streamed.class_map(1), voxel_size=10.0))
    write_volume(tmp_path / "b.mrc", Volume(in_memory.class_map(1), voxel_size=10.0))
    a, b = read_volume(tmp_path / "a.mrc"), read_volume(tmp_path / "b.mrc")
    np.testing.assert_array_equal(a.data, b.data)
    for key in ("min", "max", "mean", "rms"):
        assert a.metadata["header_stats"][key] == pytest.approx(
            b.metadata["header_stats"][key], rel=1e-5, abs=1e-7)


def test_ome_zarr_tomogram_streams_like_its_mrc(tomogram, tmp_path):
    pytest.importorskip("zarr")
    net, card = load_model()
    write_volume(tmp_path / "tomo.zarr", read_volume(tomogram))
    lazy = read_volume(tmp_path / "tomo.zarr", target_voxel_size=10.0)
    assert not isinstance(lazy.data, np.ndarray)  # a zarr array, read chunk by chunk
    streamed = segment_volume(lazy, net, card, tile=32, overlap=8, memmap_dir=tmp_path)
    reference = segment_volume(read_volume(tomogram, mmap=False), net, card, tile=32,
                               overlap=8)
    assert streamed.info["streamed"]
    np.testing.assert_array_equal(np.asarray(streamed.probabilities),
                                  reference.probabilities)
