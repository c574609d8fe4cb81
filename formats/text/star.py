"""Fast STAR file reading and writing (RELION, crYOLO CBOX, STOPGAP, Warp).

A STAR file is a sequence of ``data_<name>`` blocks; each block holds either key/value
pairs (``_label value``) or a ``loop_`` table (``_label #n`` header lines, then
whitespace-separated rows, strings with spaces in double quotes). Loop bodies are parsed
by pandas' C tokenizer in one call each, which is what makes a million-row file load in
seconds rather than the minute a row-by-row parser needs.

Columns whose label names a file or a name (``rlnTomoName``, ``rlnMicrographName``,
``rlnImageName``, ...) are kept as strings, so a tomogram called ``001`` stays ``"001"``.
``<NA>`` (crYOLO's missing value) and ``nan`` read as NaN.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import FormatError, PathLike
from .raw import read_text_bytes
from .textfmt import format_table

Block = Union[pd.DataFrame, dict]

# Labels that are text even when every value looks like a number.
_STRING_LABEL = re.compile(
    r"(Name|File|FileName|Image|Movie|Tomogram|TomogramHalf[12]|StarFile|Directive|Frames"
    r"|Metadata|halfset|motl_name|tomo_name|subtomo_name)$",
    re.IGNORECASE,
)
_NA_VALUES = ["<NA>", "nan", "NaN", "NAN", "-nan"]


def _is_string_label(label: str) -> bool:
    return bool(_STRING_LABEL.search(label))


def _scan(data: bytes, path: PathLike, parse_bodies: bool,
          str_columns: Iterable[str] = ()) -> dict[str, Block]:
    """Walk the blocks of ``data``; loop bodies are parsed only when ``parse_bodies``."""
    blocks: dict[str, Block] = {}
    extra_str = set(str_columns)
    n = len(data)
    pos = 0
    current: str | None = None
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end
        line = data[pos:end].strip()
        pos = end + 1
        if not line or line.startswith(b"#"):
            continue
        if line.startswith(b"data_"):
            current = _decode(line[5:], path).strip()
            blocks[current] = {}
            continue
        if current is None:
            raise FormatError(path, f"not a STAR file: content before the first data_ block "
                                    f"('{_decode(line[:40], path)}')")
        if line.split()[0] == b"loop_":
            labels, pos = _loop_labels(data, pos, path, current)
            body_end = _body_end(data, pos)
            if parse_bodies:
                blocks[current] = _parse_body(data[pos:body_end], labels, path, current,
                                              extra_str)
            else:
                blocks[current] = pd.DataFrame(columns=labels)
            pos = body_end
            continue
        if line.startswith(b"_"):
            parts = line.split(None, 1)
            key = _decode(parts[0][1:], path)
            value = _decode(parts[1], path).strip() if len(parts) > 1 else ""
            block = blocks[current]
            if not isinstance(block, dict):
                raise FormatError(path, f"block data_{current}: key '{key}' after a loop")
            block[key] = _kv_value(key, value, extra_str)
            continue
        raise FormatError(path, f"block data_{current}: unexpected line "
                                f"'{_decode(line[:60], path)}' (not a label, loop_ or data_)")
    return blocks


def _decode(raw: bytes, path: PathLike) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(path, "not a text STAR file (invalid UTF-8)") from None


def _loop_labels(data: bytes, pos: int, path: PathLike, block: str) -> tuple[list[str], int]:
    labels: list[str] = []
    n = len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end
        line = data[pos:end].strip()
        if not line or line.startswith(b"#"):
            pos = end + 1
            continue
        if not line.startswith(b"_"):
            break
        labels.append(_decode(line.split()[0][1:], path))
        pos = end + 1
    if not labels:
        raise FormatError(path, f"block data_{block}: loop_ without column labels")
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise FormatError(path, f"block data_{block}: duplicate column labels {dup}")
    return labels, pos


def _body_end(data: bytes, pos: int) -> int:
    """End of a loop body: the next line starting with data_, loop_ or _label.

    One vectorised pass over the line starts instead of three scans of the whole body.
    """
    start = max(pos - 1, 0)
    arr = np.frombuffer(data, dtype=np.uint8)[start:]
    newlines = np.flatnonzero(arr[:-1] == 10)
    first = arr[newlines + 1]
    cand = newlines[(first == ord("_")) | (first == ord("d")) | (first == ord("l"))]
    for nl in cand:
        at = start + int(nl) + 1
        if data.startswith((b"_", b"data_", b"loop_"), at):
            return at
    return len(data)


def _parse_body(body: bytes, labels: list[str], path: PathLike, block: str,
                extra_str: set[str]) -> pd.DataFrame:
    if not body.strip(b" \t\r\n"):
        return pd.DataFrame({lab: pd.Series(dtype=object if _is_string_label(lab) else float)
                             for lab in labels})
    dtype = {lab: str for lab in labels if lab in extra_str or _is_string_label(lab)}
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when a row has more values than labels
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.BytesIO(body), sep=r"\s+", header=None, names=labels,
                             index_col=False, quotechar='"', comment="#", dtype=dtype,
                             na_values=_NA_VALUES, keep_default_na=False, engine="c")
    except pd.errors.ParserWarning:
        raise FormatError(path, f"block data_{block}: malformed loop rows (a row has more "
                                f"values than the {len(labels)} column labels)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise FormatError(path, f"block data_{block}: malformed loop rows ({msg})") from None
    except UnicodeDecodeError:
        raise FormatError(path, f"block data_{block}: invalid UTF-8 text in the loop") from None
    return df


def _kv_value(key: str, value: str, extra_str: set[str]):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    if key in extra_str or _is_string_label(key):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_star(path: PathLike, str_columns: Iterable[str] = ()) -> dict[str, Block]:
    """Read every block of a STAR file.

    Args:
        path: the STAR file.
        str_columns: extra labels to keep as strings (names/paths are already kept).

    Returns:
        ``{block_name: DataFrame | dict}`` in file order (``data_`` alone gives key ``""``);
        loop blocks are DataFrames with the labels (no leading ``_``) as columns,
        key/value blocks are dicts.
    """
    p = Path(path)
    data = read_text_bytes(p, "STAR file")
    blocks = _scan(data, p, parse_bodies=True, str_columns=str_columns)
    if not blocks:
        raise FormatError(p, "no data_ block (not a STAR file)")
    return blocks


def star_structure(path: PathLike, max_bytes: int = 1 << 20) -> dict[str, list[str]]:
    """Block names and their labels (loop columns or keys), from the first ``max_bytes``.

    Used to tell STAR flavours apart without parsing a large file; ``{}`` when the head of
    the file is not a STAR file.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes)
    except OSError:
        return {}
    if len(data) == max_bytes:
        data = data[: data.rfind(b"\n") + 1]
    try:
        blocks = _scan(data, p, parse_bodies=False)
    except FormatError:
        return {}
    return {name: list(b.columns) if isinstance(b, pd.DataFrame) else list(b)
            for name, b in blocks.items()}


