"""The bytes of a text file a reader parses, with the one-line errors every reader gives."""

from __future__ import annotations

from pathlib import Path

from ..errors import FormatError


def read_text_bytes(path: Path, kind: str) -> bytes:
    """The content of ``path``; FormatError if it is a directory, unreadable, empty, or binary
    (a NUL byte in its first 4 KiB). ``kind`` names the expected file in the messages."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise FormatError(path, f"is a directory, not a {kind}") from None
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    if not data.strip():
        raise FormatError(path, f"empty {kind}")
    if b"\x00" in data[:4096]:
        raise FormatError(path, f"binary content, not a {kind}")
    return data
