from pathlib import Path

import numpy as np
import pytest

from biostrata.data.dna.benchmarks import (
    SUITES,
    custom_suite,
    data_root,
    input_length,
    load_task,
    read_class_folders,
    read_genomic_benchmark,
    resolve_suite,
    select_tasks,
    stratified_split,
)
from biostrata.data.dna.genome import SequenceSet, read_labelled
from biostrata.errors import DataNotFoundError, InputError


def write_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sequence,label\n" + "".join(f"{s},{y}\n" for s, y in rows))


def write_gue_task(folder: Path, length: int = 101, n: int = 6, classes: int = 2) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "dev", "test"):
        rows = [("".join(rng.choice(list("ACGT"), length)), i % classes) for i in range(n)]
        write_csv(folder / f"{split}.csv", rows)


def write_gb_dataset(folder: Path, counts: dict[str, int], test_counts: dict[str, int] | None = None) -> None:
    """train/<class>/<i>.txt; each sequence encodes its class and index so tests can trace it."""
    for split, per_class in (("train", counts), ("test", test_counts or {c: 2 for c in counts})):
        for c, k in per_class.items():
            (folder / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                seq = {"negative": "A", "positive": "C", "ocr": "G", "enhancer": "T"}.get(c, "N") * (i + 1)
                (folder / split / c / f"{i}.txt").write_text(seq + "\n")


# -- registry ----------------------------------------------------------------------------------


def test_registry_sizes_and_metrics():
    assert {k: len(s.tasks) for k, s in SUITES.items()} == {"gue": 28, "gb": 9, "teb": 7}
    gue = SUITES["gue"]
    assert gue.task("virus/covid").metric == "f1" and gue.task("virus/covid").num_classes == 9
    assert gue.task("splice/reconstructed").num_classes == 3 and gue.task("splice/reconstructed").length == 400
    assert [t.length for t in select_tasks(gue, ["prom"])] == [70, 70, 70, 300, 300, 300]
    assert {t.length for t in select_tasks(gue, ["EMP"])} == {500}
    assert {t.length for t in select_tasks(gue, ["mouse", "tf"])} == {101}
    assert all(t.metric == "mcc" for s in SUITES.values() for t in s.tasks if t.name != "virus/covid")
    assert SUITES["gb"].task("human_ensembl_regulatory").num_classes == 3
    assert SUITES["teb"].task("dna_cmc").length == 200 and SUITES["teb"].task("lines").length == 1000


def test_select_tasks_by_name_group_and_last_part():
    gue = SUITES["gue"]
    assert [t.name for t in select_tasks(gue, ["tf/1"])] == ["tf/1"]
    assert [t.name for t in select_tasks(gue, ["tf"])] == [f"tf/{i}" for i in range(5)]
    assert [t.name for t in select_tasks(gue, ["prom_core_tata", "tf/0"])] == ["tf/0", "prom/prom_core_tata"]
    assert [t.name for t in select_tasks(gue, ["tf/0", "tf"])] == [f"tf/{i}" for i in range(5)]
    assert len(select_tasks(gue, None)) == 28


def test_select_tasks_errors_name_the_problem():
    with pytest.raises(InputError, match=r"ambiguous.*mouse/0.*tf/0"):
        select_tasks(SUITES["gue"], ["0"])
    with pytest.raises(InputError, match=r"no task 'prom_core_al'.*prom/prom_core_all"):
        select_tasks(SUITES["gue"], ["prom_core_al"])


def test_data_root_from_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOSTRATA_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("BIOSTRATA_DATA")
    with pytest.raises(InputError, match=r"give data_dir=DIR or set BIOSTRATA_DATA"):
        data_root(None)


# -- GUE -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("root_is_suite", [False, True])
def test_gue_layout_loads_from_root_or_suite_folder(tmp_path, root_is_suite):
    write_gue_task(tmp_path / "gue" / "tf" / "0")
    task = SUITES["gue"].task("tf/0")
    splits = load_task(task, SUITES["gue"], tmp_path / "gue" if root_is_suite else tmp_path)
    assert [len(s) for s in splits] == [6, 6, 6]
    assert splits.num_classes == 2 and input_length(task, splits) == 101
    assert list(splits.train.labels) == [0, 1, 0, 1, 0, 1]


def test_gue_missing_data_names_path_and_source(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_task(SUITES["gue"].task("tf/0"), SUITES["gue"], tmp_path)
    text = str(err.value)
    assert f"tf/0: {tmp_path / 'tf' / '0'}/ (no such folder)" in text
    assert "MAGICS-LAB/DNABERT_2" in text and "Point data_dir" in text and err.value.param == "data_dir"
    write_gue_task(tmp_path / "gue" / "tf" / "0")
    (tmp_path / "gue" / "tf" / "0" / "dev.csv").unlink()
    with pytest.raises(DataNotFoundError) as err:
        load_task(SUITES["gue"].task("tf/0"), SUITES["gue"], tmp_path)
    assert f"tf/0: {tmp_path / 'gue' / 'tf' / '0' / 'dev.csv'}. Point" in str(err.value)


def test_gue_data_that_disagrees_with_the_registry_is_an_error(tmp_path):
    write_gue_task(tmp_path / "gue" / "tf" / "0", classes=3)
    with pytest.raises(InputError, match=r"train.csv: labels 0, 1, 2, but gue task 'tf/0' has labels 0..1"):
        load_task(SUITES["gue"].task("tf/0"), SUITES["gue"], tmp_path)
    write_gue_task(tmp_path / "gue" / "tf" / "1", length=102)
    with pytest.raises(InputError, match=r"train.csv:2: sequence of length 102 .* at most 101 bp"):
        load_task(SUITES["gue"].task("tf/1"), SUITES["gue"], tmp_path)


@pytest.mark.shared_data("gue")
def test_real_gue_task_loads(shared_data):
    splits = load_task(SUITES["gue"].task("prom/prom_core_tata"), SUITES["gue"], shared_data)
    assert [len(s) for s in splits] == [4904, 613, 613]
    assert splits.num_classes == 2 and splits.max_length == 70


# -- Genomic Benchmarks --------------------------------------------------------------------------


def test_gb_class_ids_come_from_sorted_names_not_listing_order(tmp_path, monkeypatch):
    write_gb_dataset(tmp_path, {"positive": 20, "negative": 30})
    first = read_genomic_benchmark(tmp_path, seed=3)
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(real_iterdir(self), reverse=True)))
    second = read_genomic_benchmark(tmp_path, seed=3)
    for a, b in zip(first, second):
        assert a.sequences == b.sequences and np.array_equal(a.labels, b.labels)
    # negative (A...) is class 0, positive (C...) class 1, in every split
    for part in first:
        assert all((s[0] == "A") == (y == 0) for s, y in zip(part.sequences, part.labels))


