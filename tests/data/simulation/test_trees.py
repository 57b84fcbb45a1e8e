import numpy as np
import pytest
from scipy.stats import chisquare

from biostrata.data.simulation.trees import (
    SHAPES,
    Tree,
    balanced_tree,
    birth_death_tree,
    caterpillar_tree,
    make_tree,
    parse_newick,
    yule_tree,
)
from biostrata.errors import InputError
from biostrata.geometry.delta import delta_exact


def exact_delta(d: np.ndarray) -> float:
    return delta_exact(d).delta


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_are_binary_ultrametric_with_named_leaves(shape):
    tree = make_tree(shape, 37, height=0.7, rng=3)
    assert tree.n_leaves == 37
    assert tree.n_nodes == 2 * 37 - 1
    assert all(len(c) == 2 for c, leaf in zip(tree.children, tree.is_leaf) if not leaf)
    np.testing.assert_allclose(tree.depth[tree.leaves], 0.7, rtol=1e-12)
    assert tree.leaf_names == [f"t{i}" for i in range(37)]
    assert np.all(tree.parent[1:] < np.arange(1, tree.n_nodes))  # preorder: parents first


def test_yule_root_split_is_uniform():
    # Yule: the root splits n leaves into (a, n - a) with a uniform on 1..n-1; for n = 9, min(a, n - a) is uniform on 1..4
    rng = np.random.default_rng(0)
    smaller = []
    for _ in range(800):
        tree = yule_tree(9, rng=rng)
        spans = tree.leaf_span[tree.children[0]]
        smaller.append(min(spans[:, 1] - spans[:, 0]))
    counts = np.bincount(smaller, minlength=5)[1:]
    assert chisquare(counts).pvalue > 0.001


def test_death_rate_pulls_nodes_towards_the_present():
    def mean_relative_node_height(death: float) -> float:
        vals = []
        for seed in range(5):
            tree = birth_death_tree(200, death=death, height=1.0, rng=seed)
            internal = ~tree.is_leaf
            vals.append(np.mean(1.0 - tree.depth[internal]))
        return float(np.mean(vals))

    assert mean_relative_node_height(0.95) < 0.8 * mean_relative_node_height(0.0)
    assert np.all(np.isfinite(birth_death_tree(50, birth=2.0, death=2.0, rng=1).length))


def test_yule_is_birth_death_without_death_and_is_reproducible():
    assert yule_tree(40, rng=5).newick() == birth_death_tree(40, death=0.0, rng=5).newick()
    assert yule_tree(40, rng=5).newick() != yule_tree(40, rng=6).newick()


def test_balanced_and_caterpillar_topologies():
    assert balanced_tree(5, height=3.0).newick() == "(((t0:1.0,t1:1.0):1.0,t2:2.0):1.0,(t3:2.0,t4:2.0):1.0);"
    assert caterpillar_tree(4, height=3.0).newick() == "(((t0:1.0,t1:1.0):1.0,t2:2.0):1.0,t3:3.0);"
    cat = caterpillar_tree(30)
    assert all(any(cat.is_leaf[c] for c in kids) for kids in cat.children if kids)
    bal = balanced_tree(64)
    assert sorted(np.diff(bal.leaf_span[bal.children[0]], axis=1).ravel()) == [32, 32]


def test_newick_round_trip_is_exact():
    tree = yule_tree(60, height=0.3, rng=2)
    back = parse_newick(tree.newick())
    np.testing.assert_array_equal(back.parent, tree.parent)
    np.testing.assert_array_equal(back.length, tree.length)
    assert back.names == tree.names
    assert back.newick() == tree.newick()


def test_parse_newick_quotes_comments_multifurcations():
    tree = parse_newick("[a comment] ((A:1,'b c':2,'it''s':0.5)x:1e-1,D:3)root;")
    assert tree.leaf_names == ["A", "b c", "it's", "D"]
    assert tree.names[0] == "root"
    assert [len(c) for c in tree.children if c] == [2, 3]
    np.testing.assert_allclose(tree.depth[tree.leaves], [1.1, 2.1, 0.6, 3.0])
    assert parse_newick(tree.newick()).leaf_names == tree.leaf_names


