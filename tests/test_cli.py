import argparse
import subprocess
import sys

import pytest

from biostrata.cli import build_parser, main


def test_every_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    assert {"train", "demo"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name


def test_train_two_seeds_prints_mean_and_spread(tiny_task, tmp_path, capsys):
    code = main(
        ["train", "--data", str(tiny_task), "--model", "cnn", "--seeds", "1", "2", "--out", str(tmp_path / "r"),
         "--epochs", "1", "--channels", "4", "--hidden", "8", "--blocks", "1", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "cnn seed 1: test MCC" in out and "over seeds [1, 2]" in out
    assert (tmp_path / "r" / "seed2" / "metrics.json").is_file()


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "t.csv").write_text("sequence,label\nACGZ,0\n")
    run = subprocess.run(
        [sys.executable, "-m", "biostrata.cli", "train", "--train", str(tmp_path / "t.csv"), "--dev",
         str(tmp_path / "t.csv"), "--test", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2
    assert "biostrata: error:" in run.stderr and "Traceback" not in run.stderr
    assert "t.csv" in run.stderr


def test_data_and_files_are_exclusive(tiny_task, capsys):
    assert main(["train", "--data", str(tiny_task), "--train", "x.csv"]) == 2
    assert "not both" in capsys.readouterr().err
