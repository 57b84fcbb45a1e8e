"""Benchmark suites of DNA classification tasks and the loaders of their published layouts.

Suites (``SUITES``): GUE (28 tasks), Genomic Benchmarks (9 datasets) and TEB (7 datasets).
The data root (``--data-dir`` or ``$BIOSTRATA_DATA``) holds one folder per suite, or is the
folder of one suite itself:

    gue/<task>/{train,dev,test}.csv                      header ``sequence,label``
    genomic_benchmarks/<dataset>/{train,test}/<class>/<id>.txt   one sequence per file
    teb/{train,valid,test}_<name>.csv                    header ``seq,label,biotype`` (as released)

Genomic Benchmarks has no validation split: ``dev`` is carved from ``train``, stratified by class,
with a recorded fraction and seed. Its class ids are the indices of the sorted class names.
A custom suite is any folder holding ``{train,dev,test}.{csv,fa,fasta,fna,fas}``, each plain or
``.gz`` (FASTA headers carry ``label=K``), or a folder of such folders (one task each); a folder
holding some of the three files but not all is an error.

Every loader returns a :class:`biostrata.data.dna.genome.Splits`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biostrata.data.dna.genome import (
    SEQUENCE_SUFFIXES,
    SPLITS,
    SequenceSet,
    Splits,
    read_gue_dir,
    read_labelled,
    split_file,
)
from biostrata.errors import DataNotFoundError, InputError, ParameterError, check_fraction

DATA_ENV = "BIOSTRATA_DATA"


@dataclass(frozen=True)
class Task:
    """One dataset of a suite.

    ``length`` is the model input length: the sequence length for fixed-length datasets, ``None``
    where lengths vary (the input is then the longest sequence in the data). ``metric`` is the
    metric of record on the test split: ``"mcc"`` (Matthews correlation) or ``"f1"`` (macro F1).
    """

    suite: str
    name: str
    length: int | None
    num_classes: int | None
    metric: str = "mcc"


@dataclass(frozen=True)
class Suite:
    """A set of tasks sharing one file layout (``"gue"``, ``"gb"`` or ``"teb"``)."""

    name: str
    title: str
    layout: str
    folder: str
    source: str
    tasks: tuple[Task, ...]

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise InputError(f"suite {self.name!r} has no task {name!r}")


def _gue_tasks() -> tuple[Task, ...]:
    emp = ["H3", "H3K14ac", "H3K36me3", "H3K4me1", "H3K4me2", "H3K4me3", "H3K79me3", "H3K9ac", "H4", "H4ac"]
    tasks = [Task("gue", f"EMP/{m}", 500, 2) for m in emp]
    tasks += [Task("gue", f"mouse/{i}", 101, 2) for i in range(5)]
    tasks += [Task("gue", f"tf/{i}", 101, 2) for i in range(5)]
    for kind, length in (("core", 70), ("300", 300)):
        tasks += [Task("gue", f"prom/prom_{kind}_{v}", length, 2) for v in ("all", "notata", "tata")]
    tasks.append(Task("gue", "splice/reconstructed", 400, 3))
    tasks.append(Task("gue", "virus/covid", 1000, 9, metric="f1"))
    return tuple(tasks)


# Lengths: the fixed length where a dataset has one; None where lengths vary (Gresova et al. 2023).
_GB = {
    "demo_coding_vs_intergenomic_seqs": (200, 2),
    "demo_human_or_worm": (200, 2),
    "drosophila_enhancers_stark": (None, 2),
    "dummy_mouse_enhancers_ensembl": (None, 2),
    "human_enhancers_cohn": (500, 2),
    "human_enhancers_ensembl": (None, 2),
    "human_ensembl_regulatory": (None, 3),
    "human_nontata_promoters": (251, 2),
    "human_ocr_ensembl": (None, 2),
}

_TEB = {
    "lines": 1000,
    "sines": 500,
    "ltr_copia": 500,
    "dna_cmc": 200,
    "dna_hat_ac": 1000,
    "processed_pseudogenes": 1000,
    "unprocessed_pseudogenes": 1000,
}

SUITES: dict[str, Suite] = {
    "gue": Suite(
        "gue",
        "GUE",
        "gue",
        "gue",
        "the GUE release of DNABERT-2 (https://github.com/MAGICS-LAB/DNABERT_2, 'GUE' download link); "
        "unpack it so that each task is a folder such as gue/tf/0",
        _gue_tasks(),
    ),
    "gb": Suite(
        "gb",
        "Genomic Benchmarks",
        "gb",
        "genomic_benchmarks",
        "the PyPI package genomic-benchmarks: "
        "genomic_benchmarks.loc2seq.download_dataset(NAME, dest_path=DATA_ROOT/genomic_benchmarks) "
        "(https://github.com/ML-Bioinfo-CEITEC/genomic_benchmarks)",
        tuple(Task("gb", name, length, k) for name, (length, k) in _GB.items()),
    ),
    "teb": Suite(
        "teb",
        "TEB",
        "teb",
        "teb",
        "the Transposable Elements Benchmark of Hyperbolic Genome Embeddings "
        "(https://github.com/rrkhan/HGE, README: 'Download the TEB datasets'); put its CSV files in teb/",
        tuple(Task("teb", name, length, 2) for name, length in _TEB.items()),
    ),
}


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$BIOSTRATA_DATA``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or None
    if data_dir is None:
        raise ParameterError(
            "data_dir", f"no data folder: give data_dir=DIR or set {DATA_ENV}=DIR (DIR holds gue/, teb/, ...)"
        )
    return Path(data_dir).expanduser()


def suite_dir(suite: Suite, root: str | Path) -> Path:
    """``root/<suite folder>`` when it exists, else ``root`` itself (the suite's own folder)."""
    root = Path(root)
    if suite.layout == "custom":
        return Path(suite.folder)
    return root / suite.folder if (root / suite.folder).is_dir() else root


def task_files(task: Task, suite: Suite, root: str | Path) -> list[Path]:
    """The files or folders a task reads, in split order."""
    base = suite_dir(suite, root)
    if suite.layout == "gb":
        return [base / task.name / s for s in ("train", "test")]
    if suite.layout == "teb":
        return [base / f"{s}_{task.name}.csv" for s in ("train", "valid", "test")]
    return [split_file(base / task.name, s) for s in SPLITS]  # gue and custom


def missing_files(task: Task, suite: Suite, root: str | Path) -> list[Path]:
    return [p for p in task_files(task, suite, root) if not p.exists()]


def check_data(tasks: Sequence[Task], suite: Suite, root: str | Path) -> None:
    """Raise ``DataNotFoundError`` naming every missing file of ``tasks`` and where to get them."""
    lines = []
    for task in tasks:
        missing = missing_files(task, suite, root)
        folder = task_files(task, suite, root)[0].parent
        if missing and not folder.is_dir():
            lines.append(f"{task.name}: {folder}/ (no such folder)")
        elif missing:
            lines.append(f"{task.name}: {', '.join(map(str, missing))}")
    if lines:
        where = f"; get it from {suite.source}" if suite.source else ""
        raise DataNotFoundError(
            f"data_dir: {suite.title} data not found under {suite_dir(suite, root)}; missing {'; '.join(lines)}. "
            f"Point data_dir (or {DATA_ENV}) at the folder holding {suite.folder}/{where}. "
            "`biostrata benchmark --dry-run` lists which tasks have data.",
            param="data_dir",
        )


def select_tasks(suite: Suite, names: Sequence[str] | None = None) -> list[Task]:
    """Tasks by name (``tf/0``), group (``tf`` = ``tf/*``) or unique last part (``prom_core_all``).

    No names selects every task of the suite. The result is in registry order, without repeats.
    """
    if not names:
        return list(suite.tasks)
    valid = [t.name for t in suite.tasks]
    chosen: set[str] = set()
    for name in names:
        name = name.strip("/")
        hits = [v for v in valid if v == name] or [v for v in valid if v.startswith(name + "/")]
        if not hits:
            hits = [v for v in valid if v.rsplit("/", 1)[-1] == name]
            if len(hits) > 1:
                raise ParameterError(
                    "names", f"names: task {name!r} is ambiguous in {suite.title}: it names {', '.join(hits)}"
                )
        if not hits:
            close = difflib.get_close_matches(name, valid, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"tasks are: {', '.join(valid)}"
            raise ParameterError("names", f"names: {suite.title} has no task {name!r}; {hint}")
        chosen.update(hits)
    return [t for t in suite.tasks if t.name in chosen]


def resolve_suite(name_or_path: str | Path) -> Suite:
    """A registered suite by name (``gue``, ``gb``, ``teb``), else a custom suite at that path."""
    key = str(name_or_path)
    if key in SUITES:
        return SUITES[key]
    path = Path(key).expanduser()
    if not path.is_dir():
        raise ParameterError(
            "name_or_path",
            f"name_or_path={key!r}: not one of {', '.join(SUITES)} and not a folder; give a suite name or a folder "
            "holding train/dev/test files (CSV 'sequence,label' or labelled FASTA)",
        )
    return custom_suite(path)


def custom_suite(path: str | Path) -> Suite:
    """A suite of the task folders at ``path``: the folder itself, or every folder below it,
    that holds train, dev and test files. Tasks are named by their path relative to ``path``."""
    path = Path(path).expanduser().resolve()
    names = f"{{train,dev,test}}{{{','.join(SEQUENCE_SUFFIXES)}}}[.gz]"
    folders = [path, *sorted(d for d in path.rglob("*") if d.is_dir())]
    found = {d: [s for s in SPLITS if split_file(d, s).is_file()] for d in folders}
    for folder, present in found.items():
        if present and len(present) < len(SPLITS):
            missing = [s for s in SPLITS if s not in present]
            raise DataNotFoundError(
                f"{folder}: has {' and '.join(present)} file{'s' if len(present) > 1 else ''} but no "
                f"{' or '.join(missing)} file; a task folder "
                f"holds all three ({names}): add the missing file, or move the folder out of {path}"
            )
    if found[path]:
        return Suite(path.name, path.name, "custom", str(path.parent), "", (Task(path.name, path.name, None, None),))
    dirs = [d for d, present in found.items() if present]
    if not dirs:
        raise DataNotFoundError(f"{path}: no task folder found; a task folder holds train, dev and test files {names}")
    tasks = tuple(Task(path.name, d.relative_to(path).as_posix(), None, None) for d in dirs)
    return Suite(path.name, path.name, "custom", str(path), "", tasks)


def load_task(
    task: Task, suite: Suite, root: str | Path | None = None, *, dev_fraction: float = 0.1, split_seed: int = 0
) -> Splits:
    """Read one task. ``dev_fraction`` and ``split_seed`` carve Genomic Benchmarks' dev split."""
    root = Path(root) if root is not None else Path(".")
    check_data([task], suite, root)
    base = suite_dir(suite, root)
    if suite.layout == "gue":
        splits = read_gue_dir(base / task.name)
    elif suite.layout == "gb":
        splits = read_genomic_benchmark(base / task.name, dev_fraction=dev_fraction, seed=split_seed)
    else:
        splits = Splits(*(read_labelled(p) for p in task_files(task, suite, root)))
    _check_task(task, splits)
    return splits


def _check_task(task: Task, splits: Splits) -> None:
    """The data must agree with the registry: label range and sequence lengths."""
    if task.num_classes is not None and splits.labels != list(range(task.num_classes)):
        raise InputError(
            f"{splits.train.source}: labels {', '.join(map(str, splits.labels))}, but {task.suite} task "
            f"{task.name!r} has labels 0..{task.num_classes - 1}; is this the right dataset?"
        )
    longest = max(max(map(len, s.sequences), default=0) for s in splits)  # all splits: this checks the data
    if task.length is not None and longest > task.length:
        part = next(s for s in splits if max(map(len, s.sequences), default=0) == longest)
        i = next(i for i, q in enumerate(part.sequences) if len(q) == longest)
        raise InputError(
            f"{part.where(i)}: sequence of length {longest} in {task.suite} task {task.name!r}, "
            f"whose sequences are at most {task.length} bp; is this the right dataset?"
        )


def input_length(task: Task, splits: Splits) -> int:
    """The model input length of a task: its registered length, else the longest sequence."""
    return task.length if task.length is not None else splits.max_length


# ---------------------------------------------------------------------------------------------
# Genomic Benchmarks: <dataset>/{train,test}/<class>/<id>.txt


def read_class_folders(folder: str | Path, classes: Sequence[str] | None = None) -> tuple[SequenceSet, list[str]]:
    """Read ``folder/<class>/*.txt`` (one sequence per file, lines joined).

    Class ids are indices into ``classes`` (default: the sorted class folder names), so they never
    depend on directory listing order. Files are read in natural name order (2.txt before 10.txt).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such folder; expected one subfolder per class holding <id>.txt files")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not found:
        raise InputError(f"{folder}: no class subfolders; expected {folder}/<class>/<id>.txt")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise InputError(
            f"{folder}: class folder(s) {', '.join(unknown)} not among the training classes {', '.join(classes)}"
        )
    seqs: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted((folder / name).glob("*.txt"), key=_natural_key) if (folder / name).is_dir() else []
        for file in files:
            try:
                seq = "".join(file.read_text().split())
            except UnicodeDecodeError:
                raise InputError(f"{file}: not a text file; a class folder holds one sequence per <id>.txt") from None
            if not seq:
                raise InputError(f"{file}: empty sequence file")
            seqs.append(seq)
            labels.append(label)
    if not seqs:
        raise InputError(f"{folder}: no <id>.txt sequence files in the class folders {', '.join(found)}")
    return SequenceSet(seqs, np.array(labels, dtype=np.int64), str(folder)), list(classes)


def _natural_key(path: Path) -> tuple[int, int | str]:
    stem = path.stem
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def read_genomic_benchmark(folder: str | Path, *, dev_fraction: float = 0.1, seed: int = 0) -> Splits:
    """Read a Genomic Benchmarks dataset folder; ``dev`` is a stratified ``dev_fraction`` of train."""
    check_fraction(dev_fraction, "dev_fraction")  # before the folder is read
    folder = Path(folder)
    train, classes = read_class_folders(folder / "train")
    test, _ = read_class_folders(folder / "test", classes)
    fit, dev = stratified_split(train, dev_fraction, seed)
    return Splits(fit, dev, test)


def stratified_split(data: SequenceSet, fraction: float, seed: int) -> tuple[SequenceSet, SequenceSet]:
    """Split off ``round(fraction * n_c)`` (at least 1) random items of every class ``c``.

    The draw is a ``numpy.random.default_rng(seed)`` permutation per class, in class order; both
    parts keep the original order. Every class needs at least 2 items.
    """
    check_fraction(fraction)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(data), dtype=bool)
    for label in np.unique(data.labels):
        members = np.flatnonzero(data.labels == label)
        if members.size < 2:
            raise InputError(
                f"{data.source}: class {label} has {members.size} item; a dev split needs at least 2 per class"
            )
        k = min(max(1, round(fraction * members.size)), members.size - 1)
        held[rng.permutation(members)[:k]] = True
    note = f" (dev: stratified {fraction:g} of train, seed {seed})"

    def part(mask: np.ndarray, tag: str) -> SequenceSet:
        idx = np.flatnonzero(mask)
        meta = {name: [values[i] for i in idx] for name, values in data.meta.items()}
        lines = [data.lines[i] for i in idx] if data.lines else None
        return SequenceSet(
            [data.sequences[i] for i in idx], data.labels[idx], f"{data.source} [{tag}]{note}", lines, meta
        )

    return part(~held, "train"), part(held, "dev")
