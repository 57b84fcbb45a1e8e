"""The cross-granularity study's report: its tables as Markdown beside the published numbers, and
its three pictures (CKA over training, layer x layer CKA, product-class probes per layer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.config import CrossGranularitySettings
from biostrata.report.figures import COLORS, figure
from biostrata.report.plots import plot_cka_heatmap
from biostrata.report.published import CROSS_GRANULARITY

__all__ = ["summary_markdown", "plot_checkpoints", "plot_layers", "plot_probes"]


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) and np.isfinite(v) else str(v)


def summary_markdown(tables: dict[str, pd.DataFrame], s: CrossGranularitySettings, counts: dict) -> str:
    """The study's tables as Markdown, each beside the published numbers where there are some."""
    ck = tables["checkpoints"]
    lines = [
        "# Cross-granularity study: results",
        "",
        f"{counts['bgcs']} BGCs; {counts['segments']} distinct protein segments; {counts['families_with_vectors']} "
        f"families with protein-level vectors; product-class probes on {counts['probe_bgcs']} BGCs; "
        f"{counts['cka_tokens']} sampled tokens for layer x layer CKA; {counts['aligned_positions']} domain "
        f"positions aligned with protein segments; {counts['clan_tokens']} tokens for the clan probe. Settings: "
        + (
            f"protein LM {s.protein_model}; "
            if s.protein_model
            else f"protein LM {s.protein_layers} layers x {s.protein_dim}, {s.protein_epochs} epoch(s); "
        )
        + f"domain LM preset "
        f"{s.preset}, {s.domain_epochs} epochs; probes {s.folds}-fold x seeds {s.seeds} (clan probe: seeds "
        f"{s.clan_seeds}), bootstrap {s.n_boot}.",
        "",
        "## Pre-training (validation masked-token accuracy and perplexity, best epoch)",
        "",
        tables["pretraining"].to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Embedding table and last layer over training (linear CKA)",
        "",
        "`table_vs_init`: table rows of the families with protein vectors against the same rows at epoch 0; "
        "`table_vs_protein`: against the family vectors; `last_vs_protein`: per-family mean last-layer state "
        "against the family vectors.",
        "",
    ]
    wide = ck.pivot_table(index="epoch", columns="arm", values=["table_vs_init", "last_vs_protein"])
    wide.columns = [f"{a}:{b}" for a, b in wide.columns]
    wide.index = [str(int(e)) for e in wide.index]
    lines += [wide.rename_axis("epoch").reset_index().to_markdown(index=False, floatfmt=".3f"), ""]
    end = ck[ck["epoch"] == ck["epoch"].max()].set_index("arm")
    start = ck[ck["epoch"] == 0].set_index("arm")
    peak = ck[ck["epoch"] > 0].groupby("arm")["last_vs_protein"].max()  # during training
    ref = [
        ("CKA(table, its initialization), end, fine-tuned", CROSS_GRANULARITY["table_vs_init_finetune"],
         end["table_vs_init"].get("finetune")),
        ("CKA(protein table, last layer), start, fine-tuned", CROSS_GRANULARITY["last_vs_protein_start"],
         start["last_vs_protein"].get("finetune")),
        ("CKA(protein table, last layer), peak in training, fine-tuned", CROSS_GRANULARITY["last_vs_protein_peak"], peak.get("finetune")),
        ("CKA(protein table, last layer), end, fine-tuned", CROSS_GRANULARITY["last_vs_protein_end_finetune"],
         end["last_vs_protein"].get("finetune")),
        ("CKA(protein table, last layer), end, random", CROSS_GRANULARITY["last_vs_protein_end_random"],
         end["last_vs_protein"].get("random")),
    ]  # fmt: skip
    for arm in ("finetune", "random"):
        key = f"layer_cka_{arm}"
        if key in tables:
            ref.append(
                (f"CKA(layer 0, layer 1), {arm}", CROSS_GRANULARITY[f"layer0_layer1_{arm}"], tables[key].iloc[0, 1])
            )
    lines += [
        "## Beside the published numbers",
        "",
        "| quantity | paper (ESM-1b / BiGCARP) | here |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {q} | {_fmt(p)} | {_fmt(h) if h is not None else 'n/a'} |" for q, p, h in ref]
    pc = tables["product_class"].set_index("features")
    lines += [
        f"| product class macro AUROC, protein level | {_fmt(CROSS_GRANULARITY['auroc_protein'])} | "
        f"{_fmt(pc.loc['protein', 'auroc_macro'])} |"
    ]
    for arm in s.arms:
        last = pc[(pc["arm"] == arm) & (pc["kind"] == "domain")].sort_values("layer").iloc[-1]
        lines.append(
            f"| product class macro AUROC, domain level ({arm}, last layer) | {CROSS_GRANULARITY['auroc_domain']} | "
            f"{_fmt(last['auroc_macro'])} |"
        )
        lines.append(
            f"| product class macro AUROC, combined ({arm}, aligned concat) | {_fmt(CROSS_GRANULARITY['auroc_combined'])} | "
            f"{_fmt(pc.loc[f'combined/{arm}', 'auroc_macro'])} |"
        )
    lines.append("")
    for arm in s.arms:
        lines += [
            f"## Layer x layer linear CKA ({arm})",
            "",
            tables[f"layer_cka_{arm}"].to_markdown(floatfmt=".2f"),
            "",
        ]
    lines += ["## CKA between the protein embedding of a domain and the domain LM state at its position", "",
              tables["protein_vs_layer"].to_markdown(floatfmt=".3f"), ""]  # fmt: skip
    cols = ["features", "probe", "dim", "auroc_macro", "auroc_macro_sd", "auroc_macro_oof", "auroc_macro_lo", "auroc_macro_hi",
            "mcc", "f1_macro"]  # fmt: skip
    cols += [c for c in tables["product_class"].columns if c.startswith("auroc[")]
    lines += ["## Product class (MIBiG 3.0, multi-label)", "",
              "Macro AUROC: mean and sd over folds x seeds; `_oof` of the pooled out-of-fold predictions, with its 95% "
              "bootstrap interval (`_lo`, `_hi`; BGCs with identical domain lists resampled together); MCC and macro F1 "
              "at threshold 0.5; per-class AUROC.", "",
              tables["product_class"][cols].to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
    cols = ["features", "clans", "families", "auroc_macro", "auroc_macro_sd", "auroc_macro_oof", "auroc_macro_lo",
            "auroc_macro_hi", "mcc", "f1_macro"]  # fmt: skip
    lines += ["## Pfam clan from token-level features (multi-class, linear probe, folds grouped by Pfam family)", "",
              tables["clan"][cols].to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
    lines += ["## BGC-level geometry: mutual k-NN and CKA with the protein-level features, relative delta", "",
              tables["geometry"].to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
    return "\n".join(lines)


def plot_checkpoints(ck: pd.DataFrame, path: str | Path) -> None:
    """Per arm over the epochs: CKA of the table with its start, and of the last layer with the family vectors."""
    paper = CROSS_GRANULARITY
    with figure(path, 1, 2, figsize=(10, 3.8)) as (_, axes):
        for arm, part in ck.groupby("arm", sort=False):
            axes[0].plot(part["epoch"], part["table_vs_init"], "o-", color=COLORS.get(arm), label=arm)
            axes[1].plot(part["epoch"], part["last_vs_protein"], "o-", color=COLORS.get(arm), label=arm)
        axes[0].axhline(paper["table_vs_init_finetune"], ls=":", color="grey", label="paper, ESM init (end)")
        axes[1].axhline(paper["last_vs_protein_end_finetune"], ls=":", color=COLORS["finetune"],
                        label="paper, ESM init (end)")  # fmt: skip
        axes[1].axhline(
            paper["last_vs_protein_end_random"], ls=":", color=COLORS["random"], label="paper, random (end)"
        )
        axes[0].set_title("CKA(table, table at epoch 0)", fontsize=10)
        axes[0].set_ylim(min(0.9, float(ck["table_vs_init"].min()) - 0.01), 1.005)
        axes[1].set_title("CKA(per-family last layer, protein family vectors)", fontsize=10)
        axes[1].set_ylim(0, 1.05)
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)


def plot_layers(layer_cka: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Layer x layer CKA of each arm, and each arm's difference from the random arm."""
    panels = [(arm, frame, False) for arm, frame in layer_cka.items()]
    if "random" in layer_cka:
        panels += [(f"{arm} - random", frame - layer_cka["random"], True) for arm, frame in layer_cka.items()
                   if arm != "random"]  # fmt: skip
    with figure(path, 1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False) as (_, axes):
        for ax, (title, frame, diverging) in zip(axes[0], panels):
            plot_cka_heatmap(frame, title=title, ax=ax, diverging=diverging)


def plot_probes(product: pd.DataFrame, path: str | Path) -> None:
    """Product-class macro AUROC per domain-LM layer and arm, with the protein-level and combined probes."""
    with figure(path, figsize=(7, 4)) as (_, ax):
        domain = product[product["kind"] == "domain"]
        for arm, part in domain.groupby("arm", sort=False):
            part = part.sort_values("layer")
            ax.errorbar(part["layer"], part["auroc_macro"], yerr=part["auroc_macro_sd"], fmt="o-", capsize=2,
                        color=COLORS.get(arm), label=f"domain LM, {arm}")  # fmt: skip
            comb = product[(product["features"] == f"combined/{arm}")]
            if len(comb):
                ax.axhline(float(comb["auroc_macro"].iloc[0]), ls="--", color=COLORS.get(arm), lw=1,
                           label=f"protein + domain (last), {arm}")  # fmt: skip
        prot = product[product["features"] == "protein"]
        if len(prot):
            ax.axhline(float(prot["auroc_macro"].iloc[0]), ls="-", color="black", lw=1, label="protein LM")
        ax.axhline(CROSS_GRANULARITY["auroc_combined"], ls=":", color="grey", lw=1, label="paper: ESM + BiGCARP")
        ax.set_xlabel("domain LM layer (0 = embedding table)")
        ax.set_ylabel("product class macro AUROC")
        ax.legend(fontsize=7, ncol=2)
