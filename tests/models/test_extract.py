"""Tests of biostrata.models.extract: packed layer-wise extraction, windows, HDF5 store, resume, ranks."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from esm.data import Alphabet
from esm.model.esm2 import ESM2

from biostrata.data.clusters.proteins import ProteinRecord
from biostrata.data.embedding_store import EmbeddingStore, merge_stores
from biostrata.errors import InputError, ParameterError
from biostrata.models.extract import check_options, extract_embeddings, plan_batches, window_starts
from biostrata.models.protein_lm import FairESM, ProteinLM

AA = "ACDEFGHIKLMNPQRSTVWY"


def tiny_esm2(max_residues: int | None = 1022, seed: int = 0) -> ProteinLM:
    """A 2-layer ESM-2 with random weights, built in code."""
    torch.manual_seed(seed)
    alphabet = Alphabet.from_architecture("ESM-1b")
    model = ESM2(num_layers=2, embed_dim=16, attention_heads=2, alphabet=alphabet).eval()
    return FairESM(model, alphabet, "tiny", max_residues)


def proteins(n: int, lo: int = 3, hi: int = 60, seed: int = 0) -> list[ProteinRecord]:
    rng = random.Random(seed)
    return [ProteinRecord(f"p{i}", "".join(rng.choice(AA) for _ in range(rng.randint(lo, hi)))) for i in range(n)]


def single(plm: ProteinLM, seq: str) -> dict[int, torch.Tensor]:
    """Plain forward pass of one sequence: every layer, [T, D]."""
    with torch.no_grad():
        reps = plm.embed(plm.tokenize([seq]), range(plm.num_layers + 1))
    return {k: v[0] for k, v in reps.items()}


@pytest.mark.parametrize("budget", [24, 150, 100_000])
def test_packed_extraction_equals_single_forward(tmp_path: Path, budget: int) -> None:
    plm = tiny_esm2()
    recs = proteins(17)
    out = extract_embeddings(
        plm,
        recs,
        tmp_path / "e.h5",
        layers=[0, 1, 2],
        poolings=["mean", "bos", "per_token"],
        token_budget=budget,
        progress=False,
    )
    with EmbeddingStore(out) as store:
        assert store.layers == [0, 1, 2] and store.dim == 16 and len(store) == 17
        for r in recs:
            ref = single(plm, r.sequence)
            n = len(r.sequence)
            assert store.length(r.id) == n
            for k in range(3):
                np.testing.assert_allclose(store.get(r.id, "mean")[k], ref[k][1 : n + 1].mean(0), atol=1e-5)
                np.testing.assert_allclose(store.get(r.id, "bos", layer=k), ref[k][0], atol=1e-5)
                np.testing.assert_allclose(store.per_token(r.id, layer=k), ref[k][1 : n + 1], atol=1e-5)


def test_plan_batches_respects_budget() -> None:
    lengths = [3, 5, 5, 8, 10, 30, 31, 200]
    batches = plan_batches(lengths, token_budget=64, special=2)
    assert [i for b in batches for i in b] == list(range(len(lengths)))
    for b in batches:
        assert (max(lengths[i] for i in b) + 2) * len(b) <= 64 or len(b) == 1
    assert batches[-1] == [7]  # too long for the budget: alone
    with pytest.raises(InputError, match="token_budget"):
        plan_batches(lengths, 2, special=2)


def test_window_starts() -> None:
    assert window_starts(10, 20, 5) == [0]
    assert window_starts(53, 20, 6) == [0, 14, 28, 33]
    assert window_starts(40, 20, 0) == [0, 20]
    with pytest.raises(InputError, match="overlap"):
        window_starts(50, 20, 20)


def test_truncation_and_windows(tmp_path: Path) -> None:
    plm = tiny_esm2(max_residues=20)
    long_seq = proteins(1, 53, 53, seed=3)[0].sequence
    recs = [ProteinRecord("long", long_seq), ProteinRecord("short", long_seq[:12])]
    trunc = extract_embeddings(plm, recs, tmp_path / "t.h5", layers=[-1], token_budget=50, progress=False)
    with EmbeddingStore(trunc) as store:
        assert store.length("long") == 20
        np.testing.assert_allclose(store.get("long", layer=2), single(plm, long_seq[:20])[2][1:21].mean(0), atol=1e-5)
    win = extract_embeddings(
        plm,
        recs,
        tmp_path / "w.h5",
        layers=[1, 2],
        poolings=["mean", "bos", "per_token"],
        long="window",
        overlap=6,
        token_budget=50,
        progress=False,
    )
    # windows [0,20) [14,34) [28,48) [33,53); cuts at the middle of each overlap: 17, 31, 40
    starts, cuts = [0, 14, 28, 33], [0, 17, 31, 40, 53]
    outs = [single(plm, long_seq[s : s + 20]) for s in starts]
    with EmbeddingStore(win) as store:
        assert store.length("long") == 53
        for k, layer in enumerate([1, 2]):
            expected = torch.cat([outs[w][layer][1 + cuts[w] - s : 1 + cuts[w + 1] - s] for w, s in enumerate(starts)])
            np.testing.assert_allclose(store.per_token("long", layer=layer), expected, atol=1e-5)
            np.testing.assert_allclose(store.get("long")[k], expected.mean(0), atol=1e-5)
            bos = torch.stack([o[layer][0] for o in outs]).mean(0)
            np.testing.assert_allclose(store.get("long", "bos")[k], bos, atol=1e-5)
        np.testing.assert_allclose(store.get("short", layer=2), single(plm, long_seq[:12])[2][1:13].mean(0), atol=1e-5)


def test_resume_after_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plm = tiny_esm2()
    recs = proteins(12)
    whole = extract_embeddings(plm, recs, tmp_path / "whole.h5", token_budget=120, progress=False)
    calls = {"n": 0}
    append = EmbeddingStore.append

    def crash_on_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return append(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingStore, "append", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(plm, recs, tmp_path / "part.h5", token_budget=120, progress=False)
    monkeypatch.setattr(EmbeddingStore, "append", append)
    with EmbeddingStore(tmp_path / "part.h5") as partial:
        assert 0 < len(partial) < 12
    resumed = extract_embeddings(plm, recs, tmp_path / "part.h5", token_budget=120, progress=False)
    with EmbeddingStore(whole) as a, EmbeddingStore(resumed) as b:
        assert sorted(a.ids) == sorted(b.ids) == sorted(r.id for r in recs)
        np.testing.assert_allclose(b.array(ids=a.ids), a.array(), atol=1e-6)
    with pytest.raises(InputError, match="cannot be resumed"):
        extract_embeddings(plm, recs, tmp_path / "part.h5", layers=[0], progress=False)


def test_ranks_and_merge(tmp_path: Path) -> None:
    plm = tiny_esm2()
    recs = proteins(9)
    whole = extract_embeddings(plm, recs, tmp_path / "all.h5", layers=[0, -1], progress=False)
    parts = [
        extract_embeddings(plm, recs, tmp_path / "e.h5", layers=[0, -1], rank=r, world_size=2, progress=False)
        for r in (0, 1)
    ]
    assert [p.name for p in parts] == ["e.rank0-of-2.h5", "e.rank1-of-2.h5"]
    with EmbeddingStore(parts[0]) as p0, EmbeddingStore(parts[1]) as p1:
        assert not set(p0.ids) & set(p1.ids) and abs(len(p0) - len(p1)) <= 1
    merged = merge_stores(parts, tmp_path / "merged.h5")
    with EmbeddingStore(whole) as a, EmbeddingStore(merged) as b:
        assert sorted(b.ids) == sorted(a.ids)
        np.testing.assert_allclose(b.array(layer=2, ids=a.ids), a.array(layer=2), atol=1e-6)
    with pytest.raises(InputError, match="rank=2"):
        extract_embeddings(plm, recs, tmp_path / "x.h5", rank=2, world_size=2, progress=False)


def test_output_streams_batch_by_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embeddings go to disk after every batch; nothing accumulates over the whole input."""
    plm = tiny_esm2()
    recs = proteins(300, 2, 12)
    sizes: list[int] = []
    append = EmbeddingStore.append

    def record(self, ids, *args, **kwargs):
        sizes.append(len(ids))
        return append(self, ids, *args, **kwargs)

    monkeypatch.setattr(EmbeddingStore, "append", record)
    extract_embeddings(plm, recs, tmp_path / "s.h5", token_budget=256, progress=False)
    assert sum(sizes) == 300 and max(sizes) <= 256 // 4 and len(sizes) >= 300 * 4 // 256


