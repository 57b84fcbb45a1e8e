"""Rooted phylogenetic trees: random and deterministic shapes, Newick, distances, clades.

A :class:`Tree` stores its nodes in depth-first preorder (root first, children in order), so every
subtree is a contiguous block of node indices and every node comes after its parent. Branch lengths
are in expected substitutions per site.

Shapes (all ultrametric, root-to-leaf distance ``height``):

- ``yule`` and ``birth-death``: the reconstructed tree of a birth-death process (birth rate
  ``birth``, death rate ``death <= birth``) conditioned on ``n`` leaves, with a uniform prior on
  the time of origin (Gernhard 2008). It is drawn as a coalescent point process (Lambert & Stadler
  2013): the ``n - 1`` node ages between neighbouring leaves are i.i.d. with
  ``F(s) = birth (1 - e^{-r s}) / (birth - death e^{-r s})``, ``r = birth - death``
  (``F(s) = 1 - e^{-birth s}`` for Yule), and leaves ``i < j`` meet at the largest age between them.
  The ages are then rescaled so that the root is at ``height``; only ``death / birth`` changes
  the shape.
- ``balanced``: every node splits its ``m`` leaves into ``ceil(m/2)`` and ``floor(m/2)``.
- ``caterpillar``: every internal node has one leaf child (a ladder).
  For both, internal nodes at ``l`` edges below the root sit at height
  ``height * (1 - l / (l_max + 1))`` (``l_max``: the deepest internal level) and leaves at 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from biostrata.errors import InputError, ParameterError

SHAPES = ("yule", "birth-death", "balanced", "caterpillar")
Seed = np.random.Generator | int | None  # what np.random.default_rng takes


class Tree:
    """A rooted tree with branch lengths; nodes are renumbered in depth-first preorder.

    Parameters
    ----------
    parent : parent index of each node, -1 for the (single) root.
    length : length of the branch above each node (ignored for the root, stored as 0).
    names : name of each node; leaves are usually named, internal nodes ``""``.
    """

    def __init__(self, parent: Sequence[int], length: Sequence[float], names: Sequence[str] | None = None) -> None:
        parent = np.asarray(parent, dtype=np.int64)
        length = np.asarray(length, dtype=np.float64)
        n = parent.size
        names = [""] * n if names is None else [str(s) for s in names]
        if parent.ndim != 1 or length.shape != parent.shape or len(names) != n or n == 0:
            raise InputError(
                f"parent, length and names must be 1-d and of equal non-zero size; got {parent.shape}, {length.shape}, {len(names)}"
            )
        roots = np.flatnonzero(parent == -1)
        if roots.size != 1:
            raise InputError(f"a tree has exactly one root (parent -1); found {roots.size}")
        if np.any((parent < -1) | (parent >= n)):
            raise InputError("parent indices must lie in [-1, number of nodes)")
        children: list[list[int]] = [[] for _ in range(n)]
        for node, up in enumerate(parent.tolist()):
            if up >= 0:
                children[up].append(node)
        order: list[int] = []
        stack = [int(roots[0])]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(reversed(children[node]))
        if len(order) != n:
            raise InputError(
                f"parent array has a cycle or detached nodes: {n - len(order)} nodes unreachable from the root"
            )
        order_arr = np.asarray(order)
        rank = np.empty(n, dtype=np.int64)
        rank[order_arr] = np.arange(n)
        self.parent = np.where(parent[order_arr] >= 0, rank[parent[order_arr]], -1)
        self.length = length[order_arr].copy()
        self.length[0] = 0.0
        if not np.all(np.isfinite(self.length)) or np.any(self.length < 0):
            bad = int(np.flatnonzero(~(np.isfinite(self.length) & (self.length >= 0)))[0])
            raise InputError(f"branch lengths must be finite and >= 0; node {order[bad]} has {self.length[bad]}")
        self.names = [names[i] for i in order]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for node, up in enumerate(self.parent.tolist()):
            if up >= 0:
                self.children[up].append(node)
        self.parent.setflags(write=False)
        self.length.setflags(write=False)

    # -- structure ---------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return self.parent.size

    @cached_property
    def is_leaf(self) -> np.ndarray:
        """Boolean mask over nodes."""
        return np.array([not c for c in self.children])

    @cached_property
    def leaves(self) -> np.ndarray:
        """Node indices of the leaves, in preorder (the leaf order used everywhere)."""
        return np.flatnonzero(self.is_leaf)

    @property
    def n_leaves(self) -> int:
        return self.leaves.size

    @property
    def leaf_names(self) -> list[str]:
        return [self.names[i] for i in self.leaves]

    @cached_property
    def depth(self) -> np.ndarray:
        """Distance from the root to each node (sum of branch lengths)."""
        out = np.zeros(self.n_nodes)
        for node in range(1, self.n_nodes):
            out[node] = out[self.parent[node]] + self.length[node]
        return out

    @cached_property
    def leaf_span(self) -> np.ndarray:
        """(n_nodes, 2): the leaves below node v are the leaves ``leaf_span[v, 0] <= rank < leaf_span[v, 1]``."""
        count = self.is_leaf.astype(np.int64)
        for node in range(self.n_nodes - 1, 0, -1):
            count[self.parent[node]] += count[node]
        first = np.cumsum(self.is_leaf) - self.is_leaf  # leaves before each node in preorder
        return np.stack([first, first + count], axis=1)

    def height(self) -> float:
        """Largest root-to-leaf distance."""
        return float(self.depth[self.leaves].max())

    def scaled(self, factor: float) -> Tree:
        """The same tree with every branch length multiplied by ``factor`` (> 0)."""
        if not factor > 0 or not np.isfinite(factor):
            raise InputError(f"scale factor must be positive and finite, got {factor}")
        return Tree(self.parent, self.length * factor, self.names)

    # -- distances and clades ----------------------------------------------------------------
    def patristic_distances(self) -> np.ndarray:
        """(n_leaves, n_leaves) path lengths between leaves: ``d(i, j) = D_i + D_j - 2 D_lca(i, j)``."""
        span = self.leaf_span
        lca_depth = np.diag(self.depth[self.leaves])
        for node in np.flatnonzero(~self.is_leaf):
            kids = self.children[node]
            for a, left in enumerate(kids):
                la = slice(*span[left])
                for right in kids[a + 1 :]:
                    lb = slice(*span[right])
                    lca_depth[la, lb] = self.depth[node]
                    lca_depth[lb, la] = self.depth[node]
        leaf_depth = self.depth[self.leaves]
        return leaf_depth[:, None] + leaf_depth[None, :] - 2.0 * lca_depth

    def clade_roots(self, k: int) -> np.ndarray:
        """Roots of the ``k`` clades left after the first splits in order of node depth.

        Starting from the whole tree, the clade whose root is nearest the root (ties: lowest
        preorder index) is replaced by its children until there are ``k`` clades. Returned in
        preorder, so clade 0 holds the first leaves.
        """
        k = int(k)
        if k < 1:
            raise InputError(f"number of clades must be >= 1, got {k}")
        if k > self.n_leaves:
            raise InputError(f"the tree has {self.n_leaves} leaves, so it cannot be cut into {k} clades")
        roots = [0]
        internal = [] if self.is_leaf[0] else [0]
        while len(roots) < k:
            node = min(internal, key=lambda v: (self.depth[v], v))
            internal.remove(node)
            kids = self.children[node]
            if len(roots) - 1 + len(kids) > k:
                raise InputError(
                    f"no cut gives exactly {k} clades: node {node} has {len(kids)} children "
                    f"and splitting it would give {len(roots) - 1 + len(kids)}"
                )
            roots.remove(node)
            roots.extend(kids)
            internal.extend(c for c in kids if not self.is_leaf[c])
        return np.sort(np.asarray(roots, dtype=np.int64))

    def leaf_clades(self, roots: Sequence[int]) -> np.ndarray:
        """Index into ``roots`` of the clade holding each leaf (leaf order); roots must be disjoint and cover all leaves."""
        out = np.full(self.n_leaves, -1, dtype=np.int64)
        for i, node in enumerate(roots):
            lo, hi = self.leaf_span[node]
            if np.any(out[lo:hi] >= 0):
                raise InputError(f"clade roots overlap at node {node}")
            out[lo:hi] = i
        if np.any(out < 0):
            raise InputError(f"clade roots leave {int(np.sum(out < 0))} leaves uncovered")
        return out

    # -- Newick ------------------------------------------------------------------------------
    def newick(self) -> str:
        """Newick string; lengths use Python's shortest round-trip float form, so parsing it back is exact."""

        def label(node: int) -> str:
            text = _quote(self.names[node])
            return text if node == 0 else f"{text}:{float(self.length[node])!r}"

        out: list[str] = []
        stack: list[int | str] = [0]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
                continue
            kids = self.children[item]
            if not kids:
                out.append(label(item))
                continue
            out.append("(")
            stack.append(")" + label(item))
            for i, kid in enumerate(reversed(kids)):
                if i:
                    stack.append(",")
                stack.append(kid)
        return "".join(out) + ";"

    def __repr__(self) -> str:
        return f"Tree(n_leaves={self.n_leaves}, n_nodes={self.n_nodes}, height={self.height():.4g})"


