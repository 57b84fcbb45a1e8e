"""Published numbers that biostrata's results are shown beside (not results of this project).

- ``PUBLISHED[suite][model][task]``: test MCC x100 (virus/covid: F1 x100) on GUE of the Nucleotide
  Transformer NT-2.5B-multi and of DNABERT-2 (117M parameters), from Zhou et al., "DNABERT-2:
  Efficient Foundation Model and Benchmark for Multi-Species Genome", ICLR 2024, Table 4.
- ``CROSS_GRANULARITY``: the cross-granularity paper's CKA and probe numbers (ESM-1b / BiGCARP).

Both are collected, with their sources, in ANCHORS.md.
"""

from __future__ import annotations

__all__ = ["PUBLISHED", "CROSS_GRANULARITY"]

_EMP = ["H3", "H3K14ac", "H3K36me3", "H3K4me1", "H3K4me2", "H3K4me3", "H3K79me3", "H3K9ac", "H4", "H4ac"]
_PROM = [f"prom/prom_{k}_{v}" for k in ("core", "300") for v in ("all", "notata", "tata")]
_GUE_TASKS = [f"EMP/{m}" for m in _EMP] + [f"mouse/{i}" for i in range(5)] + [f"tf/{i}" for i in range(5)]
_GUE_TASKS += _PROM + ["splice/reconstructed", "virus/covid"]
_NT_2_5B = [78.77, 56.20, 61.99, 55.30, 36.49, 40.34, 64.70, 56.01, 81.67, 49.13,  # EMP
            63.31, 83.76, 71.52, 69.44, 47.07,  # mouse/0..4
            66.64, 70.28, 58.72, 51.65, 69.34,  # tf/0..4
            70.33, 71.58, 72.97, 91.01, 94.00, 79.43,  # prom core, 300
            89.35, 73.04]  # splice, covid  # fmt: skip
_DNABERT_2 = [78.27, 52.57, 56.88, 50.52, 31.13, 36.27, 67.39, 55.63, 80.71, 50.43,
              56.76, 84.77, 79.32, 66.47, 52.66,
              71.99, 76.06, 66.52, 58.54, 77.43,
              69.37, 68.04, 74.17, 86.77, 94.27, 71.59,
              84.99, 71.02]  # fmt: skip
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "gue": {"NT-2.5B": dict(zip(_GUE_TASKS, _NT_2_5B)), "DNABERT-2": dict(zip(_GUE_TASKS, _DNABERT_2))},
}


#: The published numbers (Xiao, Breitling, Takano, Alvarez, BIBM 2025; ANCHORS section 4).
CROSS_GRANULARITY = {
    "table_vs_init_finetune": 0.954,
    "last_vs_protein_start": 0.16,
    "last_vs_protein_peak": 0.35,
    "last_vs_protein_end_finetune": 0.285,
    "last_vs_protein_end_random": 0.311,
    "layer0_layer1_finetune": 0.645,
    "layer0_layer1_random": 0.872,
    "auroc_protein": 0.900,
    "auroc_domain": "0.901-0.908",
    "auroc_combined": 0.911,
}