def test_gb_files_read_in_natural_order(tmp_path):
    write_gb_dataset(tmp_path, {"negative": 12, "positive": 12})
    test = read_genomic_benchmark(tmp_path).test
    assert [len(s) for s in test.sequences] == [1, 2, 1, 2]
    data, classes = read_class_folders(tmp_path / "train")
    assert classes == ["negative", "positive"]
    assert [len(s) for s in data.sequences[:12]] == list(range(1, 13))


def test_gb_dev_split_is_stratified_disjoint_and_seeded(tmp_path):
    write_gb_dataset(tmp_path, {"enhancer": 40, "ocr": 20, "promoter": 10})
    splits = read_genomic_benchmark(tmp_path, dev_fraction=0.2, seed=7)
    assert splits.num_classes == 3
    assert np.bincount(splits.dev.labels).tolist() == [8, 4, 2]
    assert np.bincount(splits.train.labels).tolist() == [32, 16, 8]
    pairs = lambda s: {(q, int(y)) for q, y in zip(s.sequences, s.labels)}  # noqa: E731
    assert not pairs(splits.train) & pairs(splits.dev)
    assert len(pairs(splits.train) | pairs(splits.dev)) == 70
    assert "seed 7" in splits.dev.source and "0.2" in splits.dev.source
    again = read_genomic_benchmark(tmp_path, dev_fraction=0.2, seed=7)
    other = read_genomic_benchmark(tmp_path, dev_fraction=0.2, seed=8)
    assert again.dev.sequences == splits.dev.sequences
    assert other.dev.sequences != splits.dev.sequences


def test_gb_layout_errors(tmp_path):
    write_gb_dataset(tmp_path / "a", {"negative": 3, "positive": 3}, {"negative": 1, "other": 1})
    with pytest.raises(InputError, match=r"test: class folder\(s\) other not among the training classes"):
        read_genomic_benchmark(tmp_path / "a")
    write_gb_dataset(tmp_path / "b", {"negative": 3, "positive": 3})
    (tmp_path / "b" / "train" / "positive" / "1.txt").write_text("\n")
    with pytest.raises(InputError, match=r"positive/1.txt: empty sequence file"):
        read_genomic_benchmark(tmp_path / "b")
    (tmp_path / "c" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no class subfolders"):
        read_genomic_benchmark(tmp_path / "c")
    with pytest.raises(DataNotFoundError, match=r"d/train: no such folder"):
        read_genomic_benchmark(tmp_path / "d")


def test_gb_suite_missing_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"(?s)human_nontata_promoters/ \(no such folder\).*genomic-benchmarks"):
        load_task(SUITES["gb"].task("human_nontata_promoters"), SUITES["gb"], tmp_path)


def test_stratified_split_rejects_tiny_classes_and_bad_fractions():
    data = SequenceSet(["A", "C", "G"], np.array([0, 0, 1]), "x.csv")
    with pytest.raises(InputError, match=r"x.csv: class 1 has 1 item"):
        stratified_split(data, 0.5, 0)
    with pytest.raises(InputError, match=r"^fraction=1\.0: give a share strictly between 0 and 1"):
        stratified_split(data, 1.0, 0)
    with pytest.raises(InputError, match=r"^dev_fraction=0: give a share strictly between 0 and 1") as err:
        read_genomic_benchmark("nothere", dev_fraction=0)  # before the folder is read
    assert err.value.param == "dev_fraction"


