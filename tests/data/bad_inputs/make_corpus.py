"""Regenerate the bad-input corpus: small malformed files that every reader must reject.

Run ``python tests/data/bad_inputs/make_corpus.py [OUT_DIR]`` (default: this folder). The
output is deterministic (fixed seeds, no timestamps), so the committed files can be checked
against a fresh run. Each file name says what is wrong with it; ``CORPUS`` maps every name
to a one-line description. Every file here must make ``cryovis info`` and ``cryovis
convert`` exit non-zero with one error line naming the file.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

RELION_HEADER = """
# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
"""


def _garbage(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _mrc(nx: int = 8, ny: int = 8, nz: int = 8, mode: int = 2, data_bytes: int | None = None,
         **fields: object) -> bytes:
    """An MRC2014 header with the given fields, followed by ``data_bytes`` bytes of data."""
    h = np.zeros((), dtype=HEADER_DTYPE)
    h["nx"], h["ny"], h["nz"], h["mode"] = nx, ny, nz, mode
    h["mx"], h["my"], h["mz"] = max(nx, 0), max(ny, 0), max(nz, 0)
    h["cella"] = (2.0 * max(nx, 0), 2.0 * max(ny, 0), 2.0 * max(nz, 0))
    h["cellb"] = (90.0, 90.0, 90.0)
    h["mapc"], h["mapr"], h["maps"] = 1, 2, 3
    h["ispg"] = 1
    h["nversion"] = 20140
    h["map"] = b"MAP "
    h["machst"] = (0x44, 0x44, 0, 0)
    for key, value in fields.items():
        h[key] = value
    if data_bytes is None:
        data_bytes = max(nx, 0) * max(ny, 0) * max(nz, 0) * 4
    data = np.arange(data_bytes // 4 + 1, dtype="<f4").tobytes()[:data_bytes]
    return h.tobytes() + data


def _em(nx: int, ny: int, nz: int, code: int = 5, data_bytes: int | None = None,
        machine: int = 6) -> bytes:
    header = bytes([machine, 0, 0, code]) + struct.pack("<3i", nx, ny, nz)
    header += b"\x00" * (512 - len(header))
    if data_bytes is None:
        data_bytes = nx * ny * nz * 4
    return header + np.ones(data_bytes // 4 + 1, dtype="<f4").tobytes()[:data_bytes]


def _star(rows: list[str], header: str = RELION_HEADER) -> bytes:
    return (header + "\n".join(rows) + "\n").encode()


_GOOD_ROWS = ["TS_01 10.0 20.0 30.0 0.0 90.0 0.0", "TS_01 11.0 21.0 31.0 10.0 80.0 5.0"]

CORPUS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "mrc_empty.mrc": ("0-byte MRC", lambda: b""),
    "mrc_short_header.mrc": ("file ends inside the 1024-byte header",
                             lambda: _mrc()[:300]),
    "mrc_truncated_data.mrc": ("header says 16^3 float32, only half the data is there",
                               lambda: _mrc(16, 16, 16, data_bytes=16 * 16 * 8 * 4)),
    "mrc_lying_header_size.mrc": ("header claims 1000^3 voxels, file holds 64 bytes",
                                  lambda: _mrc(1000, 1000, 1000, data_bytes=64)),
    "mrc_mode99.mrc": ("unknown MRC mode 99", lambda: _mrc(mode=99)),
    "mrc_mode4_complex.mrc": ("complex float32 (Fourier) map", lambda: _mrc(mode=4)),
    "mrc_mode3_complex.mrc": ("complex int16 map", lambda: _mrc(mode=3)),
    "mrc_zero_dims.mrc": ("NZ = 0", lambda: _mrc(nz=0)),
    "mrc_negative_dims.mrc": ("NX = -5", lambda: _mrc(nx=-5)),
    "mrc_bad_mapcrs.mrc": ("MAPC/MAPR/MAPS = 1, 1, 3 is not a permutation",
                           lambda: _mrc(mapr=1)),
    "mrc_negative_nsymbt.mrc": ("negative extended header size", lambda: _mrc(nsymbt=-100)),
    "mrc_ext_header_past_eof.mrc": ("extended header of 1 MB in a 3 kB file",
                                    lambda: _mrc(nsymbt=1_000_000)),
    "mrc_garbage.mrc": ("2 kB of random bytes", lambda: _garbage(2048, 1)),
    "mrc_text.mrc": ("a STAR file renamed to .mrc", lambda: _star(_GOOD_ROWS) * 40),
    "map_garbage_big_endian_stamp.map": ("random header with a big-endian machine stamp",
                                         lambda: _garbage(212, 2) + b"\x11\x11\x00\x00"
                                         + _garbage(2000, 3)),
    "em_empty.em": ("0-byte EM", lambda: b""),
    "em_truncated.em": ("EM header says 32^3 float32, data cut short",
                        lambda: _em(32, 32, 32, data_bytes=1000)),
    "em_bad_dtype.em": ("EM data type code 7 does not exist", lambda: _em(4, 4, 4, code=7)),
    "em_complex.em": ("EM complex data (type 8)", lambda: _em(4, 4, 4, code=8)),
    "em_zero_dims.em": ("EM with zdim 0", lambda: _em(4, 4, 0)),
    "em_bad_machine.em": ("EM machine byte 77", lambda: _em(4, 4, 4, machine=77)),
    "em_garbage.em": ("random bytes", lambda: _garbage(1500, 4)),
    "tif_garbage.tif": ("random bytes with a .tif name", lambda: _garbage(1000, 5)),
    "tiff_ifd_past_eof.tiff": ("TIFF magic with the first IFD beyond the end of the file",
                               lambda: b"II*\x00" + struct.pack("<I", 100_000) + bytes(24)),
    "star_empty.star": ("0-byte STAR", lambda: b""),
    "star_garbage.star": ("binary garbage named .star", lambda: _garbage(700, 6)),
    "star_no_blocks.star": ("text without any data_ block",
                            lambda: b"this is not a star file\njust words\n"),
    "star_missing_coordinates.star": (
        "RELION particles without rlnCoordinate columns",
        lambda: _star(["TS_01 0.0 90.0 0.0"], RELION_HEADER.split("_rlnCoordinateX")[0]
                      + "_rlnAngleRot #2\n_rlnAngleTilt #3\n_rlnAnglePsi #4\n")),
    "star_misspelt_columns.star": (
        "_rlnCoordinatX / _rlnCoordinateYY instead of rlnCoordinateX/Y",
        lambda: _star(_GOOD_ROWS, RELION_HEADER.replace("CoordinateX", "CoordinatX")
                      .replace("CoordinateY", "CoordinateYY"))),
    "star_text_in_numeric.star": ("'abc' in rlnCoordinateX",
                                  lambda: _star(["TS_01 abc 20.0 30.0 0.0 90.0 0.0"])),
    "star_nan_positions.star": ("nan in rlnCoordinateY",
                                lambda: _star(["TS_01 10.0 nan 30.0 0.0 90.0 0.0"])),
    "star_ragged_rows.star": ("loop rows with 3 of 7 values",
                              lambda: _star(["TS_01 10.0 20.0", "TS_01 1.0 2.0"])),
    "tbl_garbage.tbl": ("binary garbage named .tbl", lambda: _garbage(900, 7)),
    "tbl_short_rows.tbl": ("Dynamo rows with 5 columns (position needs 26)",
                           lambda: b"1 1 1 0 0\n2 1 1 0 0\n"),
    "tbl_text.tbl": ("words in a Dynamo table", lambda: b"tag aligned averaged\nfoo bar baz\n"),
    "tbl_nan_positions.tbl": (
        "Dynamo table with NaN in column 24 (x)",
        lambda: (" ".join(["1", "1", "1"] + ["0"] * 20 + ["nan", "10", "10"]) + "\n").encode()),
    "mod_garbage.mod": ("binary garbage named .mod", lambda: _garbage(600, 8)),
    "mod_truncated.mod": ("IMOD magic followed by 20 bytes of header",
                          lambda: b"IMODV1.2" + _garbage(20, 9)),
    "mod_text.mod": ("a text file named .mod", lambda: b"x y z\n1 2 3\n"),
    "cbox_garbage.cbox": ("binary garbage named .cbox", lambda: _garbage(800, 10)),
    "cbox_no_cryolo_block.cbox": ("valid STAR without data_cryolo",
                                  lambda: b"data_global\n\n_cbox_format_version 1.0\n"),
    "cbox_text_in_coordinates.cbox": (
        "'oops' in CoordinateX of a 3D cbox",
        lambda: b"data_cryolo\n\nloop_\n_CoordinateX #1\n_CoordinateY #2\n_CoordinateZ #3\n"
                b"_Width #4\n_Height #5\n_Depth #6\noops 1.0 2.0 10 10 10\n"),
    "json_garbage.json": ("binary garbage named .json", lambda: _garbage(500, 11)),
    "json_invalid.json": ("unterminated JSON", lambda: b'{"points": [{"location": {"x": 1'),
    "json_wrong_schema.json": ("valid JSON that is no picks file", lambda: b'{"foo": [1, 2]}'),
    "xml_garbage.xml": ("binary garbage named .xml", lambda: _garbage(500, 12)),
    "xml_unclosed.xml": ("unclosed PyTom particle list",
                         lambda: b'<ParticleList><Particle Filename="a.em"><PickPosition X="1"'),
    "xml_wrong_root.xml": ("well-formed XML that is no particle list",
                           lambda: b"<html><body>hello</body></html>"),
    "csv_empty.csv": ("0-byte CSV", lambda: b""),
    "csv_garbage.csv": ("binary garbage named .csv", lambda: _garbage(600, 13)),
    "csv_nan_positions.csv": ("NaN in column y", lambda: b"x,y,z\n1,2,3\n4,NaN,6\n"),
    "csv_text_in_numeric.csv": ("'seven' in column x", lambda: b"x,y,z\n1,2,3\nseven,5,6\n"),
    "csv_missing_z.csv": ("x,y without z", lambda: b"x,y\n1,2\n3,4\n"),
    "mdoc_no_sections.mdoc": ("mdoc with global keys only", lambda: b"PixelSpacing = 1.9\n"),
    "mdoc_garbage.mdoc": ("binary garbage named .mdoc", lambda: _garbage(400, 14)),
    "box_text.box": ("words in an EMAN .box file", lambda: b"left bottom width height\n"),
    "doc_bad_lines.doc": ("Dynamo table map lines without an index",
                          lambda: b"tomo_a.mrc\ntomo_b.mrc\n"),
    "unknown_extension.xyz": ("an extension no reader knows", lambda: b"1 2 3\n"),
    "no_extension": ("no extension at all", lambda: b"1 2 3\n"),
}


def write_corpus(out: Path) -> list[Path]:
    """Write every corpus file into ``out`` (created if needed); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_, make) in CORPUS.items():
        path = out / name
        path.write_bytes(make())
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    written = write_corpus(target)
    print(f"wrote {len(written)} files to {target}")
