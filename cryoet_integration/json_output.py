"""JSON the project writes (summaries, scores, metadata): one sanitiser, one contract.

NaN and infinities become ``null`` (JSON has no NaN; a reader gets "unknown", never a
parse error), numpy scalars and arrays become Python numbers and lists, paths become
strings, tuples lists. Files are written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePath
from typing import Any


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON types, with NaN/inf replaced by None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_ready(value.tolist())  # numpy arrays and scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = 2) -> str:
    """:func:`json_ready` ``value`` as JSON text (never NaN)."""
    return json.dumps(json_ready(value), indent=indent, allow_nan=False)


def write_json(path: str | Path, value: Any, overwrite: bool = False) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically (``-``: print to stdout)."""
    from formats.atomic import atomic_path

    text = dumps(value)
    if str(path) == "-":
        print(text)
        return
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text + "\n")
