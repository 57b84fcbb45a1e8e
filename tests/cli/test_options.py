"""Options made in one place (biostrata.cli.options): types and defaults read from the library function a command
calls, and a library error about a parameter that reaches the user naming the command's option too."""

from __future__ import annotations

import argparse
import functools
import inspect
from collections.abc import Sequence

import numpy as np
import pytest

from biostrata.cli import build_parser, main
from biostrata.cli.options import Option, add_options, named, value_type
from biostrata.errors import ParameterError
from biostrata.settings import SettingError


def subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize(
    "annotation, expected",
    [
        (int, (int, False)),
        (int | None, (int, False)),
        (bool, (bool, False)),
        (str | Sequence[str], (str, True)),
        (int | Sequence[int], (int, True)),
        (Sequence[float] | None, (float, True)),
        (list[int], (int, True)),
        (str | None, (str, False)),
    ],
)
def test_the_type_on_the_command_line_of_an_annotation(annotation, expected):
    assert value_type(annotation) == expected


def test_a_parameter_gives_its_type_and_default_and_an_own_option_its_own():
    def f(x, *, budget: int | None = None, layers: Sequence[int] = (-1,), pooling: str | Sequence[str] = "mean",
          exact: bool = False, rate: float = 0.5) -> None:  # fmt: skip
        """A library function."""

    p = argparse.ArgumentParser()
    add_options(
        p, f, Option("input", "input", param="x", positional=True), Option("budget", "tokens"),
        Option("layers", "layers"), Option("pooling", "outputs"), Option("exact", "exact"), Option("rate", "rate"),
        Option("json", "print JSON", default=False),
    )  # fmt: skip
    args = p.parse_args(["a.txt", "--budget", "4", "--rate", "1"])
    assert (args.input, args.budget, args.layers, args.pooling, args.exact, args.rate, args.json) == (
        "a.txt", 4, [-1], ["mean"], False, 1.0, False
    )  # fmt: skip
    assert args.flags == {"x": "INPUT", "budget": "--budget", "layers": "--layers", "pooling": "--pooling",
                          "exact": "--exact", "rate": "--rate", "json": "--json"}  # fmt: skip
    with pytest.raises(AssertionError, match="has no parameter nope"):
        add_options(argparse.ArgumentParser(), f, Option("nope", "a typo"))


def test_the_commands_take_the_defaults_of_the_functions_they_call():
    """No default written twice: each option of a library parameter defaults to the parameter's default."""
    from biostrata.api.analysis import cka, delta, probe
    from biostrata.api.models import embed, load

    for command, functions in (("delta", [delta]), ("cka", [cka]), ("probe", [probe]), ("embed", [embed, load])):
        p = subparser(command)
        params = {n: v for f in functions for n, v in inspect.signature(f).parameters.items()}
        dests = {a.dest: a for a in p._actions}
        by_param = {param: flag for param, flag in p.get_default("flags").items() if param in params}
        assert len(by_param) >= 5, command
        for param, flag in by_param.items():
            action = next(a for a in dests.values() if flag in (*a.option_strings, a.metavar or a.dest.upper()))
            default = params[param].default
            if default is inspect.Parameter.empty or action.nargs == "+" and action.required:
                continue
            as_given = list(default) if isinstance(default, tuple) else default
            assert action.default in (as_given, [as_given]), (command, param)
    assert subparser("embed").get_default("flags")["trusted"] == "--trust-checkpoint"
    assert subparser("delta").get_default("flags")["x"] == "INPUT"


@pytest.mark.parametrize(
    "param, message, expected",
    [
        ("token_budget", "token_budget=0: must be at least 1", "token_budget=0 (--token-budget): must be at least 1"),
        ("seeds", "seeds=[1, 1]: give each seed once", "seeds=[1, 1] (--seeds): give each seed once"),
        ("token_budget", "token_budget: give a whole number", "token_budget (--token-budget): give a whole number"),
        ("trusted", "a .pt file runs code when read; trust it", "trusted (--trust-checkpoint): a .pt file runs code "
         "when read; trust it"),
        ("elsewhere", "elsewhere=1: no", "elsewhere=1: no"),  # not an option of this command: as it is
    ],
)  # fmt: skip
def test_a_parameter_error_names_the_option(param, message, expected):
    flags = {"token_budget": "--token-budget", "seeds": "--seeds", "trusted": "--trust-checkpoint"}
    assert named(ParameterError(param, message), flags) == expected


def test_a_missing_file_error_names_the_option_of_its_parameter():
    from biostrata.errors import DataNotFoundError, InputError

    flags = {"hmm": "--hmm"}
    missing = DataNotFoundError("hmm: none given, and the default is not installed", param="hmm")
    assert (
        isinstance(missing, FileNotFoundError) and str(missing) == "hmm: none given, and the default is not installed"
    )
    assert named(missing, flags) == "hmm (--hmm): none given, and the default is not installed"
    assert named(DataNotFoundError("x.hmm: no such file"), flags) == "x.hmm: no such file"  # no parameter: as it is
    assert named(InputError("x: bad"), flags) == "x: bad"


def test_a_setting_error_names_the_option_after_the_value():
    assert named(SettingError("batch_size", 0, "at least 1"), {"batch_size": "--batch-size"}) == (
        "batch_size=0 (--batch-size) is invalid; expected at least 1"
    )


def test_a_library_parameter_error_reaches_the_user_with_the_option(tmp_path, monkeypatch, capsys):
    """cka raises for its parameters ``a`` and ``sigma_frac``: the command names INPUT and --sigma-frac."""
    import biostrata.api.analysis
    from biostrata.api.analysis import cka

    path = tmp_path / "x.npy"
    np.save(path, np.zeros((3, 2)))
    for param, message, shown in (
        ("sigma_frac", "sigma_frac=0.0: give a bandwidth above 0", "sigma_frac=0.0 (--sigma-frac): give a bandwidth"),
        ("a", f"a={str(path)!r}: holds no layer", f"a={str(path)!r} (INPUT): holds no layer"),
    ):

        @functools.wraps(cka)  # its signature: the parser reads the defaults from it
        def refuse(*args, param=param, message=message, **kwargs):
            raise ParameterError(param, message)

        monkeypatch.setattr(biostrata.api.analysis, "cka", refuse)
        assert main(["cka", str(path), "--sigma-frac", "0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"biostrata: error: {shown}") and err.count("\n") == 1, err
