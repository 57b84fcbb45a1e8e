"""Nucleotide substitution models and sequence evolution along a tree.

Bases are ordered A, C, G, T (indices 0..3). Every model is time-reversible,
``Q_ij = s_ij pi_j`` for ``i != j`` with symmetric exchangeabilities ``s`` and stationary
frequencies ``pi``, scaled so that ``-sum_i pi_i Q_ii = 1``: a branch of length ``t`` carries
``t`` expected substitutions per site. ``P(t) = expm(Q t)`` comes from the eigendecomposition of
the symmetric matrix ``Pi^{1/2} Q Pi^{-1/2}``.

- JC69: all ``s_ij = 1``, ``pi = 1/4``; ``P_ii(t) = 1/4 + 3/4 exp(-4t/3)``.
- K80: transitions (A<->G, C<->T) ``s = kappa``, transversions 1, ``pi = 1/4``.
- HKY85: K80's ``s`` with arbitrary ``pi``.

Rate heterogeneity: site rates follow a Gamma(alpha, 1/alpha) law (mean 1) discretised into
``categories`` equally likely classes, each represented by its mean (Yang 1994). Each site draws
one class at the root and keeps it; inserted sites draw their own.

Indels: along a branch of length ``t`` over a sequence of ``L`` sites, the number of indel events
is Poisson(``indel_rate * t * L``); each is an insertion or a deletion with probability 1/2, of
geometric length (mean ``indel_length``), at a uniform position; inserted bases are drawn from
``pi``. Substitutions are applied to the parent's sites first, then the indels. Since inserted
bases are stationary and deleted ones are gone, this matches events spread over the branch in
distribution, up to the change of ``L`` within one branch.

Motifs: ``motifs={node: "ACGT..."}`` writes the motif at a uniform position of that node's
sequence; those sites are then conserved in every descendant (no substitutions, and indels that
would touch them are dropped), like a functional site under purifying selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import gammainc, gammaincinv

from biostrata.data.simulation.trees import Tree
from biostrata.errors import InputError, ParameterError

BASES = "ACGT"
_CODE = np.full(256, -1, dtype=np.int8)
for _i, _b in enumerate(BASES):
    _CODE[ord(_b)] = _CODE[ord(_b.lower())] = _i
# exchangeability pairs in the order AC, AG, AT, CG, CT, GT; AG and CT are transitions
_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_TRANSITION = np.array([False, True, False, False, True, False])
MODELS = ("jc69", "k80", "hky85")


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"{name} must be positive and finite, got {value}")
    return value


def _frequencies(freqs: Sequence[float]) -> np.ndarray:
    pi = np.asarray(freqs, dtype=np.float64)
    if pi.shape != (4,) or not np.all(np.isfinite(pi)) or np.any(pi <= 0):
        raise ParameterError("freqs", f"freqs={list(np.ravel(freqs))}: give 4 positive base frequencies (A C G T)")
    if abs(pi.sum() - 1.0) > 1e-6:
        raise ParameterError("freqs", f"freqs={pi.tolist()}: must sum to 1 (A C G T), not {pi.sum():.6g}")
    return pi / pi.sum()


class GTR:
    """General time-reversible model from 6 exchangeabilities (AC AG AT CG CT GT) and base frequencies."""

    name = "gtr"

    def __init__(self, exchangeabilities: Sequence[float], freqs: Sequence[float]) -> None:
        s = np.asarray(exchangeabilities, dtype=np.float64)
        if s.shape != (6,) or not np.all(np.isfinite(s)) or np.any(s < 0) or not np.any(s > 0):
            raise InputError(
                f"exchangeabilities must be 6 non-negative rates (AC AG AT CG CT GT), got {list(np.ravel(s))}"
            )
        self.freqs = _frequencies(freqs)
        q = np.zeros((4, 4))
        for (i, j), rate in zip(_PAIRS, s):
            q[i, j] = rate * self.freqs[j]
            q[j, i] = rate * self.freqs[i]
        q[np.diag_indices(4)] = -q.sum(axis=1)
        q /= -np.dot(self.freqs, np.diag(q))
        self.Q = q
        root = np.sqrt(self.freqs)
        sym = root[:, None] * q / root[None, :]
        self._eigval, vec = np.linalg.eigh((sym + sym.T) / 2)
        self._left = vec / root[:, None]  # Pi^{-1/2} U
        self._right = vec.T * root[None, :]  # U^T Pi^{1/2}

    def P(self, t: float | np.ndarray) -> np.ndarray:
        """Transition probabilities ``expm(Q t)``, shape ``(*t.shape, 4, 4)``; rows are the parent base."""
        t = np.asarray(t, dtype=np.float64)
        if np.any(t < 0):
            raise InputError("branch lengths must be >= 0")
        decay = np.exp(t[..., None] * self._eigval)
        p = np.einsum("ik,...k,kj->...ij", self._left, decay, self._right)
        return np.clip(p, 0.0, 1.0)

    def params(self) -> dict:
        return {"model": self.name, "freqs": [float(x) for x in self.freqs]}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params().items() if k != "model")
        return f"{type(self).__name__}({args})"


class HKY85(GTR):
    """Hasegawa-Kishino-Yano 1985: transition/transversion ratio ``kappa`` and base frequencies ``freqs``."""

    name = "hky85"

    def __init__(self, kappa: float = 2.0, freqs: Sequence[float] = (0.3, 0.2, 0.2, 0.3)) -> None:
        self.kappa = _positive("kappa", kappa)
        super().__init__(np.where(_TRANSITION, self.kappa, 1.0), freqs)

    def params(self) -> dict:
        return {**super().params(), "kappa": self.kappa}


class K80(HKY85):
    """Kimura 1980: transition/transversion ratio ``kappa``, equal base frequencies."""

    name = "k80"

    def __init__(self, kappa: float = 2.0) -> None:
        super().__init__(kappa, (0.25,) * 4)

    def params(self) -> dict:
        return {"model": self.name, "kappa": self.kappa}


class JC69(GTR):
    """Jukes-Cantor 1969: equal rates and equal base frequencies."""

    name = "jc69"

    def __init__(self) -> None:
        super().__init__(np.ones(6), (0.25,) * 4)

    def params(self) -> dict:
        return {"model": self.name}


def make_model(name: str, *, kappa: float | None = None, freqs: Sequence[float] | None = None) -> GTR:
    """Model by name (one of :data:`MODELS`); passing a parameter the model lacks is an error."""
    name = name.lower()
    if name not in MODELS:
        raise InputError(f"unknown substitution model {name!r}; choose one of {', '.join(MODELS)}")
    if freqs is not None and name != "hky85":
        raise InputError(f"freqs applies to hky85 only; {name} has equal base frequencies")
    if kappa is not None and name == "jc69":
        raise InputError("kappa applies to k80 and hky85, not jc69")
    if name == "jc69":
        return JC69()
    if name == "k80":
        return K80(2.0 if kappa is None else kappa)
    return HKY85(2.0 if kappa is None else kappa, (0.3, 0.2, 0.2, 0.3) if freqs is None else freqs)


def gamma_rates(alpha: float, categories: int = 4) -> np.ndarray:
    """Mean rate of each of ``categories`` equally likely classes of Gamma(alpha, 1/alpha) (Yang 1994).

    ``r_i = K [I(alpha b_{i+1}; alpha + 1) - I(alpha b_i; alpha + 1)]`` with ``b_i`` the ``i/K``
    quantiles and ``I`` the regularised lower incomplete gamma function; the rates average 1.
    """
    alpha = _positive("gamma (shape alpha)", alpha)
    if int(categories) != categories or categories < 1:
        raise ParameterError("categories", f"categories={categories}: give a whole number, 1 or more")
    k = int(categories)
    bounds = np.append(gammaincinv(alpha, np.arange(k) / k) / alpha, np.inf)
    cdf = gammainc(alpha + 1.0, alpha * bounds)
    return k * np.diff(cdf)


def encode_bases(seq: str, *, name: str = "sequence") -> np.ndarray:
    """ACGT string (any case) -> int8 indices 0..3; any other character is an error naming ``name``."""
    codes = _CODE[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        raise InputError(f"{name}: invalid base {seq[bad[0]]!r} at position {bad[0] + 1}; only A, C, G, T are allowed")
    return codes


def decode_bases(codes: np.ndarray) -> str:
    """int indices 0..3 -> ACGT string."""
    return np.frombuffer(b"ACGT", dtype=np.uint8)[codes].tobytes().decode("ascii")


def evolve(
    tree: Tree,
    model: GTR,
    length: int | None = None,
    *,
    root: str | None = None,
    gamma: float | None = None,
    categories: int = 4,
    indel_rate: float = 0.0,
    indel_length: float = 2.0,
    motifs: Mapping[int, str] | None = None,
    rng: np.random.Generator | int | None = None,
) -> list[str]:
    """Evolve a root sequence down ``tree`` under ``model``; returns the leaf sequences in leaf order.

    ``root`` fixes the root sequence (else ``length`` bases drawn from the model's frequencies);
    ``gamma`` is the shape of the site-rate distribution (None: all sites at rate 1);
    ``motifs`` maps node index -> motif planted there and conserved below (see the module notes).
    """
    rng = np.random.default_rng(rng)
    if root is not None:
        root_codes = encode_bases(root, name="root")
        if length is not None and length != root_codes.size:
            raise ParameterError(
                "length", f"length={length}: differs from the root sequence's length {root_codes.size}"
            )
    elif length is None or int(length) != length or length < 1:
        raise ParameterError("length", f"length={length}: give a whole number, 1 or more")
    if not (np.isfinite(indel_rate) and indel_rate >= 0):
        raise ParameterError("indel_rate", f"indel_rate={indel_rate}: must be >= 0")
    if indel_rate > 0 and not (np.isfinite(indel_length) and indel_length >= 1):
        raise ParameterError("indel_length", f"indel_length={indel_length}: the mean indel length must be >= 1")
    planted = {int(node): encode_bases(m, name=f"motif at node {node}") for node, m in (motifs or {}).items()}
    for node in planted:
        if not 0 <= node < tree.n_nodes:
            raise InputError(f"motif node {node} is not a node of the tree (0..{tree.n_nodes - 1})")
    rates = np.ones(1) if gamma is None else gamma_rates(gamma, categories)
    # cumulative P per (node, rate class, parent base); the last column is 1 by construction
    cdf = np.cumsum(model.P(tree.length[:, None] * rates[None, :]), axis=-1)[..., :3]

    n_sites = root_codes.size if root is not None else int(length)
    seqs: list[np.ndarray | None] = [None] * tree.n_nodes
    cats: list[np.ndarray | None] = [None] * tree.n_nodes
    kept: list[np.ndarray | None] = [None] * tree.n_nodes
    seqs[0] = root_codes if root is not None else rng.choice(4, size=n_sites, p=model.freqs).astype(np.int8)
    cats[0] = rng.integers(rates.size, size=n_sites)
    kept[0] = np.zeros(n_sites, dtype=bool)
    _plant(0, planted, seqs, kept, rng)
    pending = np.bincount(tree.parent[1:], minlength=tree.n_nodes)  # children not yet evolved
    for node in range(1, tree.n_nodes):
        up = tree.parent[node]
        parent_seq, cat, cons = seqs[up], cats[up], kept[up]
        u = rng.random(parent_seq.size)
        child = (u[:, None] > cdf[node, cat, parent_seq]).sum(axis=1).astype(np.int8)
        child[cons] = parent_seq[cons]
        if indel_rate > 0:
            child, cat, cons = _indels(
                child, cat, cons, indel_rate * tree.length[node], indel_length, model.freqs, rates.size, rng
            )
        seqs[node], cats[node], kept[node] = child, cat, cons
        _plant(node, planted, seqs, kept, rng)
        pending[up] -= 1
        if pending[up] == 0 and not tree.is_leaf[up]:
            seqs[up] = cats[up] = kept[up] = None  # free ancestors once all children are done
    return [decode_bases(seqs[leaf]) for leaf in tree.leaves]


def _plant(node: int, planted: dict[int, np.ndarray], seqs: list, kept: list, rng: np.random.Generator) -> None:
    motif = planted.get(node)
    if motif is None:
        return
    seq = seqs[node]
    if motif.size > seq.size:
        raise InputError(f"motif of length {motif.size} does not fit a sequence of length {seq.size} at node {node}")
    start = int(rng.integers(seq.size - motif.size + 1))
    seq = seq.copy()
    seq[start : start + motif.size] = motif
    cons = kept[node].copy()
    cons[start : start + motif.size] = True
    seqs[node], kept[node] = seq, cons


def _indels(
    seq: np.ndarray,
    cat: np.ndarray,
    cons: np.ndarray,
    rate_times_t: float,
    mean_length: float,
    freqs: np.ndarray,
    n_cats: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply Poisson(rate * t * L) insertions/deletions of geometric length; see the module notes."""
    n_events = rng.poisson(rate_times_t * seq.size)
    for _ in range(n_events):
        size = int(rng.geometric(1.0 / mean_length))
        if rng.random() < 0.5:  # insertion before site `at` (0..L)
            at = int(rng.integers(seq.size + 1))
            if 0 < at < seq.size and cons[at - 1] and cons[at]:
                continue
            new = rng.choice(4, size=size, p=freqs).astype(np.int8)
            seq = np.concatenate([seq[:at], new, seq[at:]])
            cat = np.concatenate([cat[:at], rng.integers(n_cats, size=size), cat[at:]])
            cons = np.concatenate([cons[:at], np.zeros(size, dtype=bool), cons[at:]])
        else:  # deletion of sites at..at+size-1
            if size >= seq.size:
                continue
            at = int(rng.integers(seq.size - size + 1))
            if cons[at : at + size].any():
                continue
            keep = np.ones(seq.size, dtype=bool)
            keep[at : at + size] = False
            seq, cat, cons = seq[keep], cat[keep], cons[keep]
    return seq, cat, cons
