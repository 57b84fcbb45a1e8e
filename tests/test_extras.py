"""Optional parts: what each extra installs, and the one-line error when one is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from biostrata.cli import main
from biostrata.errors import InputError
from biostrata.extras import EXTRAS, require

ROOT = Path(__file__).resolve().parents[1]


def hide(monkeypatch: pytest.MonkeyPatch, top: str) -> None:
    """Make ``top`` and its submodules unimportable, as if its package were not installed."""
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, top, None)


@pytest.mark.parametrize(("extra", "top"), [(e, m) for e, mods in EXTRAS.items() for m in mods])
def test_a_missing_package_names_its_extra(monkeypatch, extra, top):
    hide(monkeypatch, top)
    with pytest.raises(
        InputError, match=rf"needs {EXTRAS[extra][top]}, which is not installed: pip install 'biostrata\[{extra}\]'"
    ):
        require(top + ".anything")


def test_a_module_of_no_extra_is_a_programming_error():
    with pytest.raises(ValueError, match="belongs to no extra"):
        require("numpy")


def test_pyproject_declares_each_extra_and_keeps_them_out_of_the_core():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for extra, modules in EXTRAS.items():
        declared = " ".join(project["optional-dependencies"][extra])
        for package in modules.values():
            assert package in declared and package not in core, (extra, package)
    assert "biostrata[protein,annotate,umap,ray]" in project["optional-dependencies"]["all"]


def test_annotate_without_its_extra_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    genome = tmp_path / "g.fa"
    genome.write_text(">contig\n" + "ATGAAACCCGGGTTTTAA" * 20 + "\n")
    hide(monkeypatch, "pyrodigal")
    hide(monkeypatch, "pyhmmer")
    assert main(["annotate", str(genome), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'biostrata[annotate]'" in err
