"""Tests of biostrata.data.files: plain or gzip files, refused by name when not text or damaged."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from biostrata.data.files import is_gzip, open_text, text_only
from biostrata.errors import InputError


def test_gzip_is_told_by_the_first_bytes_and_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(gzip.compress("\ufeffline\n".encode()))
    (tmp_path / "b.gz").write_text("plain\n")
    assert is_gzip(tmp_path / "a.txt") and not is_gzip(tmp_path / "b.gz")
    with open_text(tmp_path / "a.txt") as a, open_text(tmp_path / "b.gz") as b:
        assert (a.read(), b.read()) == ("line\n", "plain\n")


def test_text_only_names_the_file_and_what_to_give(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(bytes(range(256)))
    with pytest.raises(InputError, match=r"bin: not a text file; give a list"), text_only(tmp_path / "bin", "a list"):
        with open_text(tmp_path / "bin") as handle:
            handle.read()
    (tmp_path / "cut").write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(InputError, match=r"cut: a damaged gzip file"), text_only(tmp_path / "cut", "a list"):
        with open_text(tmp_path / "cut") as handle:
            handle.read()
