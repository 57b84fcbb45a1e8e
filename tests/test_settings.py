import argparse
from dataclasses import dataclass, field

import pytest

from biostrata.cli.options import add_settings
from biostrata.config import (
    AnnotateSettings,
    ConditionsSettings,
    CrossGranularitySettings,
    DemoSettings,
    PretrainSettings,
    SimulateSettings,
    StrataSettings,
    TrainConfig,
)
from biostrata.config.sequences import ProteinLMSettings
from biostrata.errors import InputError
from biostrata.settings import Settings, field_help, operational


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
    add_settings(parser, Example, "example options")
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
    with pytest.raises(InputError, match=r"train.yaml: epochs=0 is invalid; expected at least 1"):
        TrainConfig.from_yaml(path)
    with pytest.raises(InputError, match=r"seeds=\[\] is invalid; expected one value or more"):
        ConditionsSettings(seeds=[])


def test_a_refused_value_is_named_where_it_came_from(tmp_path):
    """A command-line option as --key, a config file's key with the file; the command line wins over the file."""
    parser = argparse.ArgumentParser()
    add_settings(parser, TrainConfig, "training")
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 0\nlr: 1e-3\n")
    with pytest.raises(InputError, match=r"^batch_size=0 \(--batch-size\) is invalid; expected at least 1$"):
        TrainConfig.from_args(parser.parse_args(["--batch-size", "0"]))
    with pytest.raises(InputError, match=r"^\S*train.yaml: epochs=0 is invalid"):
        TrainConfig.from_args(parser.parse_args(["--config", str(path), "--batch-size", "8"]))
    cfg = TrainConfig.from_args(parser.parse_args(["--config", str(path), "--epochs", "2"]))
    assert (cfg.epochs, cfg.lr) == (2, 1e-3)
    with pytest.raises(InputError, match=r"^--lr: inf is not a finite number$"):
        TrainConfig.from_args(parser.parse_args(["--lr", "inf"]))
    path.write_text("lr: .nan\n")
    with pytest.raises(InputError, match=r"train.yaml: lr: nan is not a finite number"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"channels": 1}, r"channels=1 is invalid; expected at least 2 for hcnn-s"),
        ({"kernel_size": 4}, r"kernel_size=4 is invalid; expected an odd number"),
        ({"precision": "fp8"}, r"precision='fp8' is invalid"),
        ({"devices": "0"}, r"devices='0' is invalid"),
        ({"milestones": [0]}, r"milestones=\[0\] is invalid"),
        ({"seed": 2**32}, r"seed=4294967296 is invalid; expected a whole number in 0..4294967295"),
    ],
)
def test_train_config_refuses_values_that_cannot_train(changes, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**changes)
    assert TrainConfig(model="cnn", channels=1, hidden=1).channels == 1  # the Euclidean model takes 1
    for devices in ("auto", "2", "-1", "0,1", "1,"):
        assert TrainConfig(devices=devices).devices == devices


def test_the_strata_study_takes_the_accelerators_a_training_takes():
    from biostrata.config import ACCELERATORS

    assert [StrataSettings(accelerator=a).accelerator for a in ACCELERATORS] == list(ACCELERATORS)
    with pytest.raises(InputError, match=r"accelerator='tpu' is invalid; expected one of auto, cpu, gpu, cuda, mps"):
        StrataSettings(accelerator="tpu")


def test_pretraining_defaults_are_the_settings_fields():
    """No default written twice: PretrainSettings takes the keyword defaults of train.pretrain."""
    import dataclasses
    import inspect

    from biostrata.train.pretrain import fit_masked_lm, pretrain_domain_lm

    defaults = {f.name: f.default for f in dataclasses.fields(PretrainSettings)}
    for fn in (pretrain_domain_lm, fit_masked_lm):
        for name, p in inspect.signature(fn).parameters.items():
            if name in defaults and name != "max_length" or (fn is pretrain_domain_lm and name == "max_length"):
                assert p.default == defaults[name], (fn.__name__, name)
    with pytest.raises(InputError, match=r"arm='bad' \(--arm\) is invalid"):
        parser = argparse.ArgumentParser()
        add_settings(parser, PretrainSettings, "x")
        PretrainSettings.from_args(parser.parse_args(["--arm", "bad"]))


