import json
import math
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from biostrata.errors import InputError
from biostrata.report.summary import write_report
from biostrata.report.tables import (
    PUBLISHED,
    SEED_WINS,
    WIN,
    at_or_above,
    format_params,
    results_table,
    to_markdown,
    win_counts,
)
from biostrata.train.sweep import RECORD_KEYS, Run


def record(suite: str, task: str, model: str, seed: int, score: float, params: int = 1000, metric: str = "mcc") -> dict:
    base = {k: None for k in RECORD_KEYS}
    base.update(
        suite=suite, task=task, model=model, seed=seed, metric=metric, score=score, params=params,
        wall_time_s=1.0, best_epoch=1, metrics={f"test_{metric}": score}, config={}, data={},
    )  # fmt: skip
    return base


def sweep_records() -> list[dict]:
    recs = []
    # tf/0: hcnn-m best (0.80 > cnn 0.60); beats both published (71.99 DNABERT-2, 66.64 NT).
    recs += [record("gue", "tf/0", "cnn", s, v, 500) for s, v in ((1, 0.5), (2, 0.6), (3, 0.7))]
    recs += [record("gue", "tf/0", "hcnn-s", s, v, 400) for s, v in ((1, 0.55), (2, 0.65))]
    recs += [record("gue", "tf/0", "hcnn-m", s, 0.8, 450) for s in (1, 2, 3)]
    # prom/prom_core_all: Euclidean better; below published.
    recs += [record("gue", "prom/prom_core_all", "cnn", s, 0.6) for s in (1, 2)]
    recs += [record("gue", "prom/prom_core_all", "hcnn-s", s, 0.5) for s in (1, 2)]
    # virus/covid scored by F1; only cnn ran: no win decision.
    recs += [record("gue", "virus/covid", "cnn", 1, 0.74, metric="f1")]
    # TEB: a tie counts for hyperbolic; no published numbers.
    recs += [record("teb", "lines", m, 1, 0.3) for m in ("cnn", "hcnn-s")]
    return recs


def test_table_means_stds_seeds_params():
    table = results_table(sweep_records()).set_index("task")
    assert list(table.index) == ["tf/0", "prom/prom_core_all", "virus/covid", "lines"]
    assert table.loc["tf/0", "cnn mean"] == pytest.approx(60.0)
    assert table.loc["tf/0", "cnn std"] == pytest.approx(10.0)  # sample std of 50, 60, 70
    assert table.loc["tf/0", "hcnn-s mean"] == pytest.approx(60.0)
    assert table.loc["tf/0", "hcnn-s seeds"] == 2 and table.loc["tf/0", "hcnn-m params"] == 450
    assert math.isnan(table.loc["virus/covid", "hcnn-s mean"]) and table.loc["virus/covid", "hcnn-s seeds"] == 0
    assert math.isnan(table.loc["virus/covid", "cnn std"])  # one seed
    assert table.loc["virus/covid", "metric"] == "f1"


def test_hyperbolic_wins_and_published_comparison():
    table = results_table(sweep_records()).set_index("task")
    assert table.loc["tf/0", WIN] is True
    assert table.loc["prom/prom_core_all", WIN] is False
    assert table.loc["virus/covid", WIN] is None
    assert table.loc["lines", WIN] is True  # tie: hyperbolic >= Euclidean
    assert win_counts(table) == (2, 3)
    assert table.loc["tf/0", "DNABERT-2"] == 71.99 and table.loc["tf/0", "NT-2.5B"] == 66.64
    assert math.isnan(table.loc["lines", "DNABERT-2"])
    gue = table[table["suite"] == "gue"]
    assert at_or_above(gue, "DNABERT-2", "hyperbolic") == (1, 2)  # tf/0 80 >= 71.99; prom_core_all 50 < 69.37
    assert at_or_above(gue, "DNABERT-2", "euclidean") == (1, 3)  # covid 74 >= 71.02 only
    assert at_or_above(gue, "NT-2.5B", "euclidean") == (1, 3)  # covid 74 >= 73.04; tf/0 60 < 66.64


def test_published_numbers_cover_gue():
    for name, values in PUBLISHED["gue"].items():
        assert len(values) == 28, name
    assert PUBLISHED["gue"]["DNABERT-2"]["mouse/2"] == 79.32
    assert PUBLISHED["gue"]["NT-2.5B"]["EMP/H4ac"] == 49.13
    assert PUBLISHED["gue"]["DNABERT-2"]["virus/covid"] == 71.02
    assert PUBLISHED["gue"]["NT-2.5B"]["prom/prom_300_tata"] == 79.43


