import numpy as np
import pytest
from scipy.linalg import expm

from biostrata.data.simulation.evolution import (
    GTR,
    HKY85,
    JC69,
    K80,
    encode_bases,
    evolve,
    gamma_rates,
    make_model,
)
from biostrata.data.simulation.trees import Tree, balanced_tree, parse_newick, yule_tree
from biostrata.errors import InputError

MODELS = [JC69(), K80(3.0), HKY85(4.0, (0.1, 0.2, 0.3, 0.4)), GTR([1, 2, 0.5, 0.7, 3, 1], (0.4, 0.1, 0.2, 0.3))]


def cherry(distance: float) -> Tree:
    """Two leaves at patristic distance ``distance``."""
    return parse_newick(f"(a:{distance / 2},b:{distance / 2});")


def p_distance(x: str, y: str) -> float:
    return float(np.mean(encode_bases(x) != encode_bases(y)))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_rate_matrix_is_reversible_and_scaled(model):
    q, pi = model.Q, model.freqs
    np.testing.assert_allclose(q.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(pi[:, None] * q, (pi[:, None] * q).T, atol=1e-12)  # detailed balance
    assert -np.dot(pi, np.diag(q)) == pytest.approx(1.0)  # one substitution per unit length
    np.testing.assert_allclose(pi @ q, 0.0, atol=1e-12)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_transition_probabilities_match_expm(model):
    for t in (0.0, 0.01, 0.3, 2.0, 20.0):
        np.testing.assert_allclose(model.P(t), expm(model.Q * t), atol=1e-10)
    p = model.P(np.array([[0.1, 1.0], [5.0, 50.0]]))
    assert p.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p[1, 1], np.tile(model.freqs, (4, 1)), atol=1e-9)  # converges to pi


def test_jc69_and_k80_closed_forms():
    t = 0.37
    p = JC69().P(t)
    np.testing.assert_allclose(np.diag(p), 0.25 + 0.75 * np.exp(-4 * t / 3))
    kappa = 3.0
    p = K80(kappa).P(t)
    # K80 at unit total rate: transition rate a = kappa/(kappa+2), each of the two transversions b = 1/(kappa+2)
    a, b = kappa / (kappa + 2), 1 / (kappa + 2)
    transversion = 0.25 - 0.25 * np.exp(-4 * b * t)
    transition = 0.25 + 0.25 * np.exp(-4 * b * t) - 0.5 * np.exp(-2 * (a + b) * t)
    assert p[0, 1] == pytest.approx(transversion)  # A -> C
    assert p[0, 2] == pytest.approx(transition)  # A -> G
    assert p[1, 3] == pytest.approx(transition)  # C -> T


@pytest.mark.parametrize("d", [0.05, 0.3, 1.0])
def test_jc69_proportion_of_differing_sites(d):
    n = 20000
    a, b = evolve(cherry(d), JC69(), n, rng=11)
    expected = 0.75 * (1 - np.exp(-4 * d / 3))
    se = np.sqrt(expected * (1 - expected) / n)
    assert abs(p_distance(a, b) - expected) < 4 * se


def test_gamma_rates_known_values():
    # Yang (1994), alpha = 0.5, four categories (mean of each)
    np.testing.assert_allclose(gamma_rates(0.5, 4), [0.0334, 0.2519, 0.8203, 2.8944], atol=1e-4)
    for alpha in (0.2, 1.0, 7.0):
        rates = gamma_rates(alpha, 6)
        assert rates.mean() == pytest.approx(1.0)
        assert np.all(np.diff(rates) > 0)
    np.testing.assert_allclose(gamma_rates(1e4, 4), 1.0, atol=0.05)
    np.testing.assert_allclose(gamma_rates(0.5, 1), [1.0])


def test_gamma_heterogeneity_gives_the_discrete_gamma_p_distance():
    d, alpha, n = 1.0, 0.5, 20000
    a, b = evolve(cherry(d), JC69(), n, gamma=alpha, categories=4, rng=3)
    expected = 0.75 * (1 - np.mean(np.exp(-4 * d * gamma_rates(alpha, 4) / 3)))
    se = np.sqrt(expected * (1 - expected) / n)
    assert abs(p_distance(a, b) - expected) < 4 * se
    assert expected < 0.75 * (1 - np.exp(-4 * d / 3)) - 10 * se  # clearly below the equal-rates value


