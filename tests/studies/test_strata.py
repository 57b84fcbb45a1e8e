"""The strata study end to end on a tiny synthetic data set in the real files' layouts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biostrata.errors import InputError
from biostrata.studies.strata import StrataSettings, run_strata

AA = "ACDEFGHIKLMNPQRSTVWY"
CLANS = ["CL0001", "CL0002", "CL0003"]
FAMILIES = [f"PF{i:05d}" for i in range(1, 13)]  # 4 per clan
MOTIFS = [[1, 5, 9], [2, 6, 10, 3], [4, 8, 12, 7, 11]]
CLASSES = ["NRP", "Polyketide", "Terpene"]
HEADER = ("bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tframe\tdna_sequence\tprotein_sequence\t"
          "biosynthetic_class\tmolecule\tframe_evidence")  # fmt: skip


def write_inputs(root: Path, n: int = 60) -> dict[str, str]:
    """Pfam clans (3 clans of 4 families), ``n`` BGCs of one motif each (it sets the product class) as a
    Pfam-accession CSV, their class table, and the domain table: every domain with family-specific DNA and
    protein (mutated copies), one frame in five ambiguous."""
    rng = random.Random(0)
    (root / "clans.tsv").write_text("".join(f"{acc}\t{CLANS[k // 4]}\tclan{k // 4}\tDom{k}\tfamily {k}\n"
                                            for k, acc in enumerate(FAMILIES)))  # fmt: skip
    dna = {f: "".join(rng.choice("ACGT") for _ in range(48)) for f in FAMILIES}
    aa = {f: "".join(rng.choice(AA) for _ in range(20)) for f in FAMILIES}
    corpus, classes, rows = ["cluster_id,label,domain_tokens,tokens"], ["sequence_id," + ",".join(CLASSES)], [HEADER]
    for i in range(n):
        k = i % 3
        domains = [FAMILIES[d - 1] for d in MOTIFS[k] * rng.randint(1, 2) if rng.random() < 0.85] or [FAMILIES[k]]
        corpus.append(f"BGC{i:04d},{CLASSES[k]},{' '.join(domains)},x")
        classes.append(f"BGC{i:04d}," + ",".join(str(int(c == k)) for c in range(3)))
        for j, d in enumerate(domains):
            mutate = lambda s, letters: "".join(c if rng.random() > 0.15 else rng.choice(letters) for c in s)  # noqa: E731
            evidence = "ambiguous" if rng.random() < 0.2 else rng.choice(["hmm", "unique"])
            rows.append(f"BGC{i:04d}\t{d}.2\tg{j}\tP{i}_{j}\t{60 * j}\t{60 * j + 48}\t0\t{mutate(dna[d], 'ACGT')}\t"
                        f"{mutate(aa[d], AA)}\t{CLASSES[k]}\tm\t{evidence}")  # fmt: skip
    for name, lines in (("corpus.csv", corpus), ("classes.csv", classes), ("domains.tsv", rows)):
        (root / name).write_text("\n".join(lines) + "\n")
    return {"corpus": str(root / "corpus.csv"), "pfam": str(root / "clans.tsv"),
            "classes": str(root / "classes.csv"), "domains": str(root / "domains.tsv")}  # fmt: skip


def tiny_settings(files: dict[str, str]) -> StrataSettings:
    return StrataSettings(
        **files, split=[0.5, 0.25, 0.25], kmers=[2, 3], dna_length=48, cnn_epochs=2, cnn_hidden=8, clan_classes=3,
        clan_min_count=5, protein_layers=1, protein_dim=8, protein_heads=2, protein_epochs=1, protein_max_length=32,
        widths=[4, 8], width=8, domain_variants=["euclidean", "lorentz", "euclidean-distance"], domain_layers=2, domain_seeds=[0, 1], domain_epochs=2, batch_size=16, lr=1e-2,
        instances=200, delta_samples=20, delta_repeats=1, clan_min_families=2, folds=3, probe_seeds=[0, 1],
        umap_neighbors=5, accelerator="cpu", progress=False,
    )  # fmt: skip


def test_study_end_to_end_and_resume(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    out = tmp_path / "study"
    tables = run_strata(out, tiny_settings(files))

    probes = tables["probes"].set_index("name")
    strata = {n.split("/")[0] for n in probes.index}
    assert strata == {"nucleotide", "protein", "domain", "cluster"}
    models = {tuple(n.split("/")[:2]) for n in probes.index}
    assert {("nucleotide", "kmer"), ("nucleotide", "cnn"), ("nucleotide", "hcnn-s"), ("protein", "esm"),
            ("domain", "euclidean"), ("domain", "lorentz"), ("cluster", "lorentz")} <= models  # fmt: skip
    # each motif (product class) has its own families with their own DNA: their k-mer spectra tell the
    # classes apart; every probe is a number with a spread over fold seeds
    assert probes.loc["nucleotide/kmer/3", "product_auroc_macro"] > 0.9
    assert probes[["clan_auroc_macro", "product_auroc_macro", "clan_f1_macro_sd"]].notna().all().all()
    # delta: every representation under the Euclidean metric; hyperbolic ones also on the hyperboloid
    delta = tables["delta"]
    assert set(delta["name"]) == set(probes.index)
    hyper = set(delta[delta["metric"] == "lorentz"]["name"])
    assert "domain/lorentz/0" in hyper and "nucleotide/hcnn-s/3" in hyper and not any("euclidean" in n for n in hyper)
    assert delta["relative_delta"].between(0, 1).all()
    # CKA: square over all representations, unit diagonal, aligned rows
    cka = tables["cka"]
    assert list(cka.index) == list(cka.columns) == list(probes.index)
    np.testing.assert_allclose(np.diag(cka), 1.0, atol=1e-8)
    # the width comparison: both geometries, every width and seed, on the same test clusters
    widths = tables["widths"]
    assert len(widths) == 3 * 2 * 2 and set(widths["geometry"]) == {"euclidean", "lorentz", "euclidean-distance"}
    assert widths["test_ppl"].gt(1).all() and widths["test_acc"].between(0, 1).all()
    variants = ("euclidean", "lorentz", "euclidean-distance")
    tests = [json.loads((out / "domain" / f"{g}-w{w}-s{s}" / "test.json").read_text())
             for g in variants for w in (4, 8) for s in (0, 1)]  # fmt: skip
    assert len({t["masked_tokens"] for t in tests}) == 1 and len({t["clusters"] for t in tests}) == 1
    # both geometries: the same clusters, vocabulary, seed and validation masks at every width and seed
    for w in (4, 8):
        for seed in (0, 1):
            runs = [json.loads((out / "domain" / f"{g}-w{w}-s{seed}" / "metrics.json").read_text()) for g in variants]
            same = ("train_clusters", "val_clusters", "seed", "vocab_size", "epochs", "batch_size", "lr")
            assert all({k: r[k] for k in same} == {k: runs[0][k] for k in same} for r in runs)
            assert [(r["config"]["geometry"], r["config"]["head"]) for r in runs] == [
                ("euclidean", "linear"), ("lorentz", "distance"), ("euclidean", "distance")]  # fmt: skip
            masked = [[e["masked_tokens"] for e in r["history"]] for r in runs]
            assert masked[0] == masked[1] == masked[2] and len(masked[0]) == 2 and runs[0]["seed"] == seed
    for f in ("strata.md", "delta.png", "cka.png", "widths.png", "umap_euclidean.png", "umap_lorentz.png",
              "umap_euclidean-distance.png"):  # fmt: skip
        assert (out / f).stat().st_size > 0, f
    page = (out / "strata.md").read_text()
    assert "code version" in page.lower() and "Euclidean vs Lorentz" in page

    # a second run resumes: nothing is trained again, the same tables come back
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = run_strata(out, tiny_settings(files))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    pd.testing.assert_frame_equal(again["probes"], tables["probes"])
    pd.testing.assert_frame_equal(again["widths"], tables["widths"])
    # a run killed part-way left some steps unwritten (every file is written whole or not at all):
    # they are made again, the same as before
    for lost in ("reps/domain.lorentz.npz", "reps/protein.esm.npz", "domain/lorentz-w4-s1/states.npz",
                 "domain/lorentz-w4-s1/evaluation.json", "probes/clan/protein.esm.1.json"):  # fmt: skip
        (out / lost).unlink()
    resumed = run_strata(out, tiny_settings(files))
    for key in ("probes", "widths", "delta"):
        pd.testing.assert_frame_equal(resumed[key], tables[key], check_exact=False, rtol=1e-6)
    # other settings into the same folder are refused
    with pytest.raises(InputError, match="domain_epochs"):
        run_strata(out, tiny_settings(files).replace(domain_epochs=3))


def test_one_split_for_every_model_and_clan_probe_families_no_cnn_sees(tmp_path: Path) -> None:
    from biostrata.data.clusters.domains import clan_classes, clan_dna_splits
    from biostrata.studies.strata.compare import plan_analyses
    from biostrata.studies.strata.steps import domain_corpora, load_inputs

    files = write_inputs(tmp_path)
    s = tiny_settings(files)
    data = load_inputs(s)
    fit, test = domain_corpora(data)
    assert {c.id for c in test} == {b for b, x in data.split_of.items() if x == "test" and b in set(data.corpus.ids)}
    assert not {c.id for c in fit} & {c.id for c in test}
    assert {c.split for c in fit} == {"train", "valid"}
    # the study keeps instances with a token and a checked frame
    assert set(data.study["frame_evidence"]) <= {"hmm", "unique"} and (data.study["token_position"] >= 0).all()
    # the clan probe asks about families that no CNN trained (or chose its epoch) on
    plan = plan_analyses(s, data)
    probed = set(data.study.loc[plan.clan_rows, "family"])
    assert probed and probed <= set(data.probe_families) and len(set(plan.clan_labels)) >= 2
    clans = clan_classes(data.instances, data.split_of, s.clan_min_count, s.clan_classes, data.probe_families)
    splits = clan_dna_splits(data.instances, data.split_of, clans, exclude=data.probe_families)
    seen = set(data.instances[data.instances["dna"].isin([q for p in splits for q in p.sequences])]["family"])
    assert not seen & probed


def test_shuffled_domain_table_gives_the_same_study(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    lines = Path(files["domains"]).read_text().splitlines()
    rows = lines[1:]
    random.Random(1).shuffle(rows)
    (tmp_path / "shuffled.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    small = dict(skip=["cnn", "protein", "widths"])
    first = run_strata(tmp_path / "a", tiny_settings(files).replace(**small))
    second = run_strata(
        tmp_path / "b", tiny_settings({**files, "domains": str(tmp_path / "shuffled.tsv")}).replace(**small)
    )
    for key in ("cka", "probes", "delta"):
        pd.testing.assert_frame_equal(first[key], second[key])


def test_without_clans_and_classes_the_run_says_what_it_skipped(tmp_path: Path, monkeypatch) -> None:
    """No clans table: the clan-trained CNNs and the clan probe are skipped; no class table: the product-class
    probe; the rest runs, and the run names each skipped part with its reason."""
    import biostrata.report.strata as report

    drawn = {}
    monkeypatch.setattr(report, "plot_umap", lambda vectors, colourings, path, **kw: drawn.update(colourings))
    files = write_inputs(tmp_path) | {"pfam": "", "classes": ""}
    out = tmp_path / "study"
    tables = run_strata(out, tiny_settings(files).replace(skip=["protein", "widths"], domain_variants=["euclidean"]))
    skipped = dict(zip(tables["skipped"]["part"], tables["skipped"]["reason"]))
    assert set(skipped) == {"protein", "widths", "cnn", "clan probe", "product-class probe"}
    assert skipped["cnn"] == skipped["clan probe"] and "no Pfam clans table (pfam;" in skipped["cnn"]
    assert skipped["product-class probe"].startswith("no product classes (classes")
    assert {n.split("/")[1] for n in tables["probes"]["name"]} == {"kmer", "euclidean"}
    assert list(tables["probes"].columns) == ["name"] and len(tables["delta"]) and len(tables["cka"])
    page = (out / "strata.md").read_text()
    assert "## Skipped" in page and f"- clan probe: {skipped['clan probe']}" in page and "clan_f1 " not in page
    assert (out / "skipped.csv").is_file() and list(drawn) == ["Pfam clan"]  # no product classes to colour by


def test_a_table_without_checked_dna_is_refused_before_any_work(tmp_path: Path) -> None:
    from biostrata.studies.strata.steps import load_inputs

    files = write_inputs(tmp_path)
    table = Path(files["domains"]).read_text()
    Path(files["domains"]).write_text(table.replace("\thmm\n", "\tambiguous\n").replace("\tunique\n", "\tambiguous\n"))
    with pytest.raises(InputError, match=r"domains.tsv: no domain has both a token in the corpus .*annotate genomes"):
        load_inputs(tiny_settings(files))


def test_representation_files_must_hold_the_study_rows_in_order(tmp_path: Path) -> None:
    from biostrata.studies.strata.compare import read_reps
    from biostrata.studies.strata.steps import write_reps

    path = tmp_path / "protein.esm.npz"
    write_reps(path, ["a", "b", "c"], {0: np.eye(3), 2: np.ones((3, 2))}, {2: 0.5})
    reps = read_reps([path], ["a", "b", "c"])
    assert list(reps.arrays) == ["protein/esm/0", "protein/esm/2"] and reps.curvatures == {"protein/esm/2": 0.5}
    np.testing.assert_array_equal(reps.arrays["protein/esm/0"], np.eye(3))
    with pytest.raises(InputError, match="not the study's instances; delete it"):
        read_reps([path], ["b", "a", "c"])


def test_the_clan_probe_sample_keeps_every_family() -> None:
    from biostrata.studies.strata.compare import sample_per_group

    groups = pd.Series(["a"] * 50 + ["b"] * 3 + ["c"] * 10, index=np.arange(100, 163))
    rows = sample_per_group(groups, 20, np.random.default_rng(0))
    picked = groups.loc[rows].value_counts().to_dict()
    assert picked == {"a": 8, "b": 3, "c": 8} and len(rows) <= 20 and list(rows) == sorted(rows)
    assert len(sample_per_group(groups, 1000, np.random.default_rng(0))) == 63  # all rows fit
    assert sample_per_group(groups, 3, np.random.default_rng(0)).size == 3  # one per family at least
