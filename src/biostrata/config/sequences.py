"""Settings of the protein and gene-cluster line: masked-LM pre-training, the cross-granularity study
and genome annotation (see :mod:`biostrata.settings`). Loads no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from biostrata.errors import InputError
from biostrata.settings import Settings, defaults_from, field_help, source_constant

#: The functions a PretrainSettings configures: pre-training (the domain level), its loop (how a run goes), the
#: domain LM (geometry) and the small protein LM (the protein level); the fields take their defaults.
PRETRAINING = (
    "biostrata.train.pretrain:pretrain_domain_lm",
    "biostrata.train.masked_lm:fit_masked_lm",
    "biostrata.models.domain_lm:DomainLM.__init__",
    "biostrata.models.protein_lm:small_protein_lm",
)
#: The values the domain level allows, read from the modules that use them (written there once).
ARMS = source_constant("biostrata.models.init_table:ARMS")
PROJECTIONS = source_constant("biostrata.models.init_table:PROJECTIONS")
PRESETS = tuple(source_constant("biostrata.models.domain_lm:PRESETS"))
GEOMETRIES = source_constant("biostrata.models.domain_lm:GEOMETRIES")


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(map(repr, values))


@dataclass
@defaults_from(*PRETRAINING, protein_layers="num_layers", protein_dim="embed_dim", protein_heads="attention_heads")
class PretrainSettings(Settings):
    """Masked-token pre-training (``biostrata pretrain``): the domain LM (BiGCARP) in one arm, or a
    small protein LM. Defaults: those of the functions of :data:`PRETRAINING`."""

    level: str = field(default="domain", metadata=field_help("domain (BiGCARP over Pfam domains) or protein"))
    preset: str = field(metadata=field_help("domain LM size: bigcarp (~34M parameters) or small (CPU)"))
    d_embed: int | None = field(
        default=None, metadata=field_help("token-table width; unset: the preset's, or the family vectors' width")
    )
    d_model: int | None = field(
        default=None,
        metadata=field_help("domain level: width of the residual blocks; unset: the preset's (bigcarp 256, small 128)"),
    )
    n_layers: int | None = field(
        default=None, metadata=field_help("domain level: residual blocks; unset: the preset's (bigcarp 32, small 8)")
    )
    arm: str = field(metadata=field_help("random, finetune or frozen (the last two need a family table)"))
    projection: str = field(metadata=field_help("learned: table as wide as the family vectors; pca: fixed projection"))
    geometry: str = field(
        metadata=field_help("domain level: euclidean, or lorentz (token table and output layer on the hyperboloid)"),
    )
    curvature: float = field(
        metadata=field_help("geometry lorentz: curvature magnitude K (the hyperboloid has curvature -K)")
    )
    class_token: bool = field(metadata=field_help("prefix each BGC with its class token"))
    separators: bool = field(metadata=field_help("[SEP] token between genes (domain-name lists)"))
    protein_layers: int = field(metadata=field_help("protein level: transformer layers"))
    protein_dim: int = field(metadata=field_help("protein level: embedding width"))
    protein_heads: int = field(metadata=field_help("protein level: attention heads"))
    epochs: int = field(metadata=field_help("training epochs"))
    batch_size: int = field(metadata=field_help("batch size"))
    lr: float = field(metadata=field_help("learning rate"))
    val_fraction: float = field(metadata=field_help("share held out for validation"))
    max_length: int | None = field(metadata=field_help("crop longer sequences (a random window in training)"))
    seed: int = field(metadata=field_help("seed of the split, the model and the masking"))
    accelerator: str = field(metadata=field_help("Lightning accelerator: auto, cpu, gpu", operational=True))
    devices: str = field(metadata=field_help("Lightning devices: auto or a number", operational=True))
    progress: bool = field(metadata=field_help("show progress bars", operational=True))
    resume: bool = field(metadata=field_help("continue from OUT/checkpoints/last.ckpt", operational=True))
    snapshots: bool = field(
        metadata=field_help("domain level: keep the weights at the start and after every epoch in OUT/snapshots/"),
    )

    def validate(self) -> None:
        checks = [
            (self.level in ("domain", "protein"), "level", "'domain' or 'protein'"),
            (self.arm in ARMS, "arm", f"one of {_one_of(ARMS)}"),
            (self.projection in PROJECTIONS, "projection", f"one of {_one_of(PROJECTIONS)}"),
            (self.preset in PRESETS, "preset", f"one of {_one_of(PRESETS)}"),
            (0 < self.val_fraction < 1, "val_fraction", "in (0, 1)"),
            (self.lr > 0, "lr", "> 0"),
            (self.max_length is None or self.max_length >= 1, "max_length", "at least 1, or unset"),
            (self.d_embed is None or self.d_embed >= 1, "d_embed", "at least 1, or unset"),
            (self.d_model is None or self.d_model >= 1, "d_model", "at least 1, or unset"),
            (self.n_layers is None or self.n_layers >= 1, "n_layers", "at least 1, or unset"),
            (self.geometry in GEOMETRIES, "geometry", f"one of {_one_of(GEOMETRIES)}"),
            (self.curvature > 0, "curvature", "> 0"),
            (self.geometry == "lorentz" or self.curvature == 1.0, "curvature", "1 unless geometry is lorentz"),
        ]
        if self.level == "protein" and (self.d_model or self.n_layers):
            raise InputError("d_model, n_layers: the domain LM's; at level protein give protein_dim, protein_layers")
        for name in ("epochs", "batch_size", "protein_layers", "protein_dim", "protein_heads"):
            checks.append((getattr(self, name) >= 1, name, "at least 1"))
        self.require(checks)
        if self.snapshots and self.level == "protein":
            raise InputError("snapshots: kept at the domain level only; leave snapshots off at level protein")
        if self.geometry != "euclidean" and self.level == "protein":
            raise InputError("geometry: the protein LM is euclidean only; leave geometry euclidean at level protein")

    @property
    def devices_arg(self) -> int | str:
        """``devices`` as Lightning takes it: a number of devices, or a name such as auto."""
        return int(self.devices) if self.devices.isdigit() else self.devices


#: Where the studies find their data by default (a study's ``data`` folder replaces the root), and the files there.
DATA_ROOT = "../shared/data"
DATA_FILES = {
    "domain_list": "bgc/mibig_domain_list.txt",
    "pfamid": "bgc/mibig_pfamid.csv",
    "domains": "bgc/mibig_domains.tsv",
    "classes": "bgc/mibig3_classes.csv",
    "pfam": "pfam/Pfam-A.clans.tsv",
}


def data_file(name: str, help: str) -> Any:
    """A field of the path of a data file: by default ``DATA_ROOT/DATA_FILES[name]``, with this help text."""
    return field(default=f"{DATA_ROOT}/{DATA_FILES[name]}", metadata=field_help(help))


#: The functions a ProteinLMSettings configures: the small protein LM (its sizes) and its pre-training (the length).
PROTEIN_LM = ("biostrata.models.protein_lm:small_protein_lm", "biostrata.train.pretrain:pretrain_protein_lm")


@dataclass
@defaults_from(
    *PROTEIN_LM,
    protein_layers="num_layers",
    protein_dim="embed_dim",
    protein_heads="attention_heads",
    protein_max_length="max_length",
)
class ProteinLMSettings(Settings):
    """The protein LM of a study: a given ESM (transformers name or directory, fair-esm .pt), else a small
    ESM-2 trained in the study (its sizes and epochs; the defaults of the functions of :data:`PROTEIN_LM` but for
    the epochs)."""

    protein_model: str | None = field(
        default=None,
        metadata=field_help("ESM to use instead of training one: a transformers name or directory, or a .pt file"),
    )
    protein_layers: int
    protein_dim: int
    protein_heads: int
    protein_epochs: int = field(default=1, metadata=field_help("protein LM epochs"))  # pre-training's default: 5
    protein_max_length: int


@dataclass
class CrossGranularitySettings(ProteinLMSettings):
    """Inputs, model sizes, and the size of every analysis (defaults: a CPU run in under 30 minutes)."""

    corpus: str = data_file("domain_list", "BGC domain lists")
    pfam: str = data_file("pfam", "Pfam clans table")
    classes: str = data_file("classes", "MIBiG product classes")
    domains: str = data_file("domains", "per-domain protein table")
    # domain LM
    preset: str = "small"
    domain_sizes: dict = field(default_factory=dict)
    domain_epochs: int = field(default=10, metadata=field_help("domain LM epochs per arm"))
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    arms: list[str] = field(default_factory=lambda: ["random", "finetune", "frozen"])
    # analyses
    cka_tokens: int = 20000
    checkpoint_clusters: int | None = None  # clusters whose last-layer states are averaged per family (None: all)
    knn: int = 10
    delta_samples: int = 400
    delta_repeats: int = 2
    folds: int = field(default=5, metadata=field_help("probe folds"))
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata=field_help("probe seeds"))
    mlp_hidden: list[int] = field(default_factory=lambda: [512, 256])
    one_vs_rest: bool = field(default=False, metadata=field_help("one MLP per product class (slower)"))
    n_boot: int = 500
    clan_min_families: int = 5
    clan_tokens_per_family: int = 2
    clan_Cs: list[float] = field(default_factory=lambda: [0.1, 1.0])
    clan_seeds: list[int] = field(default_factory=lambda: [0])
    threads: int = field(default=1, metadata=field_help("CPU threads", operational=True))
    accelerator: str = field(
        default="auto",
        metadata=field_help("auto (a GPU when present), cpu or gpu: pre-training and corpus passes", operational=True),
    )
    progress: bool = field(default=True, metadata=field_help("show progress bars", operational=True))

    def validate(self) -> None:
        arms = bool(self.arms) and set(self.arms) <= set(ARMS)
        checks = [
            (arms, "arms", f"one or more of {', '.join(ARMS)}"),
            (self.folds >= 2, "folds", "at least 2"),
            (self.lr > 0, "lr", "> 0"),
            (self.n_boot >= 0, "n_boot", ">= 0"),
        ]
        for name in ("protein_epochs", "domain_epochs", "batch_size", "knn"):
            checks.append((getattr(self, name) >= 1, name, "at least 1"))
        for name in ("seeds", "clan_seeds"):
            seeds = getattr(self, name)
            checks.append((bool(seeds) and len(set(seeds)) == len(seeds), name, "one or more distinct seeds"))
        self.require(checks)


#: The functions an AnnotateSettings configures: the genes of the records, their domains, the domain sentences.
ANNOTATING = (
    "biostrata.data.annotation.genes:genes_of",
    "biostrata.data.annotation.annotate:search_domains",
    "biostrata.data.annotation.annotate:cluster_rows",
)
#: The values the annotation allows, read from the modules that use them (written there once).
ANNOTATE_CHOICES = {
    "genes": source_constant("biostrata.data.annotation.genes:GENES"),
    "cutoff": source_constant("biostrata.data.annotation.annotate:CUTOFFS"),
    "overlaps": source_constant("biostrata.data.annotation.annotate:OVERLAPS"),
}


@dataclass
@defaults_from(*ANNOTATING, hmm="hmms")
class AnnotateSettings(Settings):
    """How ``biostrata annotate`` finds genes and Pfam domains (defaults: those of the functions of
    :data:`ANNOTATING`, Pfam's gathering cut-offs)."""

    genes: str = field(
        metadata=field_help("auto (CDS features where a record has them, else pyrodigal), annotated or predicted"),
    )
    hmm: str | None = field(
        metadata=field_help("profile HMMs (.hmm, .hmm.gz, .h3m); unset: the Pfam 35.0 subset of the gecco package"),
    )
    cutoff: str = field(metadata=field_help("gathering (Pfam's GA cut-offs) or evalue (DeepBGC's rule)"))
    evalue: float = field(metadata=field_help("cutoff evalue: the best domain's i-Evalue at most"))
    Z: float | None = field(
        metadata=field_help("database size for E-values; unset: the number of HMMs (Pfam 31: 16712)")
    )
    overlaps: str = field(metadata=field_help("overlapping hits on a protein: best, clan (needs clans) or keep"))
    clans: str | None = field(default=None, metadata=field_help("Pfam-A.clans.tsv, for overlaps clan"))
    separators: bool = field(metadata=field_help("[SEP] between proteins in clusters.csv"))
    cpus: int = field(metadata=field_help("threads of hmmsearch (0: all cores)"))
    progress: bool = field(default=True, metadata=field_help("show progress bars"))

    def validate(self) -> None:
        self.require(
            [(getattr(self, name) in allowed, name, f"one of {', '.join(allowed)}") for name, allowed in ANNOTATE_CHOICES.items()]
            + [
                (self.evalue > 0, "evalue", "> 0"),
                (self.Z is None or self.Z > 0, "Z", "> 0, or unset (the number of HMMs)"),
                (self.cpus >= 0, "cpus", ">= 0 (0: all cores)"),
                (self.overlaps != "clan" or bool(self.clans), "overlaps", "best or keep, or clan with clans (Pfam-A.clans.tsv)"),
            ]
        )  # fmt: skip