def test_hky85_keeps_its_stationary_frequencies():
    freqs = np.array([0.1, 0.2, 0.3, 0.4])
    model = HKY85(2.5, freqs)
    n = 20000
    # from a stationary root, every leaf stays stationary
    leaves = evolve(balanced_tree(4, height=0.5), model, n, rng=1)
    for seq in leaves:
        comp = np.bincount(encode_bases(seq), minlength=4) / n
        np.testing.assert_allclose(comp, freqs, atol=4 * np.sqrt(0.25 / n))
    # from an all-A root, a long branch relaxes to the stationary frequencies; a short one does not
    far, near = evolve(parse_newick("(x:8,y:0.05);"), model, root="A" * n, rng=2)
    np.testing.assert_allclose(np.bincount(encode_bases(far), minlength=4) / n, freqs, atol=4 * np.sqrt(0.25 / n))
    assert np.mean(encode_bases(near) == 0) > 0.9


def test_evolve_is_reproducible_and_fixed_by_root():
    tree = yule_tree(30, rng=0)
    model = HKY85()
    assert evolve(tree, model, 100, rng=4) == evolve(tree, model, 100, rng=4)
    assert evolve(tree, model, 100, rng=4) != evolve(tree, model, 100, rng=5)
    root = "ACGTTGCA" * 5
    still = parse_newick("((a:0,b:0):0,c:0);")
    assert evolve(still, model, root=root, rng=0) == [root] * 3


def test_indels_change_lengths_and_keep_bases_valid():
    tree = yule_tree(50, height=1.0, rng=0)
    plain = evolve(tree, JC69(), 300, rng=1)
    assert {len(s) for s in plain} == {300}
    seqs = evolve(tree, JC69(), 300, indel_rate=0.05, indel_length=3, rng=1)
    lengths = np.array([len(s) for s in seqs])
    assert lengths.std() > 0
    assert abs(lengths.mean() - 300) < 60  # insertions and deletions balance on average
    assert all(set(s) <= set("ACGT") for s in seqs)


def test_planted_motif_is_inherited_and_conserved():
    tree = balanced_tree(16, height=3.0)  # saturating: anything not conserved is scrambled
    node = tree.children[0][0]  # a clade of 4 leaves
    motif = "GATTACAGATTACA"
    seqs = evolve(tree, HKY85(), 120, motifs={node: motif}, indel_rate=0.05, rng=7)
    lo, hi = tree.leaf_span[node]
    assert all(motif in s for s in seqs[lo:hi])
    assert not any(motif in s for i, s in enumerate(seqs) if not lo <= i < hi)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: K80(-2.0), "kappa"),
        (lambda: HKY85(2.0, (0.5, 0.5, 0.5, 0.5)), r"^freqs=\[0.5, 0.5, 0.5, 0.5\]: must sum to 1"),
        (lambda: HKY85(2.0, (0.5, -0.1, 0.3, 0.3)), "freqs"),
        (lambda: gamma_rates(-1.0), "gamma"),
        (lambda: gamma_rates(0.5, 0), "categories"),
        (lambda: make_model("jc69", freqs=(0.25,) * 4), "freqs applies to hky85"),
        (lambda: make_model("jc69", kappa=2.0), "kappa applies"),
        (lambda: make_model("f81"), "unknown substitution model"),
        (lambda: GTR([1, 1, 1, 1, 1, -1], (0.25,) * 4), "exchangeabilities"),
        (lambda: evolve(cherry(0.1), JC69(), 10, indel_rate=-0.1), "indel_rate"),
        (lambda: evolve(cherry(0.1), JC69(), 10, indel_rate=0.1, indel_length=0.5), "indel_length"),
        (lambda: evolve(cherry(0.1), JC69(), 0), "length"),
        (lambda: evolve(cherry(0.1), JC69(), root="ACGX"), "root: invalid base 'X' at position 4"),
        (lambda: evolve(cherry(0.1), JC69(), 5, root="ACGT"), "length=5: differs"),
        (lambda: evolve(cherry(0.1), JC69(), 4, motifs={1: "ACGTA"}), "does not fit"),
        (lambda: evolve(cherry(0.1), JC69(), 4, motifs={9: "A"}), "motif node 9"),
    ],
)
def test_invalid_parameters_name_the_parameter(call, name):
    with pytest.raises(InputError, match=name):
        call()


def test_make_model_defaults():
    assert make_model("JC69").params() == {"model": "jc69"}
    assert make_model("k80", kappa=3.0).kappa == 3.0
    hky = make_model("hky85", freqs=(0.4, 0.1, 0.1, 0.4))
    np.testing.assert_allclose(hky.freqs, [0.4, 0.1, 0.1, 0.4])
    assert hky.kappa == 2.0
