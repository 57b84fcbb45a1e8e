"""Labelled DNA datasets simulated along a tree, written in the GUE layout.

Labels (``label=``):

- ``"clade"``: the tree is cut into ``n_clades`` clades by its first splits in order of node depth
  (:meth:`Tree.clade_roots`) and the clades are dealt to ``n_classes`` classes, largest clade first,
  each to the class with the fewest leaves so far (ties: lowest class). With
  ``n_clades = n_classes`` (the default) each class is one clade; more clades than classes make
  classes that are unions of clades ("label depth").
- ``"motif"``: the same cut and classes; class 0 is background, and class ``c >= 1`` has a random
  motif of ``motif_length`` bases planted at a uniform position at the root of each of its clades
  and conserved in every descendant (see :mod:`biostrata.data.simulation.evolution`).

Randomness: one ``numpy.random.SeedSequence(seed)`` is split into independent streams for the
tree, the motifs, the evolution and the split, so the same seed gives the same files byte for byte,
and changing e.g. the substitution model keeps the same tree.

Splits: by leaf, stratified by class; a class of ``m`` leaves gives ``round(m f_dev)`` to dev,
``round(m f_test)`` to test and the rest to train; rows are shuffled within each split.

Lengths: with indels, sequences vary in length and are written as they are (readers pad to the
longest). ``fixed_length=True`` cuts each leaf sequence at its 3' end or pads it there with bases
drawn from the model's frequencies to exactly ``length``, so length carries no signal (a clade's
shared indels would otherwise show in the padding).

Files written by :func:`write_gue` in ``out``:
``train.csv``, ``dev.csv``, ``test.csv`` (header ``sequence,label``), ``tree.nwk`` (leaves
``t0, t1, ...``), ``leaves.csv`` (``leaf,split,row,clade,label``: where each leaf's sequence is;
``row`` counts data rows from 0), ``simulation.yaml`` (``parameters``: the arguments of
:func:`simulate_dataset` that rebuild the dataset; plus the model, motifs and class counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from biostrata import __version__
from biostrata.data.simulation.evolution import decode_bases, evolve, make_model
from biostrata.data.simulation.trees import Tree, make_tree
from biostrata.errors import InputError, ParameterError
from biostrata.io import atomic_write_text

if TYPE_CHECKING:
    from biostrata.data.dna.genome import Splits

LABELS = ("clade", "motif")  # how leaves get their class: by clade, or by a planted motif
SPLITS = ("train", "dev", "test")


@dataclass
class SimulatedDataset:
    """Leaf sequences and labels (leaf order) with their tree, split and generating parameters."""

    tree: Tree
    sequences: list[str]
    labels: np.ndarray
    clades: np.ndarray
    rows: dict[str, np.ndarray]
    parameters: dict
    model: dict = field(default_factory=dict)
    motifs: dict[int, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return int(self.parameters["n_classes"])

    def split_of_leaf(self) -> np.ndarray:
        """Split name of each leaf, in leaf order."""
        out = np.empty(len(self.sequences), dtype=object)
        for name, idx in self.rows.items():
            out[idx] = name
        return out

    def counts(self) -> dict[str, list[int]]:
        """Leaves per class in each split."""
        return {
            name: np.bincount(self.labels[idx], minlength=self.n_classes).tolist() for name, idx in self.rows.items()
        }

    def to_splits(self) -> Splits:
        """The dataset as :class:`biostrata.data.dna.genome.Splits` (what training reads)."""
        from biostrata.data.dna.genome import SequenceSet, Splits

        sets = [
            SequenceSet([self.sequences[i] for i in self.rows[name]], self.labels[self.rows[name]], f"simulated {name}")
            for name in SPLITS
        ]
        return Splits(*sets)


def _check(name: str, ok: bool, want: str, value) -> None:
    if not ok:
        raise InputError(f"{name} must be {want}, got {value!r}")


def simulate_dataset(
    n_leaves: int = 5000,
    length: int = 200,
    *,
    tree: str = "yule",
    height: float = 1.0,
    birth: float = 1.0,
    death: float = 0.5,
    model: str = "hky85",
    kappa: float | None = None,
    freqs: Sequence[float] | None = None,
    gamma: float | None = None,
    categories: int = 4,
    indel_rate: float = 0.0,
    indel_length: float = 2.0,
    root: str | None = None,
    label: str = "clade",
    n_classes: int = 2,
    n_clades: int | None = None,
    motif_length: int = 8,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    fixed_length: bool = False,
    seed: int = 0,
) -> SimulatedDataset:
    """Simulate a labelled dataset: a ``tree`` of ``n_leaves`` leaves (root-to-leaf ``height``
    substitutions per site), sequences of ``length`` bases evolved along it, labels and a split.

    See the module notes for the label modes, the split and ``fixed_length``; tree shapes are in
    :mod:`biostrata.data.simulation.trees`, models and indels in :mod:`biostrata.data.simulation.evolution`.
    """
    parameters = {
        "n_leaves": int(n_leaves), "length": int(length), "tree": tree, "height": float(height),
        "birth": float(birth), "death": float(death), "model": model,
        "kappa": None if kappa is None else float(kappa),
        "freqs": None if freqs is None else [float(x) for x in freqs],
        "gamma": None if gamma is None else float(gamma), "categories": int(categories),
        "indel_rate": float(indel_rate), "indel_length": float(indel_length), "root": root,
        "label": label, "n_classes": int(n_classes), "n_clades": None if n_clades is None else int(n_clades),
        "motif_length": int(motif_length), "fractions": [float(x) for x in fractions],
        "fixed_length": bool(fixed_length), "seed": int(seed),
    }  # fmt: skip
    _check("n_leaves", int(n_leaves) == n_leaves and n_leaves >= 2, "an integer >= 2", n_leaves)
    if root is not None:
        length = parameters["length"] = len(root)
    _check("label", label in LABELS, f"one of {', '.join(LABELS)}", label)
    _check("n_classes", int(n_classes) == n_classes and n_classes >= 2, "an integer >= 2", n_classes)
    n_clades = int(n_classes) if n_clades is None else n_clades
    _check("n_clades", int(n_clades) == n_clades and n_clades >= 1, "an integer >= 1", n_clades)
    if n_classes > n_clades:
        raise ParameterError(
            "n_classes", f"n_classes={n_classes}: more than n_clades={n_clades}; each class needs at least one clade"
        )
    if n_clades > n_leaves:
        raise ParameterError(
            "n_clades",
            f"n_clades={n_clades}: more than the tree's n_leaves={n_leaves} clades (n_clades defaults to n_classes)",
        )
    _check("length", int(length) == length and length >= 1, "an integer >= 1", length)
    if label == "motif":
        _check(
            "motif_length",
            int(motif_length) == motif_length and 1 <= motif_length <= length,
            f"an integer in 1..length ({length})",
            motif_length,
        )
        if 4**motif_length < n_classes - 1:
            raise InputError(
                f"motif_length={motif_length} allows fewer than the {n_classes - 1} distinct motifs needed"
            )
    frac = np.asarray(fractions, dtype=np.float64)
    ok = frac.shape == (3,) and np.all(frac >= 0) and frac[0] > 0 and abs(frac.sum() - 1) < 1e-9
    _check(
        "fractions", bool(ok), "3 numbers (train dev test) >= 0 summing to 1, with train > 0", list(np.ravel(fractions))
    )
    subst = make_model(model, kappa=kappa, freqs=freqs)

    tree_rng, motif_rng, evolve_rng, split_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    phylogeny = make_tree(tree, n_leaves, height=height, birth=birth, death=death, rng=tree_rng)
    roots = phylogeny.clade_roots(n_clades)
    clades = phylogeny.leaf_clades(roots)
    clade_class = _deal(np.bincount(clades, minlength=len(roots)), int(n_classes))
    labels = clade_class[clades]

    motifs: dict[int, str] = {}
    planted: dict[int, str] = {}
    if label == "motif":
        while len(set(motifs.values())) < n_classes - 1:
            motifs = {c: decode_bases(motif_rng.integers(4, size=int(motif_length))) for c in range(1, int(n_classes))}
        planted = {int(node): motifs[int(c)] for node, c in zip(roots, clade_class) if c > 0}

    sequences = evolve(
        phylogeny, subst, None if root is not None else length, root=root, gamma=gamma, categories=categories,
        indel_rate=indel_rate, indel_length=indel_length, motifs=planted, rng=evolve_rng,
    )  # fmt: skip
    if fixed_length:
        sequences = [_fit(s, int(length), subst.freqs, evolve_rng) for s in sequences]
    rows = _stratified_split(labels, frac, split_rng)
    return SimulatedDataset(phylogeny, sequences, labels, clades, rows, parameters, subst.params(), motifs)


def _deal(clade_sizes: np.ndarray, n_classes: int) -> np.ndarray:
    """Class of each clade: largest clade first, each to the class with the fewest leaves so far."""
    totals = np.zeros(n_classes, dtype=np.int64)
    out = np.empty(clade_sizes.size, dtype=np.int64)
    for clade in np.argsort(-clade_sizes, kind="stable"):
        c = int(np.argmin(totals))
        out[clade] = c
        totals[c] += clade_sizes[clade]
    return out


def _fit(seq: str, length: int, freqs: np.ndarray, rng: np.random.Generator) -> str:
    """Cut or pad (bases drawn from ``freqs``) at the 3' end to exactly ``length``."""
    if len(seq) >= length:
        return seq[:length]
    return seq + decode_bases(rng.choice(4, size=length - len(seq), p=freqs))


