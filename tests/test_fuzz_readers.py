"""Fuzzing: random bytes and mutated real fixtures into every reader; only FormatError escapes.

Volumes go through ``read_volume`` (.mrc, .em, .tif); particle files through every reader
registered in ``formats.FORMATS`` (the registry is iterated, so new formats are covered
without touching this file). Mutations flip bytes, overwrite bytes with random values, and
truncate real fixture files of the reader's suffix. ``CRYOVIS_FUZZ_EXAMPLES=500`` runs a
deeper, randomised hunt.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import FORMATS, FormatError, read_particles, read_volume

READERS = sorted(name for name, fmt in FORMATS.items() if fmt.reader is not None)
# CI runs a fixed, reproducible 50 examples per reader; CRYOVIS_FUZZ_EXAMPLES=N runs N
# fresh random examples instead (a deeper hunt, by hand).
_DEEP = int(os.environ.get("CRYOVIS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 50, deadline=None, derandomize=not _DEEP,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _fixtures(suffixes) -> list[bytes]:
    files = sorted(p for p in FIXTURES.rglob("*") if p.suffix.lower() in suffixes)
    return [p.read_bytes() for p in files if p.stat().st_size <= 64 * 1024]


@st.composite
def mutated(draw, originals: list[bytes]) -> bytes:
    """Random bytes, or a real fixture with flipped/overwritten bytes and maybe truncated."""
    if not originals or draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=3000))
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if data:
            data[pos] = draw(st.integers(0, 255)) if draw(st.booleans()) else data[pos] ^ 0xFF
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def _exercise(read, path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = read(path)
    except FormatError:
        return
    if hasattr(result, "data"):
        np.asarray(result.data).sum()  # touch every voxel of a (memory-mapped) result
    else:
        assert len(result) >= 0


@pytest.mark.parametrize("suffix", [".mrc", ".em", ".tif"])
def test_read_volume_only_raises_format_error(tmp_path_factory, suffix):
    path = tmp_path_factory.mktemp("fuzz_vol") / f"fuzz{suffix}"
    originals = _fixtures({suffix, ".map"} if suffix == ".mrc" else {suffix})

    @FUZZ
    @given(blob=mutated(originals))
    def check(blob):
        path.write_bytes(blob)
        _exercise(read_volume, path)

    check()


@pytest.mark.parametrize("name", READERS)
def test_particle_reader_only_raises_format_error(tmp_path_factory, name):
    fmt = FORMATS[name]
    path = tmp_path_factory.mktemp("fuzz_particles") / f"fuzz{fmt.suffixes[0]}"
    originals = _fixtures(set(fmt.suffixes))

    @FUZZ
    @given(blob=mutated(originals))
    def check(blob):
        path.write_bytes(blob)
        _exercise(lambda p: read_particles(p, format=name), path)

    check()
