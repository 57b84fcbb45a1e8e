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


def test_every_option_has_help_that_shows_its_default():
    """One formatter for every command: an option's help ends with its default (#23: embed, cka and probe hid
    theirs, e.g. probe's 5 folds x 10 seeds x 1,000 bootstrap resamples)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for name, parser in sub.choices.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or "-h" in action.option_strings:
                continue
            text = formatter._get_help_string(action)
            assert (action.help or "").strip(), f"{name} {action.option_strings[0]} has no help"
            if action.default not in (None, False):
                assert "default" in text, f"{name} {action.option_strings[0]}: {text!r}"
                seen += 1
    assert seen > 30
    probe = sub.choices["probe"].format_help()
    assert "(default: 5)" in probe and "(default: 1000)" in probe


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
    assert main(["train", "--data", str(tiny_task), "--train", str(tiny_task / "train.csv")]) == 2
    assert "not both" in capsys.readouterr().err


def test_commands_keep_their_order_and_python_m_works():
    run = subprocess.run([sys.executable, "-m", "biostrata.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [
        "demo", "study", "train", "simulate", "benchmark", "report", "annotate", "pretrain", "embed", "delta", "cka",
        "probe",
    ]  # fmt: skip
    assert all(f"    {name}" in run.stdout for name in sub.choices)


def test_help_and_option_errors_load_no_torch_lightning_or_pandas():
    """`biostrata COMMAND --help` and bad options answer at once: heavy imports wait for the command to run."""
    code = (
        "import sys\nfrom biostrata.cli import main\n"
        "for argv in (['delta', '--help'], ['train', '--help'], ['simulate', '--out', 'x', '--tree', 'star']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert "biostrata: error: tree='star' (--tree) is invalid" in run.stderr


def test_every_subcommand_has_a_one_line_help_and_a_description():
    from biostrata.cli.common import COMMANDS

    for name, cmd in COMMANDS.items():
        assert cmd.help and "\n" not in cmd.help and cmd.description, name


def test_the_help_names_the_files_train_writes():
    """The doc walk of #23 found train's help naming model.pt, which train no longer writes."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(sub.choices["train"].format_help().split())
    assert "config.json, model.safetensors" in text and "model.pt" not in text
    assert "the run folder of `biostrata train`" in " ".join(sub.choices["delta"].format_help().split())
