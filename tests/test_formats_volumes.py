"""Volumes: MRC/EM/TIFF reading of real fixtures and header quirks, writing, round trips."""

from __future__ import annotations

import os
from pathlib import Path

import emfile
import mrcfile
import numpy as np
import pytest
import tifffile
from mrcfile.dtypes import HEADER_DTYPE

from formats import FormatError, Volume, check_finite, invert_contrast, read_volume, write_volume

BAD = Path(__file__).parent / "data" / "bad_inputs"


def raw_mrc(path: Path, data_file_order: bytes, nx: int, ny: int, nz: int, mode: int = 2,
            order: str = "<", ext: bytes = b"", **fields) -> Path:
    """Write an MRC header by hand (to create quirks mrcfile would not write), then data."""
    h = np.zeros((), dtype=HEADER_DTYPE.newbyteorder(order))
    h["nx"], h["ny"], h["nz"], h["mode"] = nx, ny, nz, mode
    h["mx"], h["my"], h["mz"] = nx, ny, nz
    h["cella"] = (nx * 2.0, ny * 2.0, nz * 2.0)
    h["cellb"] = (90, 90, 90)
    h["mapc"], h["mapr"], h["maps"] = 1, 2, 3
    h["map"] = b"MAP "
    h["machst"] = (0x44, 0x44, 0, 0) if order == "<" else (0x11, 0x11, 0, 0)
    h["nsymbt"] = len(ext)
    for key, value in fields.items():
        h[key] = value
    path.write_bytes(h.tobytes() + ext + data_file_order)
    return path


# ----------------------------------------------------------------------- real fixtures


def test_emd3197_cell_over_sampling_nstart_nversion0(fixtures_dir):
    path = fixtures_dir / "mrc" / "EMD-3197.map"
    vol = read_volume(path)
    assert vol.data.shape == (20, 20, 20)
    assert vol.voxel_size == pytest.approx(11.4)  # CELLA 228 / MX 20
    assert vol.metadata["nstart_xyz"] == (-2, 0, 0)
    assert vol.metadata["nversion"] == 0
    assert np.array_equal(vol.data, mrcfile.read(path))


@pytest.mark.parametrize("name, shape", [("cryohub_test.mrc", (3, 3, 3)),
                                         ("boxmanager_test_0.mrc", (50, 50))])
def test_unset_voxel_size_is_zero_with_warning(fixtures_dir, name, shape):
    vol = read_volume(fixtures_dir / "mrc" / name)
    assert vol.data.shape == shape
    assert vol.voxel_size == 0.0
    assert any("voxel size not set" in w for w in vol.metadata["warnings"])


def test_em_fixture_matches_emfile(fixtures_dir):
    path = fixtures_dir / "em" / "cryocat_mask_sm0.em"
    vol = read_volume(path)
    _, expected = emfile.read(path)
    assert vol.data.shape == (8, 6, 4) and vol.shape_xyz == (4, 6, 8)
    assert np.array_equal(vol.data, expected)
    assert vol.voxel_size == 0.0


# ------------------------------------------------------------------------ MRC quirks


@pytest.mark.parametrize("dtype, mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2),
                                         (np.uint16, 6), (np.float16, 12)])
def test_modes_read_with_their_dtype(tmp_path, dtype, mode):
    data = (np.arange(60).reshape(3, 4, 5) % 100).astype(dtype)
    path = tmp_path / "m.mrc"
    write_volume(path, Volume(data, voxel_size=3.0))
    with mrcfile.open(path) as m:
        assert int(m.header.mode) == mode
    vol = read_volume(path)
    assert vol.data.dtype == dtype and np.array_equal(vol.data, data)
    assert vol.metadata["mode"] == mode


def test_mode_101_four_bit_unpacked(tmp_path):
    rng = np.random.default_rng(0)
    expected = rng.integers(0, 16, (2, 3, 5), dtype=np.uint8)  # odd nx: rows are padded
    padded = np.concatenate([expected, np.zeros((2, 3, 1), np.uint8)], axis=2)
    packed = (padded[..., 0::2] | (padded[..., 1::2] << 4)).astype(np.uint8)
    path = raw_mrc(tmp_path / "p.mrc", packed.tobytes(), 5, 3, 2, mode=101)
    vol = read_volume(path)
    assert np.array_equal(vol.data, expected)


