import json
from pathlib import Path

import pandas as pd
import pytest

from biostrata.errors import InputError
from biostrata.report.compare import comparison_markdown, comparison_table, write_comparison
from biostrata.train.sweep import RECORD_KEYS, Run


def record(task: str, model: str, seed: int, dev: float, test: float, minutes: float = 2.0) -> dict:
    base = {k: None for k in RECORD_KEYS}
    base.update(
        suite="gue", task=task, model=model, seed=seed, metric="mcc", score=test, params=10, best_epoch=seed,
        wall_time_s=minutes * 60, metrics={"dev_mcc": dev, "test_mcc": test}, config={}, data={},
    )  # fmt: skip
    return base


def sweeps() -> dict[str, list[dict]]:
    # "long" wins on dev for hcnn-s although "base" has the better test score: selection uses dev.
    return {
        "base": [record("tf/0", "hcnn-s", s, 0.50, 0.70) for s in (1, 2)] + [record("tf/0", "cnn", 1, 0.6, 0.6)],
        "long": [record("tf/0", "hcnn-s", 1, 0.55, 0.60), record("tf/0", "hcnn-s", 2, 0.65, 0.62, 4.0)],
    }


def test_table_stats_and_best_on_dev():
    table = comparison_table(sweeps())
    assert list(zip(table["model"], table["variant"])) == [("cnn", "base"), ("hcnn-s", "base"), ("hcnn-s", "long")]
    long = table.set_index(["model", "variant"]).loc[("hcnn-s", "long")]
    assert long["dev mean"] == pytest.approx(60.0) and long["dev std"] == pytest.approx(7.0710678)
    assert long["test mean"] == pytest.approx(61.0) and long["seeds"] == 2
    assert long["best epoch"] == pytest.approx(1.5) and long["minutes"] == pytest.approx(3.0)
    assert table["best on dev"].tolist() == [True, False, True]


def test_markdown_bolds_the_dev_winner():
    text = comparison_markdown(comparison_table(sweeps()))
    assert "| tf/0 | hcnn-s | **long** | 2 | 60.00 ± 7.07 | 61.00 ± 1.41 | 1.5 | 3.0 |" in text
    assert "| tf/0 | hcnn-s | base | 2 | 50.00 ± 0.00 | 70.00 ± 0.00 | 1.5 | 2.0 |" in text


def write_sweep(folder: Path, records: list[dict]) -> None:
    for r in records:
        path = Run(r["suite"], r["task"], r["model"], r["seed"]).record_path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))


def test_write_and_command(tmp_path, capsys):
    from biostrata.cli import main

    for name, records in sweeps().items():
        write_sweep(tmp_path / name, records)
    paths = write_comparison([tmp_path / "base", tmp_path / "long"], tmp_path / "cmp")
    assert pd.read_csv(paths["csv"])["best on dev"].tolist() == [True, False, True]
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "long"), "--out", str(tmp_path / "c2")]) == 0
    assert "**long**" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "long")]) == 2
    assert "--out: give a folder" in capsys.readouterr().err


def test_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        write_comparison([tmp_path / "none", tmp_path / "x"], tmp_path)
    write_sweep(tmp_path / "a" / "same", sweeps()["base"])
    write_sweep(tmp_path / "b" / "same", sweeps()["long"])
    with pytest.raises(InputError, match="two sweep folders are named 'same'"):
        write_comparison([tmp_path / "a" / "same", tmp_path / "b" / "same"], tmp_path)
    bad = record("tf/0", "cnn", 1, 0.5, 0.5)
    del bad["metrics"]["dev_mcc"]
    with pytest.raises(InputError, match="has no 'dev_mcc'"):
        comparison_table({"v": [bad]})
