"""The epoch-selection report: known curves give known numbers; a real sweep reports what its runs did."""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from biostrata.cli import main
from biostrata.config import TrainConfig
from biostrata.data.dna.benchmarks import custom_suite
from biostrata.errors import InputError
from biostrata.report.selection import selection_runs, selection_table, wins, write_selection
from biostrata.train.sweep import RECORD_KEYS, Sweep


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def fake_run(root: Path, model: str, seed: int, val: list[float], test: list[float], task: str = "t",
             legacy: bool = False) -> None:  # fmt: skip
    """A finished run's record and curves, as a sweep lays them out: epochs counted from 1, or (``legacy``) from
    0 as files of earlier versions count them, without ``epochs_from`` in the record."""
    folder = root / "s" / task / model / f"seed{seed}"
    first = 0 if legacy else 1
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    record = dict.fromkeys(RECORD_KEYS)
    record |= {"suite": "s", "task": task, "model": model, "seed": seed, "metric": "mcc", "score": test[best],
               "best_epoch": best + first, "config": {}, "data": {}, "metrics": {}}  # fmt: skip
    if not legacy:
        record["epochs_from"] = 1
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record))
    _write_csv(folder / "train" / "curve.csv", [{"epoch": i + first, "val_mcc": v} for i, v in enumerate(val)])
    _write_csv(folder / "train" / "test_curve.csv", [{"epoch": i + first, "test_mcc": v} for i, v in enumerate(test)])


@pytest.mark.parametrize("legacy", [False, True])
def test_rules_on_known_curves(tmp_path, legacy):
    """Epochs counted from 1; runs of earlier versions (counted from 0) read the same."""
    fake_run(tmp_path, "cnn", 1, val=[0.1, 0.5, 0.3, 0.5], test=[0.2, 0.4, 0.7, 0.6], legacy=legacy)
    fake_run(tmp_path, "cnn", 2, val=[0.3, 0.2, 0.1, 0.0], test=[0.3, 0.3, 0.3, 0.1], legacy=legacy)
    fake_run(tmp_path, "hcnn-s", 1, val=[0.2, 0.6, 0.1, 0.0], test=[0.1, 0.45, 0.2, 0.2], legacy=legacy)
    runs = selection_runs({"sched": tmp_path}).set_index(["model", "seed"])
    one = runs.loc[("cnn", 1)]
    # validation ties go to the earlier epoch, as in training; test picks the test curve's maximum
    assert (one["val_epoch"], one["test_epoch"]) == (2, 3)
    assert (one["val"], one["test"], one["last"], one["ref_printed"]) == (0.4, 0.7, 0.6, 0.3)
    assert runs.loc[("cnn", 2), "test_epoch"] == 1  # ties on test: the first
    table = selection_table(runs.reset_index()).set_index("model")
    assert table.loc["cnn", "seeds"] == 2
    assert table.loc["cnn", "val mean"] == pytest.approx(35.0)  # (0.4 + 0.3) / 2 x100
    assert table.loc["cnn", "test mean"] == pytest.approx(50.0)
    assert table.loc["cnn", "optimism mean"] == pytest.approx(15.0)
    assert table.loc["cnn", "ref_printed mean"] == pytest.approx(30.0)  # val at the test epochs 2 and 0
    assert table.loc["hcnn-s", "val mean"] == pytest.approx(45.0) and pd.isna(table.loc["hcnn-s", "val std"])
    won = wins(table.reset_index()).set_index("model")
    assert won.loc["hcnn-s", "val"] and not won.loc["hcnn-s", "test"] and not won.loc["hcnn-s", "last"]


def test_a_record_that_disagrees_with_its_curves_is_refused(tmp_path):
    fake_run(tmp_path, "cnn", 1, val=[0.1, 0.5], test=[0.2, 0.4])
    path = tmp_path / "s" / "t" / "cnn" / "seed1" / "record.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"best_epoch": 1}))
    with pytest.raises(InputError, match="the best validation epoch is 2, but the record says 1"):
        selection_runs({"sched": tmp_path})
    (tmp_path / "s" / "t" / "cnn" / "seed1" / "train" / "test_curve.csv").unlink()
    with pytest.raises(InputError, match=r"test_curve.csv: missing; .*Delete .*seed1"):
        selection_runs({"sched": tmp_path})


def test_report_of_a_real_sweep_on_the_command_line(tmp_path, tiny_task, capsys):
    """A tiny sweep in two schedules, then `biostrata report --selection`: the tables hold every run and
    the test MCC chosen on validation is the record's score."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train fastest on one thread
    for name, epochs in (("short", 2), ("long", 3)):
        suite = custom_suite(tiny_task)
        cfg = TrainConfig(epochs=epochs, batch_size=8, channels=4, hidden=8, progress=False)
        Sweep(suite, suite.tasks, ["cnn", "hcnn-s"], [1, 2], tmp_path / name, cfg).run(progress=False)
    torch.set_num_threads(before)
    out = tmp_path / "report"
    assert main(["report", "--selection", str(tmp_path / "short"), str(tmp_path / "long"), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "selection_runs.csv")
    assert len(runs) == 8 and set(runs["variant"]) == {"short", "long"}
    assert (runs["test"] >= runs["val"]).all() and (runs["test"] >= runs["last"]).all()
    assert set(runs["epochs"]) == {2, 3}
    assert runs.loc[runs["model"] == "cnn", "clip_max"].isna().all()
    assert runs.loc[runs["model"] == "hcnn-s", "clip_max"].between(0, 1).all()
    text = (out / "selection.md").read_text()
    assert "## short" in text and "## long" in text and "hcnn-s: val" in text
    assert (out / "curves_short_task.png").stat().st_size > 1000
    assert main(["report", "--selection", str(tmp_path / "short"), str(tmp_path / "long")]) == 2
    assert "--out: give a folder for selection.md" in capsys.readouterr().err


def test_variants_need_distinct_folder_names(tmp_path):
    (tmp_path / "x" / "same").mkdir(parents=True)
    (tmp_path / "y" / "same").mkdir(parents=True)
    with pytest.raises(InputError, match="different names"):
        write_selection([tmp_path / "x" / "same", tmp_path / "y" / "same"], tmp_path / "out")