def test_imod_unsigned_byte_flag(tmp_path):
    data = np.array([[[0, 200, 255]]], dtype=np.uint8)
    path = raw_mrc(tmp_path / "u.mrc", data.tobytes(), 3, 1, 1, mode=0)
    raw = bytearray(path.read_bytes())
    raw[152:160] = np.array([1146047817, 0], dtype="<i4").tobytes()  # IMOD stamp, unsigned
    path.write_bytes(bytes(raw))
    vol = read_volume(path)
    assert vol.data.dtype == np.uint8 and vol.data.tolist() == [[0, 200, 255]]


@pytest.mark.parametrize("mapc, mapr, maps", [(3, 1, 2), (2, 1, 3), (1, 3, 2)])
def test_axis_permutations_return_zyx(tmp_path, mapc, mapr, maps):
    zyx = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # z=2, y=3, x=4
    # File axes (sections, rows, columns) hold spatial axes (maps, mapr, mapc); 3=z -> axis 0.
    file_axes = [3 - a for a in (maps, mapr, mapc)]
    stored = zyx.transpose(file_axes)
    nz, ny, nx = stored.shape
    path = raw_mrc(tmp_path / "perm.mrc", stored.tobytes(), nx, ny, nz,
                   mapc=mapc, mapr=mapr, maps=maps)
    vol = read_volume(path)
    assert np.array_equal(vol.data, zyx)
    assert vol.metadata["mapcrs"] == (mapc, mapr, maps)