def test_bad_arguments(tmp_path: Path) -> None:
    plm = tiny_esm2()
    recs = proteins(3)
    with pytest.raises(InputError, match="float16 needs a GPU"), pytest.warns(DeprecationWarning, match="half"):
        extract_embeddings(plm, recs, tmp_path / "a.h5", half=True, device="cpu", progress=False)
    with pytest.raises(InputError, match="layer 3 does not exist"):
        extract_embeddings(plm, recs, tmp_path / "b.h5", layers=[3], progress=False)
    with pytest.raises(InputError, match="unique"):
        extract_embeddings(plm, recs + recs[:1], tmp_path / "c.h5", progress=False)
    with pytest.raises(InputError, match="long='cut'"):
        extract_embeddings(plm, recs, tmp_path / "d.h5", long="cut", progress=False)


_PEAK_RSS = """
import random, resource, sys, torch
from biostrata.data.clusters.proteins import ProteinRecord
from biostrata.models.extract import extract_embeddings
from biostrata.models.protein_lm import small_protein_lm
torch.set_num_threads(1)
n, out = int(sys.argv[1]), sys.argv[2]
rng = random.Random(0)
recs = [ProteinRecord(f"p{i}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(5, 15))))
        for i in range(n)]
plm = small_protein_lm(num_layers=1, embed_dim=128, attention_heads=4)
extract_embeddings(plm, recs, out, layers=[0, 1], poolings=["mean", "bos"], token_budget=8192, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_100k_sequences_stream_to_disk(tmp_path: Path) -> None:
    """Peak memory for 100,000 proteins grows less than their outputs would take: outputs go to disk.

    Held in memory, the 90,000 extra proteins' outputs alone would take 90,000 x 2 poolings x
    2 layers x 128 x 4 bytes = 184 MB; the input records and id index grow by well under 100 MB."""
    import subprocess
    import sys

    peak = {}
    for n in (10_000, 100_000):
        out = tmp_path / f"{n}.h5"
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(n), str(out)], capture_output=True, text=True, check=True
        )
        peak[n] = int(done.stdout.split()[-1]) / 1024  # MB
        with EmbeddingStore(out) as store:
            assert len(store) == n
    assert peak[100_000] - peak[10_000] < 100, peak


def test_token_states_of_a_domain_lm_equal_one_cluster_at_a_time() -> None:
    """Packing by token budget (padding, length order) changes no state at a cluster's own positions."""
    from biostrata.data.clusters.corpus import DomainVocabulary
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.extract import token_states

    vocab = DomainVocabulary([f"PF{i:05d}" for i in range(1, 21)])
    torch.manual_seed(0)
    model = DomainLM(vocab, d_embed=8, d_model=8, n_layers=2, kernel_size=3, r=2).eval()
    rng = np.random.default_rng(0)
    items = [torch.as_tensor(rng.integers(vocab.pad_idx + 5, len(vocab), size=n)) for n in (7, 2, 11, 5, 9)]
    got = dict(token_states(model, items, [0, -1], token_budget=20, device="cpu"))
    assert sorted(got) == list(range(len(items)))
    for i, x in enumerate(items):
        with torch.no_grad():
            alone = model.embed(x[None], [0, -1])
        for layer in (0, 2):
            assert got[i][layer].shape == (len(x), 8) and got[i][layer].dtype == np.float64
            np.testing.assert_allclose(got[i][layer], alone[layer][0].double().numpy(), atol=1e-5)


