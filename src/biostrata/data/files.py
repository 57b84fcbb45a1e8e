"""Opening data files: plain or gzip-compressed (told by the first bytes, not the name), and refused with a
message that names the file when they are not text or their compression is damaged."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from biostrata.errors import InputError

__all__ = ["is_gzip", "open_bytes", "open_text", "text_only"]


def is_gzip(path: str | Path) -> bool:
    """Whether ``path`` is gzip-compressed, told by its first bytes (the magic ``1f 8b``), not its name."""
    with Path(path).open("rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def open_bytes(path: str | Path) -> BinaryIO:
    """``path`` opened for reading bytes, decompressed when it is gzip (:func:`is_gzip`)."""
    return gzip.open(path, "rb") if is_gzip(path) else Path(path).open("rb")


@contextmanager
def text_only(path: str | Path, expected: str) -> Iterator[None]:
    """Refuse a file that is not UTF-8 text (a binary file given where text is read), naming it and the
    ``expected`` kind of file, instead of the UnicodeDecodeError that reading it raises in the block; and a
    damaged gzip file, instead of gzip's or zlib's error."""
    try:
        yield
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; give {expected}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise InputError(f"{path}: a damaged gzip file ({err}); compress it again, or give it uncompressed") from None


@contextmanager
def open_text(path: str | Path) -> Iterator[TextIO]:
    """``path`` as text (UTF-8, a byte-order mark dropped), decompressed when it is gzip (:func:`is_gzip`)."""
    with open_bytes(path) as binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
        yield handle