# -- TEB -----------------------------------------------------------------------------------------


def test_teb_layout(tmp_path):
    for split in ("train", "valid", "test"):
        write_csv(tmp_path / "teb" / f"{split}_dna_cmc.csv", [("ACGT" * 50, 0), ("TTTT", 1), ("GG", 0)])
    splits = load_task(SUITES["teb"].task("dna_cmc"), SUITES["teb"], tmp_path)
    assert [len(s) for s in splits] == [3, 3, 3]
    assert splits.dev.source.endswith("valid_dna_cmc.csv")
    (tmp_path / "teb" / "valid_dna_cmc.csv").unlink()
    with pytest.raises(DataNotFoundError, match=r"(?s)valid_dna_cmc.csv.*rrkhan/HGE"):
        load_task(SUITES["teb"].task("dna_cmc"), SUITES["teb"], tmp_path)


@pytest.mark.shared_data("teb")
def test_teb_reads_the_released_dna_cmc_files(shared_data):
    """The files as released with the paper: header seq,label,biotype, split names valid/test."""
    splits = load_task(SUITES["teb"].task("dna_cmc"), SUITES["teb"], shared_data)
    assert [len(s) for s in splits] == [19912, 1872, 1808]
    assert splits.labels == [0, 1] and splits.max_length <= 200
    # biotype is kept beside each sequence as metadata; label 1 is the element class, 0 background (NA)
    for part in splits:
        pairs = set(zip(part.labels.tolist(), part.meta["biotype"]))
        assert pairs == {(1, "DNA/CMC-EnSpm"), (0, "NA")}
    assert int(splits.train.labels.sum()) == 9956  # balanced


def test_csv_columns_are_found_by_name_and_the_others_kept(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("biotype,label,seq\nNA,0,ACGT\nLINE/L1,1,GGCC\n")
    part = read_labelled(path)
    assert part.sequences == ["ACGT", "GGCC"] and part.labels.tolist() == [0, 1]
    assert part.meta == {"biotype": ["NA", "LINE/L1"]}
    path.write_text("seq,biotype\nACGT,NA\n")
    with pytest.raises(InputError, match=r"x.csv:1: expected a header with a sequence column .* 'label'"):
        read_labelled(path)
    path.write_text("seq,label,note,note\nACGT,0,a,b\n")
    with pytest.raises(InputError, match=r"x.csv:1: column 'note' appears more than once"):
        read_labelled(path)
    path.write_text("sequence,label,biotype\nACGT\n")
    with pytest.raises(InputError, match=r"x.csv:2: expected at least 2 fields, found 1"):
        read_labelled(path)


# -- custom folders ------------------------------------------------------------------------------


def test_custom_fasta_task_folder(tmp_path):
    folder = tmp_path / "my_task"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.fa").write_text(">a label=0\nACGT\nAC\n>b label=1\nGGGG\n")
    suite = resolve_suite(str(folder))
    assert [t.name for t in suite.tasks] == ["my_task"]
    splits = load_task(suite.tasks[0], suite)
    assert splits.train.sequences == ["ACGTAC", "GGGG"] and input_length(suite.tasks[0], splits) == 6


def test_custom_folder_of_tasks(tmp_path):
    write_gue_task(tmp_path / "set" / "b" / "one", length=20)
    write_gue_task(tmp_path / "set" / "a", length=30, classes=3)
    (tmp_path / "set" / "notes").mkdir()
    suite = custom_suite(tmp_path / "set")
    assert [t.name for t in suite.tasks] == ["a", "b/one"]
    splits = load_task(suite.task("a"), suite)
    assert splits.num_classes == 3 and input_length(suite.task("a"), splits) == 30


def test_custom_suite_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"no task folder found"):
        custom_suite(tmp_path / "empty")
    with pytest.raises(InputError, match=r"name_or_path='nope': not one of gue, gb, teb"):
        resolve_suite("nope")


def test_a_task_folder_missing_a_split_is_an_error_not_dropped(tmp_path):
    write_gue_task(tmp_path / "set" / "a")
    write_gue_task(tmp_path / "set" / "b")
    (tmp_path / "set" / "b" / "test.csv").unlink()
    with pytest.raises(DataNotFoundError, match=r"set/b: has train and dev files but no test file"):
        custom_suite(tmp_path / "set")
    (tmp_path / "set" / "b" / "train.csv").unlink()
    with pytest.raises(DataNotFoundError, match=r"set/b: has dev file but no train or test file"):
        custom_suite(tmp_path / "set")


def test_stratified_split_keeps_lines_and_metadata_with_their_sequences():
    data = SequenceSet(
        list("ACGTAC"), np.array([0, 0, 0, 1, 1, 1]), "x.csv", [2, 3, 4, 5, 6, 7], {"note": list("uvwxyz")}
    )
    fit, dev = stratified_split(data, 0.34, 0)
    for part in (fit, dev):
        for i, seq in enumerate(part.sequences):
            j = part.lines[i] - 2  # the row of the original it came from
            assert (seq, part.meta["note"][i]) == (data.sequences[j], data.meta["note"][j])
    assert sorted(fit.lines + dev.lines) == data.lines