_NEEDS_QUOTES = re.compile(r"[\s(),:;\[\]']")
_TOKEN = re.compile(r"\s*(?:(\[[^\]]*\])|('(?:[^']|'')*')|([(),:;])|([^\s(),:;\[\]']+))")


def _quote(name: str) -> str:
    if name and _NEEDS_QUOTES.search(name):
        return "'" + name.replace("'", "''") + "'"
    return name


def parse_newick(text: str, *, source: str = "Newick string") -> Tree:
    """Read one rooted tree in Newick format. Every branch except the root's needs a length.

    Labels may be single-quoted (``''`` is a quote); ``[...]`` comments are skipped.
    """
    parent: list[int] = [-1]
    length: list[float | None] = [0.0]
    names: list[str] = [""]
    stack: list[int] = []
    node = 0
    pos = 0
    expect_length = False
    done = False
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise InputError(f"{source}, character {pos + 1}: cannot read {text[pos : pos + 10]!r}")
        pos = match.end()
        comment, quoted, punct, word = match.groups()
        if comment is not None:
            continue
        if done:
            raise InputError(f"{source}, character {match.start() + 1}: text after the final ';'")
        if expect_length:
            try:
                length[node] = float(word) if word is not None else float("nan")
            except ValueError:
                length[node] = float("nan")
            if not (length[node] is not None and np.isfinite(length[node])):
                raise InputError(f"{source}, character {match.start() + 1}: expected a branch length after ':'")
            expect_length = False
        elif punct == "(":
            stack.append(node)
            node = _add_node(parent, length, names, stack[-1])
        elif punct == ",":
            if not stack:
                raise InputError(f"{source}, character {match.start() + 1}: ',' outside parentheses")
            node = _add_node(parent, length, names, stack[-1])
        elif punct == ")":
            if not stack:
                raise InputError(f"{source}, character {match.start() + 1}: unbalanced ')'")
            node = stack.pop()
        elif punct == ":":
            expect_length = True
        elif punct == ";":
            done = True
        else:
            names[node] = quoted[1:-1].replace("''", "'") if quoted is not None else word
    if stack or not done:
        raise InputError(f"{source}: incomplete tree (unclosed '(' or missing final ';')")
    missing = [i for i, v in enumerate(length) if v is None]
    if missing:
        who = names[missing[0]] or f"internal node {missing[0]}"
        raise InputError(
            f"{source}: branch above {who!r} has no length; every branch needs one (substitutions per site)"
        )
    return Tree(parent, [float(v) for v in length], names)


