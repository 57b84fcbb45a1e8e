"""A sweep's report files: ``results.md`` and ``results.csv`` (``report.tables``) and one chart per
suite (``report.plots``)."""

from __future__ import annotations

from pathlib import Path

from biostrata.io import atomic_write_text
from biostrata.report.plots import plot_suite
from biostrata.report.tables import results_table, sweep_records, to_markdown


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv`` and one ``results_<suite>.png`` per suite.

    Returns the written paths keyed ``"markdown"``, ``"csv"`` and ``"plot:<suite>"``.
    """
    sweep_dir = Path(sweep_dir)
    records = sweep_records(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    table = results_table(records)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv"}
    atomic_write_text(paths["markdown"], to_markdown(table))
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    for suite in table["suite"].unique():
        path = out_dir / f"results_{suite}.png"
        plot_suite(table[table["suite"] == suite], path)
        paths[f"plot:{suite}"] = path
    return paths
