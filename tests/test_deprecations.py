"""Names moved in this release keep working for one release, with a DeprecationWarning."""

import pytest
import torch

_EXTRACT = "biostrata.models.extract"


@pytest.mark.parametrize(
    "old_module, name, new_module, new_name",
    [
        ("biostrata.report.tables", "write_report", "biostrata.report.summary", None),
        ("biostrata.analysis.probes", "read_labels", "biostrata.analysis.probe_files", None),
        ("biostrata.analysis.probes", "probe_files", "biostrata.analysis.probe_files", None),
        ("biostrata.analysis.cka", "plot_cka_heatmap", "biostrata.report.plots", None),
        ("biostrata.data.clusters", "PfamFamily", "biostrata.data.clusters.pfam", None),
        ("biostrata.analysis.hyperbolicity", "load_array", "biostrata.analysis.representations", None),
        *[("biostrata.models.protein_lm", n, _EXTRACT, None)
          for n in ("extract_embeddings", "plan_batches", "window_starts", "embed_batch", "shard_path")],
        ("biostrata.studies.cross_granularity", "read_segments", "biostrata.data.clusters.proteins", "read_domain_segments"),
        ("biostrata.studies.cross_granularity", "PAPER", "biostrata.report.published", "CROSS_GRANULARITY"),
        ("biostrata.train.run", "load_model", "biostrata.train.run", "load_run"),
        ("biostrata.data.genome", "is_gzip", "biostrata.data.files", None),
        ("biostrata.data.genome", "open_bytes", "biostrata.data.files", None),
        # data/ split by subject (#25): the module paths the docs and the changelog gave
        ("biostrata.data.genome", "read_gue_dir", "biostrata.data.dna.genome", None),
        ("biostrata.data.alphabet", "encode_batch", "biostrata.data.dna.alphabet", None),
        ("biostrata.data.clusters", "ClusterCorpus", "biostrata.data.clusters.corpus", None),
        ("biostrata.data.clusters", "PfamTable", "biostrata.data.clusters.pfam", None),
        ("biostrata.data.pfam", "PfamFamily", "biostrata.data.clusters.pfam", None),
        ("biostrata.data.proteins", "read_domain_segments", "biostrata.data.clusters.proteins", None),
    ],
)  # fmt: skip
def test_moved_names_warn_and_resolve_to_the_new_ones(old_module, name, new_module, new_name):
    import importlib

    old, new = importlib.import_module(old_module), importlib.import_module(new_module)
    with pytest.warns(DeprecationWarning, match=f"moved to {new_module}.{new_name or name}"):
        assert getattr(old, name) is getattr(new, new_name or name)
    with pytest.raises(AttributeError):
        _ = old.no_such_name


def test_clip_radius_function_warns_and_equals_the_manifold_method():
    from biostrata.geometry.lorentz import Lorentz

    m = Lorentz(0.5)
    s = torch.randn(3, 4, 5) * 10
    with pytest.warns(DeprecationWarning, match="manifold.clip_radius"):
        from biostrata.nn.lorentz import clip_radius
    assert torch.allclose(clip_radius(s, m.kk, 1.5), m.clip_radius(s, 1.5))


def test_hyperbolic_cnn_curvature_keyword_is_now_curvature_mode():
    from biostrata.models import HyperbolicCNN

    torch.manual_seed(0)
    new = HyperbolicCNN(20, 2, curvature_mode="per_block", channels=4, hidden=8)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match=r"HyperbolicCNN\(curvature_mode=...\)"):
        old = HyperbolicCNN(20, 2, curvature="per_block", channels=4, hidden=8)
    assert old.curvature_mode == "per_block" and old.architecture == new.architecture
    assert old.architecture["name"] == "hcnn-m" and "curvature" not in old.architecture
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True))


def test_protein_lm_forward_layers_is_embed():
    from biostrata.models.protein_lm import small_protein_lm

    plm = small_protein_lm(2, 16, 2)
    tokens = plm.tokenize(["MKV", "A"])
    with pytest.warns(DeprecationWarning, match="forward_layers is now ProteinLM.embed"):
        old = plm.forward_layers(tokens, [0, -1])
    new = plm.embed(tokens, [0, -1])
    assert list(old) == list(new) == [0, 2] and all(torch.equal(old[k], new[k]) for k in new)


def test_the_old_protein_lm_constructor_makes_a_fair_esm_model():
    from esm.data import Alphabet
    from esm.model.esm2 import ESM2

    from biostrata.models.protein_lm import FairESM, ProteinLM

    alphabet = Alphabet.from_architecture("ESM-1b")
    with pytest.warns(DeprecationWarning, match=r"FairESM\(model, alphabet\)"):
        plm = ProteinLM(ESM2(num_layers=1, embed_dim=16, attention_heads=2, alphabet=alphabet), alphabet, "x", 50)
    assert type(plm) is FairESM and plm.name == "x" and plm.max_residues == 50 and plm.num_layers == 1


def test_the_protein_lm_interface_loads_no_backend():
    """The deprecated constructor lives with FairESM (protein_lm registers it as ``ProteinLM._legacy``):
    the interface module loads no module by name, every backend is a ProteinLM, and making one warns not."""
    import ast
    import inspect
    import warnings

    import biostrata.models.protein_interface as interface
    from biostrata.models.esm_hf import from_fair_esm
    from biostrata.models.protein_lm import FairESM, ProteinLM, small_protein_lm

    tree = ast.parse(inspect.getsource(interface))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    called = {getattr(n.func, "attr", getattr(n.func, "id", "")) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "importlib" not in imported and not {"import_module", "__import__"} & called
    assert ProteinLM is interface.ProteinLM and ProteinLM._legacy is FairESM
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fair = small_protein_lm(1, 16, 2)
        assert isinstance(fair, ProteinLM) and isinstance(from_fair_esm(fair), ProteinLM)