def _format_kv(block: Mapping) -> str:
    width = max((len(k) for k in block), default=0) + 2
    lines = []
    for key, value in block.items():
        text = _format_scalar(value)
        lines.append(f"_{key:<{width}}{text}")
    return "\n".join(lines) + "\n"


def _format_scalar(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6f}"
    text = str(value)
    if text == "" or any(c.isspace() for c in text):
        return '"' + text + '"'
    return text


def _format_loop(df: pd.DataFrame, na_rep: str = "nan") -> bytes:
    header = "loop_\n" + "".join(f"_{col} #{i + 1}\n" for i, col in enumerate(df.columns))
    if len(df) == 0:
        return header.encode("utf-8")
    return header.encode("utf-8") + format_table(df, na_rep=na_rep)


def star_bytes(blocks: Mapping[str, Block], version: str | None = None,
               na_rep: str = "nan") -> bytes:
    """The content of a STAR file holding ``blocks`` (see ``write_star``)."""
    parts: list[bytes] = []
    for name, block in blocks.items():
        if version:
            parts.append(f"\n# version {version}\n".encode())
        parts.append(f"\ndata_{name}\n\n".encode())
        if isinstance(block, pd.DataFrame):
            parts.append(_format_loop(block, na_rep))
        else:
            parts.append(_format_kv(block).encode("utf-8"))
    parts.append(b"\n")
    return b"".join(parts)


def write_star(path: PathLike, blocks: Mapping[str, Block], overwrite: bool = False,
               version: str | None = None, na_rep: str = "nan") -> None:
    """Write STAR blocks atomically.

    Loop cells are written right-aligned with 6 (or 9, for columns below 100) decimals,
    see ``formats.textfmt``.

    Args:
        path: output file.
        blocks: ``{name: DataFrame (loop) | dict (key/value)}``, written in order.
        overwrite: replace an existing file.
        version: RELION ``# version`` comment before each block (e.g. ``"50001"``).
        na_rep: text of missing values (crYOLO uses ``<NA>``).
    """
    data = star_bytes(blocks, version=version, na_rep=na_rep)
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
