import csv
import time

import numpy as np
import pytest
import yaml

from biostrata.cli import main
from biostrata.data.dna.genome import read_gue_dir
from biostrata.data.simulation.simulate import SPLITS, simulate_dataset, write_gue
from biostrata.data.simulation.trees import parse_newick
from biostrata.errors import InputError

SMALL = dict(n_leaves=80, length=60, height=0.5)
FILES = ("train.csv", "dev.csv", "test.csv", "tree.nwk", "leaves.csv", "simulation.yaml")


def test_dataset_shape_split_and_stratification():
    data = simulate_dataset(n_leaves=200, length=50, tree="balanced", n_classes=4, seed=1)
    assert len(data.sequences) == 200 and {len(s) for s in data.sequences} == {50}
    assert np.bincount(data.labels).tolist() == [50, 50, 50, 50]
    leaves = np.concatenate([data.rows[name] for name in SPLITS])
    assert sorted(leaves.tolist()) == list(range(200))  # a partition of the leaves
    assert data.counts() == {"train": [40] * 4, "dev": [5] * 4, "test": [5] * 4}
    splits = data.to_splits()
    assert splits.num_classes == 4 and splits.max_length == 50
    assert [len(s) for s in splits] == [160, 20, 20]


def test_clade_labels_are_monophyletic():
    data = simulate_dataset(**SMALL, n_classes=3, seed=2)
    tree = data.tree
    roots = tree.clade_roots(3)
    for c in range(3):
        members = np.flatnonzero(data.labels == c)
        lo, hi = tree.leaf_span[roots[data.clades[members[0]]]]
        assert members.tolist() == list(range(lo, hi))


def test_more_clades_than_classes_balances_the_classes():
    data = simulate_dataset(**SMALL, tree="balanced", n_classes=2, n_clades=8, seed=0)
    assert np.bincount(data.labels).tolist() == [40, 40]
    assert len(np.unique(data.clades)) == 8
    # every clade lies within one class
    assert all(len(np.unique(data.labels[data.clades == k])) == 1 for k in range(8))


def test_motif_labels():
    data = simulate_dataset(**{**SMALL, "height": 2.0}, label="motif", n_classes=3, motif_length=10, seed=3)
    assert sorted(data.motifs) == [1, 2]
    for seq, label in zip(data.sequences, data.labels):
        for c, motif in data.motifs.items():
            assert (motif in seq) == (c == label)


def test_same_seed_same_bytes(tmp_path):
    kw = dict(SMALL, gamma=0.5, indel_rate=0.02, label="motif", seed=7)
    a = write_gue(simulate_dataset(**kw), tmp_path / "a")
    b = write_gue(simulate_dataset(**kw), tmp_path / "b")
    c = write_gue(simulate_dataset(**{**kw, "seed": 8}), tmp_path / "c")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train.csv").read_bytes() != (c / "train.csv").read_bytes()
    assert not [p for p in a.iterdir() if p.name.endswith(".tmp")]


def test_streams_are_independent_so_the_tree_survives_other_changes():
    a = simulate_dataset(**SMALL, model="jc69", seed=4)
    b = simulate_dataset(**SMALL, model="hky85", gamma=1.0, seed=4)
    assert a.tree.newick() == b.tree.newick()
    assert a.sequences != b.sequences


def test_written_files_read_back(tmp_path):
    data = simulate_dataset(**SMALL, n_classes=2, seed=5)
    out = write_gue(data, tmp_path / "sim")
    splits = read_gue_dir(out)
    expected = data.to_splits()
    for got, want in zip(splits, expected):
        assert got.sequences == want.sequences
        np.testing.assert_array_equal(got.labels, want.labels)
    assert parse_newick((out / "tree.nwk").read_text()).newick() == data.tree.newick()
    rows = {name: list(csv.reader((out / f"{name}.csv").open()))[1:] for name in SPLITS}
    with (out / "leaves.csv").open() as handle:
        for rec in csv.DictReader(handle):
            leaf = data.tree.leaf_names.index(rec["leaf"])
            assert rows[rec["split"]][int(rec["row"])] == [data.sequences[leaf], rec["label"]]
    meta = yaml.safe_load((out / "simulation.yaml").read_text())
    assert meta["counts"] == data.counts()
    rebuilt = simulate_dataset(**meta["parameters"])
    assert rebuilt.sequences == data.sequences


def test_fixed_length_with_indels():
    free = simulate_dataset(**SMALL, indel_rate=0.1, seed=6)
    assert len({len(s) for s in free.sequences}) > 1
    fixed = simulate_dataset(**SMALL, indel_rate=0.1, fixed_length=True, seed=6)
    assert {len(s) for s in fixed.sequences} == {60}
    assert all(f[: len(s)] == s[:60] for f, s in zip(fixed.sequences, free.sequences))  # cut or padded at the 3' end