def test_batches_by_count_and_budget() -> None:
    from biostrata.models.extract import count_batches

    assert count_batches(5, 2) == [[0, 1], [2, 3], [4]] and count_batches(0, 3) == []
    with pytest.raises(InputError, match="batch_size=0"):
        count_batches(5, 0)
    # without specials the budget counts the items' own tokens only
    assert plan_batches([2, 2, 3, 9], 6) == [[0, 1], [2], [3]]
    assert plan_batches([2, 2, 3, 9], 8, special=2) == [[0, 1], [2], [3]]


def test_bad_options_are_refused_before_the_store_is_created(tmp_path: Path) -> None:
    plm, recs, out = tiny_esm2(max_residues=10), proteins(3), tmp_path / "s.h5"
    for kwargs, message in [
        ({"token_budget": 2}, r"^token_budget=2: must be at least 3"),
        ({"long": "window", "overlap": 10}, r"^overlap=10: must be in \[0, 10\)"),
        ({"layers": [2, -1]}, r"^layers=\[2, -1\]: layer 2 is named twice"),
        ({"layers": [5]}, r"^layers=\[5\]: layer 5 does not exist"),
        ({"device": "cpu", "precision": "fp16"}, r"^precision='fp16': float16 needs a GPU"),
        (
            {"precision": "fp64"},
            r"^precision='fp64': choose one of 32-true, bf16-mixed, 16-mixed, 32, bf16, 16, fp32, fp16$",
        ),
        ({"device": "gpu"}, r"^device='gpu': not a torch device"),
        ({"poolings": ["mean", "mean"]}, r"^poolings=\['mean', 'mean'\]: .* each once"),
    ]:
        with pytest.raises(ParameterError, match=message) as err:
            extract_embeddings(plm, recs, out, progress=False, **kwargs)
        assert message.startswith(f"^{err.value.param}="), (err.value.param, message)
        assert not out.exists(), kwargs
    assert check_options(3, "truncate", overlap=50, max_residues=10, device="cpu") == (torch.device("cpu"), "fp32", 3)
    assert check_options(None, device="cpu")[2] == 1024  # the CPU's default token budget
    if not torch.backends.mps.is_available():  # a device torch names but does not see here, as for cuda
        with pytest.raises(ParameterError, match=r"^device='mps': no MPS device is available here; use cpu"):
            check_options(None, device="mps")


