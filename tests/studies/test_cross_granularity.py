"""The cross-granularity study end to end on a tiny synthetic corpus in the real files' layouts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from biostrata.analysis.layers import read_representations
from biostrata.studies.cross_granularity import CrossGranularitySettings, run_cross_granularity

AA = "ACDEFGHIKLMNPQRSTVWY"
FAMILIES = [f"PF{i:05d}" for i in range(1, 13)]
MOTIFS = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
CLASSES = ["NRP", "Polyketide", "Terpene"]
HEADER = "bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tframe\tdna_sequence\tprotein_sequence"


def write_inputs(root: Path, n: int = 45) -> dict[str, str]:
    """Pfam clans (3 clans of 4 families), a domain list of ``n`` BGCs built from one motif each (the
    motif sets the product class; every 5th BGC also carries a second class), its class table, and a
    domain table with a protein segment for most domains (family-specific sequences with mutations)."""
    rng = random.Random(0)
    (root / "clans.tsv").write_text(
        "".join(
            f"{acc}\tCL000{k // 4 + 1}\tclan{k // 4 + 1}\tDom{k + 1}\tfamily {k + 1}\n"
            for k, acc in enumerate(FAMILIES)
        )
    )
    base = {acc: "".join(rng.choice(AA) for _ in range(24)) for acc in FAMILIES}
    lines, classes, rows = [], ["sequence_id," + ",".join(CLASSES)], [HEADER]
    for i in range(n):
        k = i % 3
        domains = [d for _ in range(rng.randint(1, 3)) for d in MOTIFS[k]]
        lines.append(f"BGC{i:04d} {CLASSES[k]} " + " [SEP] ".join(f"Dom{d}" for d in domains))
        hot = [int(c == k or (i % 5 == 0 and c == (k + 1) % 3)) for c in range(3)]
        classes.append(f"BGC{i:04d}," + ",".join(map(str, hot)))
        for j, d in enumerate(domains):
            if rng.random() < 0.8:
                seq = "".join(c if rng.random() > 0.2 else rng.choice(AA) for c in base[FAMILIES[d - 1]])
                rows.append(f"BGC{i:04d}\t{FAMILIES[d - 1]}.3\tg{j}\tX{i}_{j}.1\t{3 * j}\t{3 * j + 72}\t0\tACG\t{seq}")
    # the same segment twice in one BGC (a repeated protein): embedded once, used at both places
    first = rows[1].split("\t")
    rows.append("\t".join([first[0], first[1], "g99", "X99.1", "0", "72", *first[6:]]))
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.csv").write_text("\n".join(classes) + "\n")
    (root / "domains.tsv").write_text("\n".join(rows) + "\n")
    return {"corpus": str(root / "list.txt"), "pfam": str(root / "clans.tsv"), "classes": str(root / "classes.csv"),
            "domains": str(root / "domains.tsv")}  # fmt: skip


def tiny_settings(files: dict[str, str]) -> CrossGranularitySettings:
    return CrossGranularitySettings(
        **files, protein_layers=1, protein_dim=8, protein_heads=2, protein_epochs=1, protein_max_length=64,
        domain_sizes={"d_model": 8, "n_layers": 2, "r": 2}, domain_epochs=2, batch_size=16, lr=1e-2,
        cka_tokens=150, checkpoint_clusters=30, knn=3, delta_samples=20, delta_repeats=1, folds=3, seeds=[0],
        mlp_hidden=[8], n_boot=10, clan_min_families=3, clan_tokens_per_family=2, clan_Cs=[1.0], progress=False,
    )  # fmt: skip


def test_study_end_to_end_and_resume(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    out = tmp_path / "study"
    tables = run_cross_granularity(out, tiny_settings(files))

    ck = tables["checkpoints"]
    assert sorted(ck["epoch"].unique()) == [0, 1, 2] and set(ck["arm"]) == {"random", "finetune", "frozen"}
    at = ck.set_index(["arm", "epoch"])
    # frozen rows never move; the initialized tables start as the family vectors themselves
    assert (ck[ck["arm"] == "frozen"]["table_vs_init"] > 1 - 1e-9).all()
    assert at.loc[("finetune", 0), "table_vs_protein"] == pytest.approx(1.0)
    assert at.loc[("finetune", 2), "table_vs_init"] < 1.0
    assert at.loc[("random", 0), "table_vs_protein"] < 0.9

    layer = tables["layer_cka_finetune"]
    assert list(layer.index) == ["L0", "L1", "L2"]
    assert (abs(pd.Series(layer.to_numpy().diagonal()) - 1) < 1e-9).all()

    product = tables["product_class"]
    assert len(product) == 1 + 3 * (3 + 2)  # protein; per arm 3 layers, concatenation, learned fusion
    assert set(product["kind"]) == {"protein", "domain", "concat", "projection"}
    assert product["auroc_macro"].between(0, 1).all()
    assert (product["auroc_macro_lo"] <= product["auroc_macro_hi"]).all()
    clan = tables["clan"]
    assert set(clan["features"]) >= {"protein", "domain/random/L0", "domain/frozen/L2"}
    assert (clan["clans"] == 3).all()

    # per-BGC features in the format the cka and probe commands read
    reps = read_representations(out / "features" / "finetune.npz")
    assert list(reps.layers) == ["L0", "L1", "L2"] and len(reps.ids) == 45
    assert read_representations(out / "features" / "protein.npz").layers["protein"].shape[1] == 8

    for name in (
        "cross_granularity.md",
        "cka_checkpoints.png",
        "cka_layers.png",
        "probes.png",
        "product_class.csv",
        "clan.csv",
        "settings.json",
        "layer_cka_random.csv",
    ):
        assert (out / name).is_file(), name
    text = (out / "cross_granularity.md").read_text()
    assert "| CKA(table, its initialization), end, fine-tuned | 0.954 |" in text

    # a rerun reuses every step's outputs
    probe_file = out / "probes" / "product_class" / "protein.json"
    stamp = probe_file.stat().st_mtime_ns
    again = run_cross_granularity(out, tiny_settings(files))
    assert probe_file.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again["product_class"], product)
    assert json.loads(probe_file.read_text())["features"] == "protein"


def test_missing_input_is_named_before_any_work(tmp_path: Path) -> None:
    from biostrata.errors import DataNotFoundError, InputError

    files = write_inputs(tmp_path)
    settings = tiny_settings({**files, "domains": str(tmp_path / "nothere.tsv")})
    with pytest.raises(
        DataNotFoundError, match=r"^domains: .*nothere\.tsv: no such file; give the path of a file$"
    ) as err:
        run_cross_granularity(tmp_path / "out", settings)
    assert err.value.param == "domains"  # the command names its option (--domains)
    assert not (tmp_path / "out").exists()
    for change in [{"folds": 1}, {"arms": []}, {"arms": ["random", "other"]}, {"seeds": [0, 0]}, {"lr": 0.0}]:
        with pytest.raises(InputError, match="is invalid"):
            settings.replace(**change)


def test_a_published_protein_lm_replaces_the_one_trained_here(tmp_path: Path) -> None:
    """--protein-model: a transformers directory (or name) is loaded, nothing is pre-trained."""
    pytest.importorskip("transformers")
    from biostrata.models.esm_hf import TransformersESM, from_fair_esm
    from biostrata.models.protein_lm import small_protein_lm
    from biostrata.studies.cross_granularity.steps import protein_model

    directory = from_fair_esm(small_protein_lm(2, 16, 2)).save_pretrained(tmp_path / "esm2_tiny")
    settings = tiny_settings(write_inputs(tmp_path)).replace(protein_model=str(directory))
    plm = protein_model(tmp_path / "study", settings, data=None)
    assert isinstance(plm, TransformersESM) and plm.num_layers == 2 and not (tmp_path / "study" / "protein").exists()


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    """The cached steps were made with the saved settings: a rerun with others would mix them."""
    from biostrata.errors import InputError

    out = tmp_path / "study"
    out.mkdir()
    settings = tiny_settings(write_inputs(tmp_path))
    (out / "settings.json").write_text(json.dumps(settings.replace(domain_epochs=7, progress=True).__dict__))
    with pytest.raises(InputError, match=r"holds results made with other settings \(domain_epochs: 7 there, 2 now\)"):
        run_cross_granularity(out, settings)


@pytest.mark.parametrize("accelerator, device", [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"), ("mps", "mps"), ("auto", None)])  # fmt: skip
def test_both_studies_run_their_models_where_the_accelerator_says(accelerator: str, device: str | None) -> None:
    """One mapping for the two studies: gpu and mps name their device (was None, "a GPU when present", in this
    study), auto leaves the choice to torch."""
    from biostrata.studies import device_of
    from biostrata.studies.cross_granularity import passes, steps
    from biostrata.studies.strata import steps as strata_steps

    assert device_of(accelerator) == device
    assert steps.device_of is passes.device_of is strata_steps.device_of is device_of


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_accelerator_gpu_without_a_gpu_is_refused_not_run_on_the_cpu(tmp_path: Path) -> None:
    """The family vectors' corpus pass with accelerator gpu on a CPU-only machine says there is no GPU."""
    from biostrata.errors import ParameterError
    from biostrata.models.protein_lm import small_protein_lm
    from biostrata.studies.cross_granularity.steps import family_table, load_inputs

    settings = tiny_settings(write_inputs(tmp_path, n=6)).replace(accelerator="gpu")
    with pytest.raises(ParameterError, match=r"device='cuda': no GPU is available here"):
        family_table(tmp_path / "study", settings, load_inputs(settings), small_protein_lm(1, 8, 2))
