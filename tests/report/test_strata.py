"""Tests of biostrata.report.strata: the strata study's delta, CKA, UMAP and width pictures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from biostrata.errors import InputError
from biostrata.report.strata import (
    is_hyperbolic,
    plot_delta,
    plot_strata_cka,
    plot_umap,
    plot_widths,
    present_metrics,
    split_label,
    strata_order,
    top_categories,
)


def _is_png(path: Path) -> bool:
    """Whether ``path`` is a non-empty PNG image."""
    return path.stat().st_size > 0 and matplotlib.image.imread(path).ndim == 3


def _delta_frame(strata: list[str]) -> pd.DataFrame:
    """Two models x three layers per stratum, one of them hyperbolic."""
    models = {"nucleotide": ["cnn", "hcnn-s"], "protein": ["esm", "kmer"], "domain": ["domain-euclidean",
              "domain-lorentz"], "cluster": ["domain-euclidean", "domain-lorentz"]}  # fmt: skip
    rows = [
        {"stratum": s, "model": m, "layer": layer, "relative_delta": 0.1 * layer + 0.05 * j, "relative_delta_std": 0.01}
        for s in strata
        for j, m in enumerate(models[s])
        for layer in range(3)
    ]
    return pd.DataFrame(rows)


def test_strata_order_follows_the_strata_not_the_rows() -> None:
    frame = _delta_frame(["cluster", "nucleotide", "domain"])  # protein missing, rows out of order
    assert strata_order(frame) == ["nucleotide", "domain", "cluster"]
    assert strata_order(["protein", "cluster", "protein"]) == ["protein", "cluster"]
    with pytest.raises(InputError, match="genome"):
        strata_order(["genome", "protein"])


def test_hyperbolic_models_are_named_lorentz_or_hcnn() -> None:
    with pytest.warns(DeprecationWarning):  # a guess from names, kept for one release; the plots no longer use it
        guesses = [is_hyperbolic(m) for m in ("hcnn-s", "domain-lorentz", "cnn", "esm", "domain-euclidean")]
    assert guesses == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_plot_delta_with_a_missing_stratum_and_calibration(tmp_path: Path) -> None:
    frame = _delta_frame(["cluster", "nucleotide", "domain"])
    frame.loc[0, "relative_delta_std"] = np.nan  # a single seed: no error bar
    calibration = {"tree": 0.0, "euclidean-2d": 0.47, "sphere": 0.9, "hyperbolic": 0.2}
    plot_delta(frame, tmp_path / "delta.png", calibration)
    plot_delta(frame, tmp_path / "plain.png")
    assert _is_png(tmp_path / "delta.png") and _is_png(tmp_path / "plain.png")


def test_plot_delta_dashes_the_models_its_frame_marks_hyperbolic() -> None:
    """Hyperbolicity comes from the frame's ``hyperbolic`` column (the study sets it from the layers'
    curvatures), not from the model's name: without the column every line is solid."""
    import matplotlib.pyplot as plt

    from biostrata.report.strata import _draw_delta_panel

    frame = _delta_frame(["nucleotide"])
    for marks, dashed in ((None, set()), ({"cnn"}, {"cnn"}), ({"hcnn-s"}, {"hcnn-s"})):
        part = frame if marks is None else frame.assign(hyperbolic=frame["model"].isin(marks))
        fig, ax = plt.subplots()
        try:
            _draw_delta_panel(ax, part, ["cnn", "hcnn-s"])
            styles = {bars.get_label(): bars.lines[0].get_linestyle() for bars in ax.containers}
        finally:
            plt.close(fig)
        assert styles == {m: "--" if m in dashed else "-" for m in ("cnn", "hcnn-s")}