@pytest.mark.parametrize(
    "text, message",
    [
        ("((A:1,B):1,C:1);", "'B' has no length"),
        ("((A:1,B:1):1,C:1;", "incomplete"),
        ("(A:1,B:1));", "unbalanced"),
        ("(A:1,B:1);x", "after the final"),
        ("(A:1,B:x);", "expected a branch length"),
        ("(A:-1,B:1);", "must be finite and >= 0"),
    ],
)
def test_parse_newick_errors_say_where(text, message):
    with pytest.raises(InputError, match=message):
        parse_newick(text)


def test_patristic_distances_known_tree():
    tree = parse_newick("((A:1,B:2):3,(C:4,D:5):6);")
    expected = np.array([[0, 3, 14, 15], [3, 0, 15, 16], [14, 15, 0, 9], [15, 16, 9, 0]], dtype=float)
    np.testing.assert_allclose(tree.patristic_distances(), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_patristic_distances_of_trees_have_delta_zero(shape):
    tree = make_tree(shape, 12, rng=4)
    d = tree.patristic_distances()
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_allclose(np.diag(d), 0.0)
    assert exact_delta(d) == pytest.approx(0.0, abs=1e-9)
    # non-ultrametric tree with random lengths too
    lengths = np.random.default_rng(0).uniform(0.1, 2.0, tree.n_nodes)
    assert exact_delta(Tree(tree.parent, lengths).patristic_distances()) == pytest.approx(0.0, abs=1e-9)


def test_four_point_delta_detects_non_tree_metrics():
    points = np.random.default_rng(0).normal(size=(12, 2))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    assert exact_delta(d) > 0.05


def test_clade_roots_cut_the_first_splits():
    bal = balanced_tree(16)
    for k in (1, 2, 3, 4, 8, 16):
        roots = bal.clade_roots(k)
        labels = bal.leaf_clades(roots)
        assert len(roots) == k and set(labels) == set(range(k))
        assert np.all(np.diff(labels) >= 0)  # clades are contiguous blocks in leaf order
    assert np.bincount(bal.leaf_clades(bal.clade_roots(3))).tolist() == [4, 4, 8]
    cat = caterpillar_tree(10)
    assert sorted(np.bincount(cat.leaf_clades(cat.clade_roots(2)))) == [1, 9]
    # on an ultrametric tree, the k clades are those separated above the (k-1)-th deepest node
    tree = yule_tree(50, rng=1)
    internal = np.flatnonzero(~tree.is_leaf)
    roots = tree.clade_roots(5)
    cutoff = np.sort(tree.depth[internal])[3]
    assert all(tree.depth[tree.parent[r]] <= cutoff for r in roots)
    assert all(tree.depth[r] > cutoff for r in roots if not tree.is_leaf[r])


def test_clade_errors_name_the_problem():
    with pytest.raises(InputError, match="cannot be cut into 11 clades"):
        balanced_tree(10).clade_roots(11)
    with pytest.raises(InputError, match="no cut gives exactly 2 clades"):
        parse_newick("(A:1,B:1,C:1);").clade_roots(2)
    tree = balanced_tree(4)
    with pytest.raises(InputError, match="overlap"):
        tree.leaf_clades([0, tree.children[0][0]])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_leaves=1), "n_leaves"),
        (dict(n_leaves=10, height=-1.0), "height"),
        (dict(n_leaves=10, birth=-1.0), "birth"),
        (dict(n_leaves=10, death=-0.1), "death"),
        (dict(n_leaves=10, death=2.0), "death"),
    ],
)
def test_invalid_tree_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(InputError, match=name):
        birth_death_tree(**kwargs)


def test_unknown_shape_and_scaling():
    with pytest.raises(InputError, match="unknown tree shape 'star'"):
        make_tree("star", 5)
    tree = yule_tree(20, rng=0)
    np.testing.assert_allclose(tree.scaled(2.5).length, 2.5 * tree.length)
    with pytest.raises(InputError, match="scale factor"):
        tree.scaled(-1)