def test_cluster_embeddings_of_a_domain_lm(tmp_path: Path) -> None:
    """Per-cluster means and per-domain states equal a forward pass of each cluster alone; a rerun
    resumes; unknown families are counted; layers of two widths are refused."""
    from biostrata.data.clusters.corpus import Cluster, DomainVocabulary
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.extract import extract_cluster_embeddings

    vocab = DomainVocabulary([f"PF{i:05d}" for i in range(1, 11)])
    torch.manual_seed(0)
    model = DomainLM(vocab, d_embed=8, d_model=8, n_layers=2, kernel_size=3, r=2).eval()
    clusters = [Cluster("c1", ("PF00001", "PF00002", "PF00099")), Cluster("c2", ("PF00003",) * 5),
                Cluster("c3", ("PF00004", "PF00005"))]  # fmt: skip
    done = extract_cluster_embeddings(model, clusters, tmp_path / "c.h5", layers=[1, -1],
                                      poolings=["mean", "per_token"], token_budget=8, progress=False)  # fmt: skip
    assert (done["embedded"], done["domains"], done["unknown_domains"], done["unknown_families"]) == (3, 10, 1, 1)
    with EmbeddingStore(tmp_path / "c.h5") as store:
        assert sorted(store.ids) == ["c1", "c2", "c3"] and store.layers == [1, 2]
        for c in clusters:
            with torch.no_grad():
                alone = model.embed(vocab.encode(c)[None], [1, 2])
            np.testing.assert_allclose(store.per_token(c.id, layer=2), alone[2][0].numpy(), atol=1e-5)
            np.testing.assert_allclose(store.get(c.id, layer=1), alone[1][0].mean(0).numpy(), atol=1e-5)
    again = extract_cluster_embeddings(model, clusters, tmp_path / "c.h5", layers=[1, -1],
                                       poolings=["mean", "per_token"], progress=False)  # fmt: skip
    assert again["embedded"] == 0
    wide = DomainLM(vocab, d_embed=12, d_model=8, n_layers=2, kernel_size=3, r=2)
    with pytest.raises(InputError, match="layer 0 .* differ in width"):
        extract_cluster_embeddings(wide, clusters, tmp_path / "w.h5", layers=[0, 1], progress=False)
    with pytest.raises(InputError, match="no BOS token"):
        extract_cluster_embeddings(model, clusters, tmp_path / "b.h5", poolings=["bos"], progress=False)