def test_anisotropic_and_cell_versus_sampling(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    path = raw_mrc(tmp_path / "a.mrc", data.tobytes(), 4, 4, 4,
                   mx=8, my=4, mz=4, cella=(16.0, 12.0, 20.0))
    vol = read_volume(path)
    assert vol.metadata["voxel_size_xyz"] == pytest.approx((2.0, 3.0, 5.0))
    assert vol.voxel_size == pytest.approx(2.0)  # CELLA / MX, not CELLA / NX
    assert vol.metadata["anisotropic_voxel_size"] is True
    assert any("anisotropic" in w for w in vol.metadata["warnings"])
    out = tmp_path / "a_copy.mrc"
    write_volume(out, vol)
    with mrcfile.open(out) as m:
        assert (float(m.voxel_size.x), float(m.voxel_size.z)) == pytest.approx((2.0, 5.0))


def test_extended_header_skipped(tmp_path):
    data = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    path = raw_mrc(tmp_path / "ext.mrc", data.tobytes(), 3, 3, 3, ext=b"\x01" * 768,
                   exttyp=b"FEI1")
    vol = read_volume(path)
    assert np.array_equal(vol.data, data)
    assert vol.metadata["extended_header_bytes"] == 768 and vol.metadata["exttyp"] == "FEI1"


def test_wrong_machine_stamp_and_big_endian(tmp_path):
    data = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    lying = raw_mrc(tmp_path / "lie.mrc", data.tobytes(), 2, 2, 2, machst=(0x11, 0x11, 0, 0))
    vol = read_volume(lying)
    assert np.array_equal(vol.data, data)
    assert any("machine stamp" in w for w in vol.metadata["warnings"])
    big = raw_mrc(tmp_path / "big.mrc", data.astype(">f4").tobytes(), 2, 2, 2, order=">")
    vol = read_volume(big)
    assert np.array_equal(vol.data, data) and vol.metadata["byte_order"] == "big"
    assert vol.voxel_size == pytest.approx(2.0)
    assert np.array_equal(read_volume(big, mmap=True).data, data)


def test_nversion0_and_trailing_bytes(tmp_path):
    data = np.ones((2, 2, 2), np.float32)
    path = raw_mrc(tmp_path / "old.mrc", data.tobytes() + b"junk", 2, 2, 2, nversion=0,
                   map=b"\x00\x00\x00\x00")
    vol = read_volume(path)
    assert np.array_equal(vol.data, data)
    assert any("bytes after the data block" in w for w in vol.metadata["warnings"])
    assert any("'MAP '" in w for w in vol.metadata["warnings"])


@pytest.mark.parametrize("name, fragment", [
    ("mrc_empty.mrc", "shorter than the 1024-byte MRC header"),
    ("mrc_short_header.mrc", "shorter than the 1024-byte MRC header"),
    ("mrc_truncated_data.mrc", "data block truncated: header says 16x16x16"),
    ("mrc_lying_header_size.mrc", "1000x1000x1000"),
    ("mrc_mode99.mrc", "unknown MRC mode 99"),
    ("mrc_mode4_complex.mrc", "mode 4 (complex float32)"),
    ("mrc_mode3_complex.mrc", "mode 3 (complex int16)"),
    ("mrc_zero_dims.mrc", "NX, NY, NZ = 8, 8, 0"),
    ("mrc_negative_dims.mrc", "NX, NY, NZ = -5, 8, 8"),
    ("mrc_bad_mapcrs.mrc", "MAPC, MAPR, MAPS = 1, 1, 3 is not a permutation"),
    ("mrc_negative_nsymbt.mrc", "NSYMBT = -100"),
    ("mrc_ext_header_past_eof.mrc", "runs past the end"),
    ("mrc_garbage.mrc", "not an MRC file"),
    ("mrc_text.mrc", "not an MRC file"),
    ("em_truncated.em", "data block truncated: header says 32x32x32"),
    ("em_bad_dtype.em", "unknown EM data type code 7"),
    ("em_complex.em", "complex"),
    ("em_zero_dims.em", "x, y, z = 4, 4, 0"),
    ("em_bad_machine.em", "machine byte 77"),
    ("tif_garbage.tif", "not a readable TIFF"),
    ("tiff_ifd_past_eof.tiff", "TIFF"),
])
def test_bad_volume_headers_say_what_is_wrong(name, fragment):
    with pytest.raises(FormatError) as err:
        read_volume(BAD / name)
    assert fragment in str(err.value)
    assert str(err.value).startswith(str(BAD / name))
    assert "\n" not in str(err.value)


# ------------------------------------------------------------- memory map, large files


def test_sparse_4gb_tomogram_is_memory_mapped(tmp_path):
    nx = ny = nz = 1024  # 4 GiB of float32, written sparse: only the header and one row
    path = tmp_path / "big.mrc"
    raw_mrc(path, b"", nx, ny, nz)
    row = np.arange(nx, dtype="<f4")
    with open(path, "r+b") as f:
        f.seek(1024 + ((700 * ny + 5) * nx) * 4)
        f.write(row.tobytes())
        f.truncate(1024 + nx * ny * nz * 4)
    if os.stat(path).st_blocks * 512 > 64 * 1024**2:
        pytest.skip("file system does not support sparse files")
    vol = read_volume(path)
    assert isinstance(vol.data, np.memmap)
    assert vol.data.shape == (nz, ny, nx)
    assert np.array_equal(vol.data[700, 5], row)
    assert not vol.data[700, 6].any()
    sub = vol.data[699:701, 4:6, 10:13]
    assert sub[1, 1].tolist() == [10.0, 11.0, 12.0]


def test_mmap_on_request_and_permuted_memmap_stays_lazy(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    stored = data.transpose(1, 2, 0)  # mapc=3 (z), mapr=1 (x), maps=2 (y)
    path = raw_mrc(tmp_path / "p.mrc", stored.tobytes(), 2, 4, 3, mapc=3, mapr=1, maps=2)
    vol = read_volume(path, mmap=True)
    assert isinstance(vol.data, np.memmap)
    assert np.array_equal(vol.data, data)


# --------------------------------------------------------------- writers, round trips


@pytest.mark.parametrize("suffix", [".mrc", ".em", ".tif"])
def test_round_trip_every_writer(tmp_path, suffix):
    data = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    path = tmp_path / f"v{suffix}"
    write_volume(path, Volume(data, voxel_size=2.345, origin=(10.0, -4.5, 3.0)))
    vol = read_volume(path)
    assert np.array_equal(vol.data, data)
    if suffix == ".em":
        assert vol.voxel_size == 0.0  # EM has no pixel-size field
    else:
        assert vol.voxel_size == pytest.approx(2.345, rel=1e-6)
    if suffix == ".mrc":
        assert vol.origin == pytest.approx((10.0, -4.5, 3.0))


def test_written_files_are_read_by_the_field_readers(tmp_path):
    data = np.random.default_rng(2).normal(size=(4, 5, 6)).astype(np.float32)
    vol = Volume(data, voxel_size=4.2, origin=(1.0, 2.0, 3.0))
    write_volume(tmp_path / "v.mrc", vol)
    write_volume(tmp_path / "v.em", vol)
    write_volume(tmp_path / "v.tif", vol)
    assert mrcfile.validate(str(tmp_path / "v.mrc"), print_file=open(os.devnull, "w"))
    with mrcfile.open(tmp_path / "v.mrc") as m:
        assert np.array_equal(m.data, data)
        assert float(m.voxel_size.x) == pytest.approx(4.2)
        assert (float(m.header.origin.x), float(m.header.origin.z)) == (1.0, 3.0)
    header, em_data = emfile.read(tmp_path / "v.em")
    assert np.array_equal(em_data, data) and header["xdim"] == 6
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.42)
        assert tif.imagej_metadata["unit"] == "nm"
        assert np.array_equal(tif.asarray(), data)


def test_tiff_anisotropic_spacing_and_plain_tiff(tmp_path):
    data = np.zeros((3, 4, 5), np.uint16)
    vol = Volume(data, voxel_size=2.0, metadata={"voxel_size_xyz": (2.0, 2.0, 6.0)})
    write_volume(tmp_path / "a.tiff", vol)
    back = read_volume(tmp_path / "a.tiff")
    assert back.metadata["voxel_size_xyz"] == pytest.approx((2.0, 2.0, 6.0))
    assert back.metadata["anisotropic_voxel_size"] and back.data.dtype == np.uint16
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    plain = read_volume(tmp_path / "plain.tif")
    assert plain.voxel_size == 0.0 and plain.data.shape == (3, 4, 5)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 5, 3), np.uint8), photometric="rgb")
    with pytest.raises(FormatError, match="channel"):
        read_volume(tmp_path / "rgb.tif")