@pytest.mark.parametrize(
    "cls",
    [PretrainSettings, SimulateSettings, TrainConfig, AnnotateSettings, ProteinLMSettings],
    ids=lambda c: c.__name__,
)
def test_settings_read_their_defaults_from_the_functions_they_configure(cls):
    """Each field declared without a default has the default of its function's parameter, as the imported
    function's signature gives it (the settings read it from the source, without importing the function)."""
    import dataclasses
    import importlib
    import inspect

    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert cls.__defaults_from__
    for name, (target, param) in cls.__defaults_from__.items():
        module, _, qualname = target.partition(":")
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        default = inspect.signature(fn).parameters[param].default
        f = fields[name]
        got = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert got == default, (cls.__name__, name, target)


def test_defaults_from_refuses_a_field_without_a_default_anywhere(tmp_path, monkeypatch):
    from biostrata.settings import defaults_from, signature_defaults

    assert signature_defaults("biostrata.settings:field_help") == {"operational": False}
    assert signature_defaults("biostrata.settings:Settings.check_resume") == {"per_run": (), "inputs": None}
    with pytest.raises(TypeError, match=r"Odd.level: no default, and none of biostrata.settings:field_help has level="):

        @dataclass
        @defaults_from("biostrata.settings:field_help")
        class Odd(Settings):
            level: int

    with pytest.raises(LookupError, match=r"settings.py: no nothing"):
        signature_defaults("biostrata.settings:nothing")
    import ast

    import biostrata.settings

    code = "def f(a, b=1, *, c=max(1, 2)):\n    pass\n"
    monkeypatch.setattr(biostrata.settings, "_source", lambda module: (tmp_path / "m.py", ast.parse(code)))
    with pytest.raises(ValueError, match=r"m.py:1: the default of f's c is not a literal"):
        signature_defaults("biostrata.m:f")


def test_signature_defaults_of_a_dataclass_and_of_named_constants(tmp_path, monkeypatch):
    """A dataclass stands for its constructor (its fields' defaults), and a default may name a module-level constant
    of its module, or one it imports from another module of biostrata (read there)."""
    import ast
    import inspect

    import biostrata.settings
    from biostrata.models.genome_cnn import HyperbolicCNN, Skeleton
    from biostrata.settings import signature_defaults, source_constant

    assert signature_defaults("biostrata.models.genome_cnn:Skeleton") == {
        name: p.default for name, p in inspect.signature(Skeleton).parameters.items()
    }
    # bn_max_radius=REFERENCE_RADIUS_CLIP, imported from biostrata.nn.lorentz
    radius = signature_defaults("biostrata.models.genome_cnn:HyperbolicCNN.__init__")["bn_max_radius"]
    assert radius == inspect.signature(HyperbolicCNN).parameters["bn_max_radius"].default == 10.0
    assert source_constant("biostrata.models.genome_cnn:REFERENCE_RADIUS_CLIP") == 10.0
    sources = {
        "biostrata.m": "from biostrata.n import B as C\nA = 2\nD = A\nE = E\n"
        "@dataclass(frozen=True)\nclass K:\n    x: int = A\n    y: str = field(default='y')\n"
        "    z: list = field(default_factory=list)\n    w: int\n    v: int = f()\n"
        "class Plain:\n    x: int = 1\n"
        "@dataclass\nclass Own:\n    x: int = 1\n    def __init__(self, y=3):\n        pass\n"
        "def f(a=C, b=D, c=A):\n    pass\n",
        "biostrata.n": "B = (1, 'b')\n",
    }
    monkeypatch.setattr(
        biostrata.settings, "_source", lambda module: (tmp_path / f"{module}.py", ast.parse(sources[module]))
    )
    assert signature_defaults("biostrata.m:f") == {"a": (1, "b"), "b": 2, "c": 2}
    assert source_constant("biostrata.m:C") == (1, "b") and source_constant("biostrata.m:D") == 2
    with pytest.raises(ValueError, match=r"biostrata.m:E: defined by itself"):
        source_constant("biostrata.m:E")
    with pytest.raises(ValueError, match=r"m.py:11: the default of K's v is not a literal"):
        signature_defaults("biostrata.m:K")
    sources["biostrata.m"] = sources["biostrata.m"].replace("    v: int = f()\n", "")
    assert signature_defaults("biostrata.m:K") == {"x": 2, "y": "y"}  # no default, or a factory: left out
    with pytest.raises(LookupError, match=r"Plain is not a function \(nor a dataclass without an __init__\)"):
        signature_defaults("biostrata.m:Plain")
    assert signature_defaults("biostrata.m:Own.__init__") == {"y": 3}
    with pytest.raises(LookupError, match=r"Own is not a function"):
        signature_defaults("biostrata.m:Own")