def _add_node(parent: list[int], length: list, names: list[str], up: int) -> int:
    parent.append(up)
    length.append(None)
    names.append("")
    return len(parent) - 1


# -- builders ---------------------------------------------------------------------------------
def _check_shape_args(n_leaves: int, height: float) -> None:
    if int(n_leaves) != n_leaves or n_leaves < 2:
        raise ParameterError("n_leaves", f"n_leaves={n_leaves}: give a whole number, 2 or more")
    if not (np.isfinite(height) and height > 0):
        raise ParameterError("height", f"height={height}: must be positive (root-to-leaf substitutions per site)")


def birth_death_tree(
    n_leaves: int, *, birth: float = 1.0, death: float = 0.0, height: float = 1.0, rng: Seed = None
) -> Tree:
    """Reconstructed birth-death tree with ``n_leaves`` leaves, rescaled to root height ``height``."""
    _check_shape_args(n_leaves, height)
    if not (np.isfinite(birth) and birth > 0):
        raise InputError(f"birth (rate) must be positive, got {birth}")
    if not (np.isfinite(death) and 0 <= death <= birth):
        raise InputError(f"death (rate) must satisfy 0 <= death <= birth ({birth}), got {death}")
    rng = np.random.default_rng(rng)
    n = int(n_leaves)
    u = rng.random(n - 1)
    if death == 0:
        ages = -np.log1p(-u) / birth
    elif death == birth:
        ages = u / (birth * (1.0 - u))
    else:
        r = birth - death
        ages = -np.log(birth * (1.0 - u) / (birth - death * u)) / r
    return _coalescent_point_tree(ages * (height / ages.max()))