def test_markdown_sections_bold_best_and_counts():
    text = to_markdown(results_table(sweep_records()))
    assert "Hyperbolic >= Euclidean on **2 of 3** tasks." in text
    assert "## GUE" in text and "## TEB" in text
    assert "Test MCC x100 (F1 x100 for virus/covid)" in text
    tf0 = next(line for line in text.splitlines() if line.startswith("| tf/0 |"))
    assert (
        tf0
        == "| tf/0 | 60.00 ± 10.00 | 60.00 ± 7.07 | **80.00 ± 0.00** | 3/2/3 | 500 / 400 / 450 | yes | 3/3 | 66.64 | 71.99 |"
    )
    assert (
        "Hyperbolic >= Euclidean on 1 of 2 GUE tasks. Hyperbolic (best model) >= NT-2.5B on 1 of 2, >= DNABERT-2 on "
        "1 of 2 tasks (published numbers). Euclidean (best model) >= NT-2.5B on 1 of 3, >= DNABERT-2 on 1 of 3 tasks"
    ) in text
    teb = text[text.index("## TEB") :]
    assert "DNABERT-2" not in teb.split("\n\n")[2]  # no published column in the TEB table


def test_format_params():
    assert [format_params(n) for n in (999, 52800, 1_234_567, 16_400_000)] == ["999", "52.8k", "1.23M", "16.4M"]
    assert format_params(float("nan")) == "–"


def write_records(folder: Path, records: list[dict]) -> None:
    for r in records:
        path = Run(r["suite"], r["task"], r["model"], r["seed"]).record_path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))


def test_write_report_files(tmp_path):
    write_records(tmp_path / "sweep", sweep_records())
    paths = write_report(tmp_path / "sweep", tmp_path / "report")
    assert set(paths) == {"markdown", "csv", "plot:gue", "plot:teb"}
    csv = pd.read_csv(paths["csv"]).set_index("task")
    assert csv.loc["tf/0", "hcnn-m mean"] == pytest.approx(80.0)
    assert csv.loc["prom/prom_core_all", "NT-2.5B"] == 70.33
    assert paths["markdown"].read_text().startswith("# Results")
    image = matplotlib.image.imread(paths["plot:gue"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not list((tmp_path / "report").glob(".*tmp"))


def test_report_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"no such folder"):
        write_report(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no record.json found"):
        write_report(tmp_path / "empty")
    bad = tmp_path / "bad" / "gue" / "tf" / "0" / "cnn" / "seed1" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"suite": "gue"')
    with pytest.raises(InputError, match=r"seed1/record.json: not a valid record"):
        write_report(tmp_path / "bad")


def test_report_command(tmp_path, capsys):
    from biostrata.cli import main

    write_records(tmp_path / "sweep", sweep_records())
    assert main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| tf/0 | 60.00 ± 10.00 |" in out and f"wrote {tmp_path / 'rep' / 'results.md'}" in out
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "results.csv",
        "results.md",
        "results_gue.png",
        "results_teb.png",
    ]
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_seed_wins_pair_the_best_models_seed_by_seed():
    table = results_table(sweep_records()).set_index("task")
    # tf/0: hcnn-m (best hyperbolic) vs cnn on seeds 1-3: 0.8 > 0.5, 0.6, 0.7
    assert table.loc["tf/0", SEED_WINS] == "3/3"
    assert table.loc["prom/prom_core_all", SEED_WINS] == "0/2"
    assert table.loc["lines", SEED_WINS] == "0/1"  # a tie is not a win
    assert not isinstance(table.loc["virus/covid", SEED_WINS], str)  # no hyperbolic run
    recs = [record("gue", "tf/1", "cnn", s, v) for s, v in ((1, 0.5), (2, 0.7), (3, 0.6))]
    recs += [record("gue", "tf/1", "hcnn-s", s, v) for s, v in ((1, 0.6), (2, 0.65))]  # seed 3 missing
    table = results_table(recs).set_index("task")
    assert table.loc["tf/1", SEED_WINS] == "1/2"
    assert "| 1/2 |" in to_markdown(results_table(recs))


def test_seed_wins_without_a_shared_seed_is_left_blank():
    recs = [record("gue", "tf/2", "cnn", 1, 0.5), record("gue", "tf/2", "hcnn-s", 2, 0.6)]
    table = results_table(recs).set_index("task")
    assert not isinstance(table.loc["tf/2", SEED_WINS], str)


def test_a_users_own_task_folder_gets_no_published_columns_or_footer():
    """`biostrata report` on a sweep of the user's own folder (named "tasks" here): the published columns and
    their footer belong to the registered suites, and the count reads as English."""
    recs = [record("tasks", "mine", m, s, v) for m, s, v in (("cnn", 1, 0.5), ("hcnn-s", 1, 0.6))]
    table = results_table(recs)
    assert not {n for p in PUBLISHED.values() for n in p} & set(table.columns)
    text = to_markdown(table)
    assert "Hyperbolic >= Euclidean on 1 of 1 tasks of tasks." in text and "tasks tasks" not in text
    assert "DNABERT-2" not in text and "Published numbers" not in text
    mixed = to_markdown(results_table(recs + sweep_records()))  # beside a registered suite: its columns only there
    assert "Published numbers: Zhou et al." in mixed
    mine = mixed[mixed.index("## tasks") :]
    assert "DNABERT-2" not in mine.split("\n\n")[2]
