import argparse
from dataclasses import dataclass, field

import pytest

from biostrata.config import (
    ConditionsSettings,
    CrossGranularitySettings,
    DemoSettings,
    PretrainSettings,
    SimulateSettings,
    TrainConfig,
)
from biostrata.errors import InputError
from biostrata.settings import Settings, field_help


@dataclass
class Example(Settings):
    rate: float = 0.1
    steps: int = 3
    name: str = "a"
    flag: bool = True
    levels: list[int] = field(default_factory=lambda: [1, 2])
    limit: int | None = field(default=None, metadata=field_help("stop after this many"))

    def validate(self) -> None:
        if self.steps < 1:
            raise InputError(f"steps={self.steps}: need at least 1")


def test_yaml_values_are_converted_to_the_field_types(tmp_path):
    path = tmp_path / "c.yaml"
    # PyYAML reads 1e-3 (no dot) as a string; a single number stands for a one-item list
    path.write_text("rate: 1e-3\nsteps: '7'\nlevels: 5\nlimit: null\n")
    s = Example.from_yaml(path)
    assert s.rate == 0.001 and isinstance(s.rate, float) and s.steps == 7 and s.levels == [5] and s.limit is None
    s.to_yaml(tmp_path / "out.yaml")
    assert Example.from_yaml(tmp_path / "out.yaml") == s


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: ten\n", r"c.yaml: steps: 'ten' is not a whole number"),
        ("rate: fast\n", r"c.yaml: rate: 'fast' is not a number"),
        ("flag: 'no'\n", r"c.yaml: flag: 'no' is not true or false"),
        ("levels: [1, x]\n", r"c.yaml: levels\[1\]: 'x' is not a whole number"),
        ("steps: 0\n", r"steps=0: need at least 1"),
        ("speed: 3\n", r"c.yaml: unknown key\(s\) speed; known keys: flag, levels, limit, name, rate, steps"),
        ("- 1\n", r"c.yaml: expected a mapping"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        Example.from_yaml(path)


def test_construction_and_replace_convert_and_validate():
    assert Example(rate="2e-2").rate == 0.02
    with pytest.raises(InputError, match="steps=0"):
        Example().replace(steps=0)
    with pytest.raises(InputError, match=r"Example: name: a value is required"):
        Example(name=None)


def test_options_generated_from_the_fields_and_overriding_the_file(tmp_path):
    parser = argparse.ArgumentParser()
    Example.add_options(parser, "example options")
    text = parser.format_help()
    assert "--no-flag" in text and "stop after this many (default: None)" in text and "(default: 1 2)" in text
    path = tmp_path / "c.yaml"
    path.write_text("rate: 0.5\nsteps: 4\n")
    args = parser.parse_args(["--config", str(path), "--steps", "9", "--no-flag", "--levels", "3", "4"])
    s = Example.from_args(args)
    assert (s.rate, s.steps, s.flag, s.levels) == (0.5, 9, False, [3, 4])  # the file, then the options
    assert Example.from_args(parser.parse_args([])) == Example()


@pytest.mark.parametrize(
    "cls", [TrainConfig, DemoSettings, ConditionsSettings, PretrainSettings, CrossGranularitySettings, SimulateSettings]
)
def test_every_settings_class_round_trips(tmp_path, cls):
    cls().to_yaml(tmp_path / "s.yaml")
    assert cls.from_yaml(tmp_path / "s.yaml") == cls()


def test_train_config_reads_the_yaml_people_write(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model: cnn\nlr: 1e-3\nmilestones: 5\ndevices: 1\nepochs: 3\n")
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.lr, cfg.milestones, cfg.devices, cfg.epochs) == (0.001, [5], "1", 3)


def test_commands_take_their_options_from_the_settings(capsys):
    from biostrata.cli import main

    for argv, flags in (
        (["demo", "--help"], ["--tree", "--delta-points", "--no-parallel", "--config"]),
        (["study", "conditions", "--help"], ["--shapes", "--seeds", "--base-depth", "--config"]),
        (["benchmark", "--help"], ["--epochs", "--warmup-epochs", "--config"]),
        (["simulate", "--help"], ["--leaves", "--indel-rate", "--fixed-length", "--fractions", "--config"]),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert all(f in text for f in flags), argv
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    assert "--seed " not in capsys.readouterr().out  # set per run by the sweep


def test_checks_name_the_file_too(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 0\n")
    with pytest.raises(InputError, match=r"train.yaml: config: epochs=0 is invalid"):
        TrainConfig.from_yaml(path)
    with pytest.raises(InputError, match="seeds is empty"):
        ConditionsSettings(seeds=[])


def test_pretraining_defaults_are_the_settings_fields():
    """No default written twice: the keyword defaults of train.pretrain are PretrainSettings's."""
    import dataclasses
    import inspect

    from biostrata.train.pretrain import fit_masked_lm, pretrain_domain_lm

    defaults = {f.name: f.default for f in dataclasses.fields(PretrainSettings)}
    for fn in (pretrain_domain_lm, fit_masked_lm):
        for name, p in inspect.signature(fn).parameters.items():
            if name in defaults and name != "max_length" or (fn is pretrain_domain_lm and name == "max_length"):
                assert p.default == defaults[name], (fn.__name__, name)
    with pytest.raises(InputError, match=r"command-line options: arm='bad' is invalid"):
        parser = argparse.ArgumentParser()
        PretrainSettings.add_options(parser, "x")
        PretrainSettings.from_args(parser.parse_args(["--arm", "bad"]))