def test_root_sequence_sets_the_length():
    data = simulate_dataset(n_leaves=10, root="ACGT" * 5, height=1e-9, seed=0)
    assert data.parameters["length"] == 20
    assert set(data.sequences) == {"ACGT" * 5}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_classes=5, n_clades=3), "n_classes=5: more than n_clades=3"),
        (dict(n_leaves=4, n_classes=2, n_clades=6), "n_clades=6"),
        (dict(n_classes=1), "n_classes"),
        (dict(height=-1.0), "height"),
        (dict(kappa=-2.0), "kappa"),
        (dict(death=-0.5, tree="birth-death"), "death"),
        (dict(gamma=-0.5), "gamma"),
        (dict(indel_rate=-0.1), "indel_rate"),
        (dict(label="tree"), "label"),
        (dict(fractions=(0.5, 0.5, 0.5)), "fractions"),
        (dict(label="motif", motif_length=100), "motif_length"),
        (dict(tree="star"), "unknown tree shape"),
        (dict(model="jc69", freqs=(0.25,) * 4), "freqs"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(InputError, match=name):
        simulate_dataset(**{**SMALL, **kwargs})


def test_demo_size_is_fast():
    start = time.perf_counter()
    data = simulate_dataset(5000, 200, seed=0)
    assert time.perf_counter() - start < 10.0
    assert len(data.sequences) == 5000


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["simulate", "--out", str(out), "--leaves", "40", "--length", "30", "--tree", "caterpillar",
            "--model", "k80", "--kappa", "3", "--gamma", "0.7", "--classes", "2", "--seed", "9"]  # fmt: skip
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    assert all((out / name).is_file() for name in FILES)
    meta = yaml.safe_load((out / "simulation.yaml").read_text())
    assert meta["parameters"]["tree"] == "caterpillar" and meta["model"] == {"model": "k80", "kappa": 3.0}
    assert main(["simulate", "--out", str(out), "--freqs", "0.5", "0.5", "0.5", "0.5"]) == 2
    assert "freqs=[0.5, 0.5, 0.5, 0.5] (--freqs): must sum to 1" in capsys.readouterr().err


def test_cli_simulate_reads_a_config_file_and_command_line_overrides(tmp_path, capsys):
    config = tmp_path / "sim.yaml"
    config.write_text("leaves: 50\nlength: 40\ntree: balanced\nseed: 1\n")
    out = tmp_path / "cli"
    assert main(["simulate", "--out", str(out), "--config", str(config), "--seed", "5", "--classes", "3"]) == 0
    params = yaml.safe_load((out / "simulation.yaml").read_text())["parameters"]
    assert (params["n_leaves"], params["length"], params["tree"], params["seed"], params["n_classes"]) == (
        50, 40, "balanced", 5, 3,
    )  # fmt: skip
    expected = simulate_dataset(50, 40, tree="balanced", n_classes=3, seed=5)
    assert read_gue_dir(out).train.sequences == [expected.sequences[i] for i in expected.rows["train"]]


def test_a_simulation_runs_again_from_its_own_yaml(tmp_path, capsys):
    """simulation.yaml names simulate_dataset's arguments; --config reads it back, options still override."""
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    argv = ["--leaves", "40", "--length", "30", "--classes", "3", "--clades", "4", "--gamma", "0.5", "--seed", "2"]
    assert main(["simulate", "--out", str(first), *argv]) == 0
    assert main(["simulate", "--out", str(again), "--config", str(first / "simulation.yaml")]) == 0
    for name in ("train.csv", "dev.csv", "test.csv", "tree.nwk", "leaves.csv"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    assert main(["simulate", "--out", str(other), "--config", str(first / "simulation.yaml"), "--seed", "3"]) == 0
    params = yaml.safe_load((other / "simulation.yaml").read_text())["parameters"]
    assert (params["n_leaves"], params["n_classes"], params["n_clades"], params["seed"]) == (40, 3, 4, 3)
    assert (other / "train.csv").read_bytes() != (first / "train.csv").read_bytes()


@pytest.mark.parametrize(
    "argv, option",
    [(["--tree", "star"], "tree"), (["--model", "gtr"], "model"), (["--label", "x"], "label"),
     (["--fractions", "0.5", "0.5"], "fractions")],
)  # fmt: skip
def test_cli_simulate_bad_choice_names_the_option(tmp_path, capsys, argv, option):
    assert main(["simulate", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("biostrata: error:") and f"{option}=" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_simulation_defaults_are_the_settings_fields():
    """No default written twice: SimulateSettings takes the keyword defaults of simulate_dataset, and its
    choices are the names the simulation knows."""
    import dataclasses
    import inspect

    from biostrata.config import SIMULATE_CHOICES, SimulateSettings
    from biostrata.data.simulation.evolution import MODELS
    from biostrata.data.simulation.simulate import LABELS
    from biostrata.data.simulation.trees import SHAPES

    keywords = SimulateSettings().keywords()
    params = inspect.signature(simulate_dataset).parameters
    assert set(keywords) == set(params)
    for name, p in params.items():
        assert p.default == keywords[name] or list(p.default) == keywords[name], name
    assert SIMULATE_CHOICES == {"tree": SHAPES, "model": MODELS, "label": LABELS}
    assert {f.name for f in dataclasses.fields(SimulateSettings)} >= set(SIMULATE_CHOICES)