def test_vocabularies_are_read_from_the_modules_that_use_them(tmp_path, monkeypatch):
    """Settings check allowed values against the library's own constants, read from source without importing."""
    import ast

    import biostrata.settings
    from biostrata.config import sequences
    from biostrata.models.domain_lm import GEOMETRIES, PRESETS
    from biostrata.models.init_table import ARMS, PROJECTIONS
    from biostrata.settings import source_constant

    assert (sequences.ARMS, sequences.PROJECTIONS, sequences.GEOMETRIES) == (ARMS, PROJECTIONS, GEOMETRIES)
    assert sequences.PRESETS == tuple(PRESETS) and source_constant("biostrata.models.domain_lm:PRESETS") == PRESETS
    from biostrata.config import ANNOTATE_CHOICES, genome
    from biostrata.data.annotation.annotate import CUTOFFS, OVERLAPS
    from biostrata.data.annotation.genes import GENES
    from biostrata.models.genome_cnn import POOLS

    assert ANNOTATE_CHOICES == {"genes": GENES, "cutoff": CUTOFFS, "overlaps": OVERLAPS}
    assert genome.POOLS == POOLS
    with pytest.raises(LookupError, match=r"domain_lm.py: no constant NOPE"):
        source_constant("biostrata.models.domain_lm:NOPE")
    code = "A = 1\nB: tuple = tuple(range(3))\n"
    monkeypatch.setattr(biostrata.settings, "_source", lambda module: (tmp_path / "m.py", ast.parse(code)))
    assert source_constant("biostrata.m:A") == 1
    with pytest.raises(ValueError, match=r"m.py:2: B is not a literal"):
        source_constant("biostrata.m:B")


@dataclass
class Resumable(Settings):
    rate: float = 0.1
    levels: list[int] = field(default_factory=lambda: [1, 2])
    progress: bool = field(default=True, metadata=field_help("show progress bars", operational=True))


def test_a_run_resumes_with_other_operational_settings_only(tmp_path):
    import json

    path = tmp_path / "settings.json"
    Resumable().check_resume(path)  # nothing saved: a new run
    path.write_text(json.dumps({"rate": 0.1, "levels": [1, 2], "progress": True}))
    assert operational(Resumable) == {"progress"}
    Resumable(progress=False).check_resume(path)
    with pytest.raises(InputError, match="rate: 0.1 there, 0.2 now"):
        Resumable(rate=0.2).check_resume(path)
    Resumable(rate=0.2).check_resume(path, per_run=("rate",))  # set per run by the caller
    assert Resumable(levels=(1, 2)).resume_changes({"rate": 0.1, "levels": (1, 2)}) == []  # compared as saved


def test_a_recorded_run_resumes_only_with_its_settings_and_inputs(tmp_path):
    import json

    path = tmp_path / "settings.json"
    Resumable().record(path, {"corpus": tmp_path / "a.csv", "pfam": None})
    saved = json.loads(path.read_text())
    assert saved["inputs"] == {"corpus": str(tmp_path / "a.csv"), "pfam": None} and saved["code_version"]
    Resumable(progress=False).record(path, {"corpus": tmp_path / "a.csv", "pfam": None})  # operational: resumes
    with pytest.raises(InputError, match=r"corpus: '.*a\.csv' there, '.*b\.csv' now"):
        Resumable().record(path, {"corpus": tmp_path / "b.csv", "pfam": None})
    with pytest.raises(InputError, match="rate: 0.1 there, 0.2 now"):
        Resumable(rate=0.2).record(path, {"corpus": tmp_path / "a.csv", "pfam": None})
    Resumable(rate=0.2).record(path, resume=False)  # a new run in the folder: recorded, not checked
    assert json.loads(path.read_text())["rate"] == 0.2 and "inputs" not in json.loads(path.read_text())


def test_only_settings_that_do_not_change_results_are_operational():
    assert operational(TrainConfig) == {"progress", "num_workers"}
    assert operational(CrossGranularitySettings) == {"progress", "threads", "accelerator"}
    assert operational(StrataSettings) == {"progress", "threads", "accelerator"}
    assert operational(ConditionsSettings) == {
        "shapes", "heights", "depths", "base_shape", "base_height", "base_depth", "seeds"
    }  # fmt: skip