def yule_tree(n_leaves: int, *, height: float = 1.0, rng: Seed = None) -> Tree:
    """Pure-birth (Yule) tree: :func:`birth_death_tree` with ``death = 0``."""
    return birth_death_tree(n_leaves, death=0.0, height=height, rng=rng)


def _coalescent_point_tree(ages: np.ndarray) -> Tree:
    """Tree whose leaves ``i < j`` meet at ``max(ages[i:j])`` (a max-Cartesian tree over the ages).

    Internal node ``k`` (between leaves ``k`` and ``k + 1``) is node ``k``; leaf ``j`` is ``n - 1 + j``.
    The node order given to :class:`Tree` puts internal nodes first, so preorder need not follow
    the planar order; leaves are named by their preorder rank.
    """
    m = ages.size
    n = m + 1
    left = [-1] * m
    right = [-1] * m
    stack: list[int] = []
    for k in range(m):
        last = -1
        while stack and ages[stack[-1]] < ages[k]:
            last = stack.pop()
        left[k] = last
        if stack:
            right[stack[-1]] = k
        stack.append(k)
    parent = np.full(m + n, -1, dtype=np.int64)
    for k in range(m):
        parent[left[k] if left[k] >= 0 else m + k] = k
        parent[right[k] if right[k] >= 0 else m + k + 1] = k
    node_age = np.concatenate([ages, np.zeros(n)])
    return _with_heights(parent, node_age)


def balanced_tree(n_leaves: int, *, height: float = 1.0) -> Tree:
    """Most balanced binary tree: each node splits its leaves ``ceil(m/2)`` / ``floor(m/2)``."""
    _check_shape_args(n_leaves, height)
    parent: list[int] = [-1]
    size = [int(n_leaves)]
    node = 0
    while node < len(parent):
        m = size[node]
        if m > 1:
            for part in ((m + 1) // 2, m // 2):
                parent.append(node)
                size.append(part)
        node += 1
    return _ultrametric_by_level(np.asarray(parent), height)


def caterpillar_tree(n_leaves: int, *, height: float = 1.0) -> Tree:
    """Ladder tree: internal node ``i`` has leaf ``i`` and internal node ``i + 1`` (the last has two leaves)."""
    _check_shape_args(n_leaves, height)
    n = int(n_leaves)
    spine = np.arange(n - 1)
    # nodes: spine 0..n-2, then leaves; leaf i hangs from spine node min(i, n-2)
    parent = np.concatenate([[-1], spine[:-1], np.minimum(np.arange(n), n - 2)])
    return _ultrametric_by_level(parent, height)


def _ultrametric_by_level(parent: np.ndarray, height: float) -> Tree:
    """Internal nodes at level ``l`` get height ``height (1 - l/(l_max + 1))``, leaves 0; leaves named in preorder."""
    topo = Tree(parent, np.zeros(parent.size))
    level = np.zeros(topo.n_nodes, dtype=np.int64)
    for node in range(1, topo.n_nodes):
        level[node] = level[topo.parent[node]] + 1
    internal = ~topo.is_leaf
    return _with_heights(topo.parent, np.where(internal, height * (1.0 - level / (level[internal].max() + 1)), 0.0))


def _with_heights(parent: np.ndarray, node_height: np.ndarray) -> Tree:
    """Tree with branch lengths from node heights above the leaves; leaves named ``t0, t1, ...`` in preorder."""
    topo = Tree(parent, np.where(parent >= 0, node_height[parent] - node_height, 0.0))
    names = [""] * topo.n_nodes
    for rank, leaf in enumerate(topo.leaves):
        names[leaf] = f"t{rank}"
    return Tree(topo.parent, topo.length, names)


def make_tree(
    shape: str, n_leaves: int, *, height: float = 1.0, birth: float = 1.0, death: float = 0.5, rng: Seed = None
) -> Tree:
    """Build a tree of the named ``shape`` (one of :data:`SHAPES`); ``birth``/``death`` apply to ``birth-death``."""
    if shape == "yule":
        return yule_tree(n_leaves, height=height, rng=rng)
    if shape == "birth-death":
        return birth_death_tree(n_leaves, birth=birth, death=death, height=height, rng=rng)
    if shape == "balanced":
        return balanced_tree(n_leaves, height=height)
    if shape == "caterpillar":
        return caterpillar_tree(n_leaves, height=height)
    raise InputError(f"unknown tree shape {shape!r}; choose one of {', '.join(SHAPES)}")