def test_writes_are_atomic_and_never_overwrite(tmp_path):
    path = tmp_path / "v.mrc"
    write_volume(path, np.zeros((2, 2, 2), np.float32), voxel_size=1.0)
    with pytest.raises(FormatError, match="exists"):
        write_volume(path, np.ones((2, 2, 2), np.float32))
    write_volume(path, np.ones((2, 2, 2), np.float32), overwrite=True)
    assert read_volume(path).data.min() == 1.0
    with pytest.raises(FormatError, match="4D"):
        write_volume(tmp_path / "bad.mrc", np.zeros((2, 2, 2, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc"]
    with pytest.raises(FormatError, match="unknown volume format"):
        write_volume(tmp_path / "v.xyz", np.zeros((2, 2, 2)))


# --------------------------------------------------- real-data options, finite check


def test_voxel_size_override_and_invert(tmp_path):
    data = np.array([[[1.0, -2.0], [3.0, 0.5]]] * 2, np.float32)
    path = tmp_path / "v.mrc"
    write_volume(path, Volume(data, voxel_size=0.0))
    vol = read_volume(path, voxel_size=7.5, invert=True)
    assert vol.voxel_size == 7.5 and vol.metadata["header_voxel_size"] == 0.0
    assert np.array_equal(vol.data, -data)
    with pytest.raises(FormatError, match="positive"):
        read_volume(path, voxel_size=-1)
    ints = np.array([0, 10, 127], np.int8)
    assert invert_contrast(ints).tolist() == [127, 117, 0]


def test_read_volume_keeps_nan_and_check_finite_counts(tmp_path):
    data = np.zeros((6, 4, 4), np.float32)
    data[1, 1, 1] = np.nan
    data[5, 0, 3] = np.inf
    path = tmp_path / "nan.mrc"
    write_volume(path, Volume(data, voxel_size=1.0))
    vol = read_volume(path, mmap=True)
    assert np.isnan(vol.data[1, 1, 1])
    with pytest.raises(FormatError) as err:
        check_finite(vol, chunk_voxels=16)  # forces several slabs
    assert str(err.value) == f"{path}: 2 of 96 voxels are NaN or infinite"
    check_finite(Volume(np.zeros((2, 2, 2), np.float32)))
    check_finite(Volume(np.zeros((2, 2, 2), np.int16)))