def test_plot_delta_rejects_bad_frames(tmp_path: Path) -> None:
    frame = _delta_frame(["protein"])
    with pytest.raises(InputError, match="relative_delta_std"):
        plot_delta(frame.drop(columns="relative_delta_std"), tmp_path / "d.png")
    with pytest.raises(InputError, match="more than one row"):
        plot_delta(pd.concat([frame, frame.head(1)]), tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()


def _cka_matrix(labels: list[str], seed: int = 0) -> pd.DataFrame:
    """A symmetric matrix in [0, 1] with ones on the diagonal."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, (len(labels), len(labels)))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return pd.DataFrame(a, index=labels, columns=labels)


def test_split_label() -> None:
    assert split_label("protein/esm/3") == ("protein", "esm", 3)
    assert split_label("domain/bigcarp/lorentz/0") == ("domain", "bigcarp/lorentz", 0)
    with pytest.raises(InputError, match="stratum/model/layer"):
        split_label("protein/esm")


def test_plot_strata_cka_up_to_forty_rows(tmp_path: Path) -> None:
    labels = [f"{s}/{m}/{layer}" for s, ms in [("cluster", ["dl"]), ("nucleotide", ["cnn", "hcnn-s"]),
              ("protein", ["esm"]), ("domain", ["de", "dl"])] for m in ms for layer in range(6)]  # fmt: skip
    assert len(labels) == 36
    plot_strata_cka(_cka_matrix(labels), tmp_path / "cka.png")
    plot_strata_cka(_cka_matrix(labels[:3]), tmp_path / "small.png")
    assert _is_png(tmp_path / "cka.png") and _is_png(tmp_path / "small.png")


def test_plot_strata_cka_rejects_a_non_square_matrix(tmp_path: Path) -> None:
    labels = ["protein/esm/0", "protein/esm/1", "domain/dl/0"]
    with pytest.raises(InputError, match="square"):
        plot_strata_cka(_cka_matrix(labels).iloc[:2], tmp_path / "c.png")
    with pytest.raises(InputError, match="square"):  # square, but rows and columns differ
        plot_strata_cka(_cka_matrix(labels).rename(index={"domain/dl/0": "domain/dl/1"}), tmp_path / "c.png")
    with pytest.raises(InputError, match="stratum/model/layer"):
        plot_strata_cka(_cka_matrix(["protein/esm", "domain/dl/0"]), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_top_categories_leaves_the_rest_and_empty_labels_out() -> None:
    labels = ["b", "a", "", "", "", "a", "c", "b", "a"]
    assert top_categories(labels, 2) == ["a", "b"]
    assert top_categories(labels, 10) == ["a", "b", "c"]
    assert top_categories(labels, 0) == []


def test_plot_umap_returns_seeded_finite_coordinates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 60
    vectors = rng.normal(size=(n, 8)) + np.repeat(np.eye(8)[:3] * 4, n // 3, axis=0)
    colourings = {"Pfam clan": [f"CL{i % 13:04d}" if i % 7 else "" for i in range(n)],
                  "product class": [["NRP", "PKS", "RiPP"][i % 3] for i in range(n)]}  # fmt: skip
    coords = plot_umap(vectors, colourings, tmp_path / "u.png", seed=3, top=10, n_neighbors=10, title="t")
    assert coords.shape == (n, 2) and np.isfinite(coords).all()
    again = plot_umap(vectors, {"product class": colourings["product class"]}, tmp_path / "v.png", seed=3,
                      n_neighbors=10)  # fmt: skip
    np.testing.assert_allclose(again, coords)
    assert _is_png(tmp_path / "u.png") and _is_png(tmp_path / "v.png")


def test_plot_umap_rejects_bad_input(tmp_path: Path) -> None:
    vectors = np.zeros((10, 3))
    with pytest.raises(InputError, match="9 labels for 10 vectors"):
        plot_umap(vectors, {"clan": ["a"] * 9}, tmp_path / "u.png")
    with pytest.raises(InputError, match="at least 4"):
        plot_umap(vectors[:3], {"clan": ["a"] * 3}, tmp_path / "u.png")
    with pytest.raises(InputError, match="colourings is empty"):
        plot_umap(vectors, {}, tmp_path / "u.png")
    assert not (tmp_path / "u.png").exists()


def _widths_frame() -> pd.DataFrame:
    """Two geometries x three widths x two seeds, with accuracy and the clan probe only."""
    rows = [
        {"geometry": g, "width": w, "seed": seed, "test_acc": 0.3 + 0.01 * w + 0.01 * seed, "clan_probe": 0.5}
        for g in ("euclidean", "lorentz")
        for w in (8, 16, 32)
        for seed in (0, 1)
    ]
    return pd.DataFrame(rows)


def test_plot_widths_skips_missing_metric_columns(tmp_path: Path) -> None:
    frame = _widths_frame()
    assert present_metrics(frame, ("test_acc", "test_ppl", "clan_probe", "product_probe")) == ["test_acc", "clan_probe"]
    frame["product_probe"] = np.nan  # a column without values is skipped as well
    assert present_metrics(frame, ("product_probe", "test_acc")) == ["test_acc"]
    plot_widths(frame, tmp_path / "w.png")
    assert _is_png(tmp_path / "w.png")
    with pytest.raises(InputError, match="none of the metric columns"):
        plot_widths(frame, tmp_path / "x.png", metrics=("test_ppl",))