def test_cluster_embeddings_budget_and_stored_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token budget defaults to the device's (as for proteins), a bad one is refused by name, and
    ``dtype`` is the store's."""
    import biostrata.models.extract as extract
    from biostrata.data.clusters.corpus import Cluster, DomainVocabulary
    from biostrata.models.domain_lm import DomainLM

    vocab = DomainVocabulary([f"PF{i:05d}" for i in range(1, 11)])
    model = DomainLM(vocab, d_embed=8, d_model=8, n_layers=2, kernel_size=3, r=2).eval()
    clusters = [Cluster(f"c{i}", ("PF00001", "PF00002", "PF00003")[: i + 1]) for i in range(3)]
    budgets = []

    def spy(lengths, token_budget, special=0):
        budgets.append(token_budget)
        return plan_batches(lengths, token_budget, special)

    monkeypatch.setattr(extract, "plan_batches", spy)
    extract.extract_cluster_embeddings(model, clusters, tmp_path / "a.h5", device="cpu", progress=False)
    extract.extract_cluster_embeddings(model, clusters, tmp_path / "b.h5", token_budget=3, dtype="float16",
                                       progress=False)  # fmt: skip
    assert budgets == [extract.DEFAULT_TOKEN_BUDGET["cpu"], 3]
    with EmbeddingStore(tmp_path / "a.h5") as a, EmbeddingStore(tmp_path / "b.h5") as b:
        assert a.array().dtype == np.float32 and b.array().dtype == np.float16
        np.testing.assert_allclose(b.array(ids=a.ids), a.array(), atol=2e-3, rtol=2e-3)
    with pytest.raises(InputError, match=r"token_budget=0: must be at least 1"):
        extract.extract_cluster_embeddings(model, clusters, tmp_path / "c.h5", token_budget=0, progress=False)
    assert not (tmp_path / "c.h5").exists()


def test_the_embed_benchmark_defaults_to_the_library_token_budget() -> None:
    import importlib.util

    from biostrata.models.extract import DEFAULT_TOKEN_BUDGET

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "embed.py"
    spec = importlib.util.spec_from_file_location("benchmark_embed", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    assert bench.arguments([]).token_budget == DEFAULT_TOKEN_BUDGET["cpu"]
    assert bench.arguments(["--token-budget", "512"]).token_budget == 512


def test_the_bar_says_embed_and_names_the_rank_only_under_several_processes(tmp_path: Path, capfd) -> None:
    """#23: the bar read 'embed r0' in one process, which means nothing there."""
    plm, recs = tiny_esm2(), proteins(5)
    extract_embeddings(plm, recs, tmp_path / "one.h5", token_budget=120, progress=True)
    err = capfd.readouterr().err
    assert "embed:" in err and " r0" not in err and "rank" not in err
    extract_embeddings(plm, recs, tmp_path / "two.h5", token_budget=120, progress=True, rank=1, world_size=2)
    assert "embed (rank 1 of 2)" in capfd.readouterr().err