def _stratified_split(labels: np.ndarray, fractions: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Leaf indices of each split: per class, ``round(m f)`` to dev and test, the rest to train; rows shuffled."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_dev, n_test = (int(round(members.size * f)) for f in fractions[1:])
        n_train = members.size - n_dev - n_test
        if n_train < 1:  # rounding up dev and test must not empty train
            n_test = max(0, n_test - 1)
            n_train = members.size - n_dev - n_test
        parts["train"].append(members[:n_train])
        parts["dev"].append(members[n_train : n_train + n_dev])
        parts["test"].append(members[n_train + n_dev :])
    return {name: rng.permutation(np.concatenate(idx)) for name, idx in parts.items()}


def write_gue(dataset: SimulatedDataset, out: str | Path) -> Path:
    """Write the dataset in the GUE layout plus its tree and parameters (see the module notes); returns ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError("out", f"out={str(out)!r}: exists and is not a folder; give a folder path")
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        idx = dataset.rows[name]
        lines = [f"{dataset.sequences[i]},{int(dataset.labels[i])}\n" for i in idx]
        atomic_write_text(out / f"{name}.csv", "sequence,label\n" + "".join(lines))
    atomic_write_text(out / "tree.nwk", dataset.tree.newick() + "\n")
    split, row = dataset.split_of_leaf(), np.empty(len(dataset.sequences), dtype=np.int64)
    for idx in dataset.rows.values():
        row[idx] = np.arange(idx.size)
    names = dataset.tree.leaf_names
    table = [f"{names[i]},{split[i]},{row[i]},{dataset.clades[i]},{dataset.labels[i]}\n" for i in range(len(names))]
    atomic_write_text(out / "leaves.csv", "leaf,split,row,clade,label\n" + "".join(table))
    summary = {
        "format": "biostrata simulated dataset, GUE layout",  # biostrata simulate --config reads it back
        "biostrata_version": __version__,
        "parameters": dataset.parameters,
        "model": dataset.model,
        "tree_height": dataset.tree.height(),
        "motifs": dataset.motifs,
        "counts": dataset.counts(),
        "files": {**{name: f"{name}.csv" for name in SPLITS}, "tree": "tree.nwk", "leaves": "leaves.csv"},
    }
    atomic_write_text(out / "simulation.yaml", yaml.safe_dump(summary, sort_keys=False))
    return out
