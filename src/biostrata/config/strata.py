"""Settings of the strata study (``biostrata study strata``; see :mod:`biostrata.studies.strata`).
Defaults: a run of under 60 CPU-minutes on a 2-core CPU. Loads no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from biostrata.config.sequences import ProteinLMSettings, data_file
from biostrata.settings import field_help

#: What a strata study can leave out (``skip``): each a stratum's model(s), or the width comparison.
STRATA_PARTS = ("kmer", "cnn", "protein", "widths")
#: The domain LMs a strata study can train: BiGCARP's (``euclidean``), the Lorentz one, and the Lorentz
#: one's flat control (BiGCARP's table, Euclidean distance logits: the same head but for the curvature).
DOMAIN_VARIANTS = {
    "euclidean": {"geometry": "euclidean"},
    "lorentz": {"geometry": "lorentz"},
    "euclidean-distance": {"geometry": "euclidean", "head": "distance"},
}


@dataclass
class StrataSettings(ProteinLMSettings):
    """The same MIBiG domain instances as DNA, protein segment, domain token in its cluster, and cluster
    (the amino-acid stratum's protein LM: :class:`ProteinLMSettings`)."""

    domains: str = data_file(
        "domains", "domain table with DNA and protein (mibig_domains.tsv, or annotate's domains.tsv)"
    )
    corpus: str = data_file("pfamid", "BGC corpus of Pfam accessions (or annotate's clusters.csv)")
    pfam: str = data_file("pfam", "Pfam clans table ('': none; the CNNs and the clan probe are then skipped)")
    classes: str = data_file(
        "classes", "product classes, multi-hot ('': none; the product-class probe is then skipped)"
    )
    split: list[float] = field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        metadata=field_help("train, valid, test shares of the clusters (identical domain lists kept together)"),
    )
    seed: int = field(default=0, metadata=field_help("seed of the split, the models and the samples"))
    skip: list[str] = field(default_factory=list, metadata=field_help("leave out: kmer, cnn, protein, widths"))
    # nucleotide stratum: k-mer spectra, and genome CNNs trained to tell the Pfam clan from the domain's DNA
    kmers: list[int] = field(default_factory=lambda: [2, 3, 4, 5], metadata=field_help("k of the k-mer spectra"))
    dna_length: int = field(default=300, metadata=field_help("CNN input length (bp; longer domains are cut)"))
    cnn_models: list[str] = field(default_factory=lambda: ["cnn", "hcnn-s"], metadata=field_help("genome CNNs"))
    cnn_epochs: int = field(default=6, metadata=field_help("genome CNN epochs"))
    cnn_hidden: int = field(default=128, metadata=field_help("width of the CNN's fully connected layer"))
    cnn_lr: float = field(default=1e-3, metadata=field_help("genome CNN learning rate"))
    clan_classes: int = field(default=20, metadata=field_help("CNN classes: the most frequent training clans"))
    clan_min_count: int = field(default=20, metadata=field_help("training instances a CNN class needs"))
    # domain stratum: the domain LM (BiGCARP's ByteNet) in both geometries over widths and seeds
    widths: list[int] = field(
        default_factory=lambda: [8, 16, 32, 64], metadata=field_help("domain LM widths (d_embed = d_model)")
    )
    domain_variants: list[str] = field(
        default_factory=lambda: ["euclidean", "lorentz"],
        metadata=field_help("domain LMs: euclidean, lorentz, euclidean-distance (the flat control of lorentz)"),
    )
    width: int = field(default=64, metadata=field_help("the width whose seed-0 models stand for the domain stratum"))
    domain_layers: int = field(default=4, metadata=field_help("domain LM residual blocks"))
    domain_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata=field_help("domain LM training seeds"))
    domain_epochs: int = field(default=16, metadata=field_help("domain LM epochs"))
    curvature: float = field(
        default=1.0, metadata=field_help("curvature magnitude K of the Lorentz domain LM (the hyperboloid is -K)")
    )
    batch_size: int = 32
    lr: float = 1e-3
    # analyses
    instances: int = field(default=3000, metadata=field_help("instances sampled for CKA, delta and the clan probe"))
    delta_samples: int = field(default=400, metadata=field_help("points per delta estimate"))
    delta_repeats: int = 3
    clan_min_families: int = field(
        default=5, metadata=field_help("families a clan needs in the clan probe (and held out at least)")
    )
    probe_share: float = field(
        default=0.3, metadata=field_help("share of each clan's families held out from the CNNs for the clan probe")
    )
    folds: int = field(default=5, metadata=field_help("probe folds"))
    probe_seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2], metadata=field_help("probe fold seeds (the spread reported)")
    )
    probe_C: float = field(default=1.0, metadata=field_help("inverse L2 strength of the linear probes"))
    umap_neighbors: int = 15
    threads: int = field(default=1, metadata=field_help("CPU threads", operational=True))
    accelerator: str = field(
        default="auto", metadata=field_help("auto (a GPU when present), cpu or gpu", operational=True)
    )
    progress: bool = field(default=True, metadata=field_help("show progress bars", operational=True))

    def validate(self) -> None:
        from biostrata.config.genome import ACCELERATORS, GENOME_MODELS

        checks = [
            (len(self.split) == 3 and min(self.split) >= 0 and self.split[0] > 0 and abs(sum(self.split) - 1) < 1e-9
             and self.split[1] > 0 and self.split[2] > 0, "split", "three shares > 0 that sum to 1"),
            (set(self.skip) <= set(STRATA_PARTS), "skip", f"some of {', '.join(STRATA_PARTS)}"),
            (bool(self.domain_variants) and set(self.domain_variants) <= set(DOMAIN_VARIANTS)
             and len(set(self.domain_variants)) == len(self.domain_variants), "domain_variants",
             f"one or more of {', '.join(DOMAIN_VARIANTS)}"),
            (bool(self.kmers) and min(self.kmers) >= 1 and max(self.kmers) <= 8, "kmers", "values of k in 1..8"),
            (bool(self.cnn_models) and set(self.cnn_models) <= set(GENOME_MODELS), "cnn_models",
             f"some of {', '.join(GENOME_MODELS)}"),
            (bool(self.widths) and min(self.widths) >= 2, "widths", "widths of 2 or more"),
            (self.width in self.widths, "width", f"one of the widths {self.widths}"),
            (bool(self.domain_seeds) and len(set(self.domain_seeds)) == len(self.domain_seeds), "domain_seeds",
             "one or more distinct seeds"),
            (bool(self.probe_seeds) and len(set(self.probe_seeds)) == len(self.probe_seeds), "probe_seeds",
             "one or more distinct seeds"),
            (self.curvature > 0, "curvature", "> 0"),
            (self.lr > 0 and self.cnn_lr > 0 and self.probe_C > 0, "lr", "learning rates and probe_C > 0"),
            (self.folds >= 2, "folds", "at least 2"),
            (0 < self.probe_share <= 1, "probe_share", "in (0, 1]"),
            (self.instances >= 50, "instances", "at least 50"),
            (self.delta_samples >= 4, "delta_samples", "at least 4"),
            (self.accelerator in ACCELERATORS, "accelerator", f"one of {', '.join(ACCELERATORS)}"),
        ]  # fmt: skip
        for name in ("dna_length", "cnn_epochs", "cnn_hidden", "clan_classes", "clan_min_count", "protein_layers",
                     "protein_dim", "protein_heads", "protein_epochs", "protein_max_length", "domain_layers",
                     "domain_epochs", "batch_size", "delta_repeats", "clan_min_families", "umap_neighbors", "threads"):  # fmt: skip
            checks.append((getattr(self, name) >= 1, name, "at least 1"))
        self.require(checks)
