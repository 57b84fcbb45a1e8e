"""The settings of every experiment (see ``biostrata.settings``): a genome classifier's training,
the demo, the conditions study, masked-LM pre-training, the cross-granularity study and simulated
datasets. This module loads no torch, so the command line can build its options.

A config file holds the fields of ``TrainConfig``; unknown keys are errors. Command-line options
override the file. The config used is saved beside every result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from biostrata.errors import InputError
from biostrata.settings import Settings, field_help

# The genome classifiers a TrainConfig can name; models.genome_cnn.MODELS says how each is built.
GENOME_MODELS = ("cnn", "hcnn-s", "hcnn-m")


@dataclass
class TrainConfig(Settings):
    """Training of one genome classifier. Defaults are those of Khan et al. (ICLR 2025)."""

    model: str = field(
        default="hcnn-s",
        metadata=field_help("cnn (Euclidean), hcnn-s (Lorentz, one curvature) or hcnn-m (one per block and the head)"),
    )
    length: int | None = field(
        default=None, metadata=field_help("model input length; unset: the longest train or dev sequence")
    )
    truncate: bool = field(default=False, metadata=field_help("cut longer sequences to the length instead of failing"))
    pool: str = field(default="flatten", metadata=field_help("head: flatten (the paper's) or mean"))
    channels: int = field(default=32, metadata=field_help("channels per block (Lorentz: time + space dimensions)"))
    kernel_size: int = field(default=9, metadata=field_help("convolution width"))
    blocks: int = field(default=3, metadata=field_help("residual blocks"))
    hidden: int = field(default=528, metadata=field_help("width of the fully connected layer"))
    init_curvature: float = field(default=1.0, metadata=field_help("starting curvature magnitude K"))
    learn_curvature: bool = field(default=True, metadata=field_help("learn the curvature"))
    bn_warm_start: bool = field(
        default=True,
        metadata=field_help("running batch-norm statistics start from the first batches (off: the reference)"),
    )
    epochs: int = field(default=100, metadata=field_help("training epochs"))
    batch_size: int = field(default=100, metadata=field_help("batch size"))
    lr: float = field(default=1e-5, metadata=field_help("learning rate of the ordinary weights"))
    weight_decay: float = field(default=0.1, metadata=field_help("L2 weight decay of the ordinary weights"))
    manifold_lr: float = field(
        default=2e-2, metadata=field_help("learning rate of the batch-norm centres (Riemannian)")
    )
    curvature_lr: float = field(
        default=1e-4, metadata=field_help("learning rate of the curvatures (own group, no weight decay)")
    )
    milestones: list[int] = field(
        default_factory=lambda: [60, 85],
        metadata=field_help("epochs at which the learning rates are multiplied by lr_gamma"),
    )
    lr_gamma: float = field(default=0.1, metadata=field_help("step-decay factor"))
    warmup_epochs: float = field(
        default=0.0,
        metadata=field_help(
            "linear learning-rate warm-up over this many epochs (fractions allowed; 0: none, the paper)"
        ),
    )
    patience: int | None = field(
        default=None,
        metadata=field_help("early stopping after this many epochs without a better validation metric; unset: off"),
    )
    metric: str = field(default="mcc", metadata=field_help("model-selection metric on dev: mcc, f1 or accuracy"))
    seed: int = field(default=1, metadata=field_help("training seed"))
    precision: str = field(
        default="32-true", metadata=field_help("Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed (GPU)")
    )
    accelerator: str = field(default="auto", metadata=field_help("Lightning accelerator: auto, cpu, gpu"))
    devices: str = field(default="auto", metadata=field_help("Lightning devices: auto or a number"))
    num_workers: int = field(default=0, metadata=field_help("data-loader worker processes"))
    progress: bool = field(default=True, metadata=field_help("show progress bars"))

    def validate(self) -> None:
        checks = [
            (self.model in GENOME_MODELS, "model", f"one of {', '.join(GENOME_MODELS)}"),
            (self.length is None or self.length >= 1, "length", "a positive integer"),
            (self.pool in ("flatten", "mean"), "pool", "'flatten' or 'mean'"),
            (self.metric in ("mcc", "f1", "accuracy"), "metric", "'mcc', 'f1' or 'accuracy'"),
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.init_curvature > 0, "init_curvature", "> 0"),
            (min(self.lr, self.manifold_lr, self.curvature_lr) > 0, "lr", "> 0 (lr, manifold_lr, curvature_lr)"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.patience is None or self.patience >= 1, "patience", "at least 1, or unset"),
            (self.warmup_epochs >= 0, "warmup_epochs", ">= 0"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise InputError(f"config: {name}={getattr(self, name, None)!r} is invalid; expected {expected}")


@dataclass
class DemoSettings(Settings):
    """Size of the demo. The defaults run in a few minutes on 2 CPU cores."""

    leaves: int = field(default=5000, metadata=field_help("number of sequences"))
    length: int = field(default=200, metadata=field_help("sequence length"))
    classes: int = field(default=4, metadata=field_help("number of clades = classes"))
    tree: str = field(default="balanced", metadata=field_help("tree shape: balanced, yule, birth-death, caterpillar"))
    height: float = field(default=2.0, metadata=field_help("substitutions per site from root to leaf"))
    epochs: int = field(default=12, metadata=field_help("training epochs"))
    lr: float = field(default=1e-3, metadata=field_help("learning rate"))
    delta_points: int = field(default=600, metadata=field_help("test embeddings in the Gromov delta"))
    seed: int = field(default=0, metadata=field_help("seed of simulation and training"))
    progress: bool = True
    parallel: bool = field(
        default=True, metadata=field_help("train the two models at once, one CPU thread each (CPU only)")
    )


@dataclass
class ConditionsSettings(Settings):
    """The base condition, the levels of each factor, and the size of each run."""

    shapes: list[str] = field(default_factory=lambda: ["balanced", "yule", "caterpillar"])
    heights: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    depths: list[int] = field(default_factory=lambda: [2, 8, 32])
    base_shape: str = "yule"
    base_height: float = 1.0
    base_depth: int = 8
    leaves: int = field(default=2000, metadata=field_help("sequences per dataset"))
    length: int = field(default=100, metadata=field_help("sequence length"))
    epochs: int = field(default=10, metadata=field_help("epochs per run"))
    lr: float = field(default=1e-3, metadata=field_help("learning rate"))
    seeds: list[int] = field(default_factory=lambda: [1, 2], metadata=field_help("training seeds"))
    delta_points: int = field(default=400, metadata=field_help("test embeddings in the Gromov delta"))

    def validate(self) -> None:
        for name in ("shapes", "heights", "depths", "seeds"):
            if not getattr(self, name):
                raise InputError(f"config: {name} is empty; give at least one value")

    def conditions(self) -> list[dict]:
        """One-factor-at-a-time design around the base; the base appears once."""
        base = {"shape": self.base_shape, "height": self.base_height, "depth": self.base_depth}
        out = [dict(base, factor="base")]
        for factor, levels in (("shape", self.shapes), ("height", self.heights), ("depth", self.depths)):
            out += [dict(base, factor=factor, **{factor: v}) for v in levels if v != base[factor]]
        return out


@dataclass
class PretrainSettings(Settings):
    """Masked-token pre-training (``biostrata pretrain``): the domain LM (BiGCARP) in one arm, or a
    small protein LM. The keyword defaults of ``train.pretrain`` are these fields."""

    level: str = field(default="domain", metadata=field_help("domain (BiGCARP over Pfam domains) or protein"))
    preset: str = field(
        default="bigcarp", metadata=field_help("domain LM size: bigcarp (~34M parameters) or small (CPU)")
    )
    d_embed: int | None = field(
        default=None, metadata=field_help("token-table width; unset: the preset's, or the family vectors' width")
    )
    arm: str = field(
        default="random", metadata=field_help("random, finetune or frozen (the last two need --init-table)")
    )
    projection: str = field(
        default="learned", metadata=field_help("learned: table as wide as the family vectors; pca: fixed projection")
    )
    class_token: bool = field(default=False, metadata=field_help("prefix each BGC with its class token"))
    separators: bool = field(default=False, metadata=field_help("[SEP] token between genes (domain-name lists)"))
    protein_layers: int = field(default=4, metadata=field_help("protein level: transformer layers"))
    protein_dim: int = field(default=64, metadata=field_help("protein level: embedding width"))
    protein_heads: int = field(default=4, metadata=field_help("protein level: attention heads"))
    epochs: int = field(default=10, metadata=field_help("training epochs"))
    batch_size: int = field(default=32, metadata=field_help("batch size"))
    lr: float = field(default=1e-3, metadata=field_help("learning rate"))
    val_fraction: float = field(default=0.1, metadata=field_help("share held out for validation"))
    max_length: int | None = field(
        default=512, metadata=field_help("crop longer sequences (a random window in training)")
    )
    seed: int = field(default=0, metadata=field_help("seed of the split, the model and the masking"))
    accelerator: str = field(default="auto", metadata=field_help("Lightning accelerator: auto, cpu, gpu"))
    devices: str = field(default="auto", metadata=field_help("Lightning devices: auto or a number"))
    progress: bool = field(default=True, metadata=field_help("show progress bars"))
    resume: bool = field(default=False, metadata=field_help("continue from OUT/checkpoints/last.ckpt"))
    snapshots: bool = field(
        default=False,
        metadata=field_help("domain level: keep the weights at the start and after every epoch in OUT/snapshots/"),
    )

    def validate(self) -> None:
        checks = [
            (self.level in ("domain", "protein"), "level", "'domain' or 'protein'"),
            (self.arm in ("random", "finetune", "frozen"), "arm", "'random', 'finetune' or 'frozen'"),
            (self.projection in ("learned", "pca"), "projection", "'learned' or 'pca'"),
            (self.preset in ("bigcarp", "small"), "preset", "'bigcarp' or 'small'"),
            (0 < self.val_fraction < 1, "val_fraction", "in (0, 1)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise InputError(f"{name}={getattr(self, name)!r} is invalid; expected {expected}")
        if self.snapshots and self.level == "protein":
            raise InputError("snapshots: kept at the domain level only; drop --snapshots with --level protein")

    @property
    def devices_arg(self) -> int | str:
        """``devices`` as Lightning takes it: a number of devices, or a name such as auto."""
        return int(self.devices) if self.devices.isdigit() else self.devices


@dataclass
class CrossGranularitySettings(Settings):
    """Inputs, model sizes, and the size of every analysis (defaults: a CPU run in under 30 minutes)."""

    corpus: str = field(default="../shared/data/bgc/mibig_domain_list.txt", metadata=field_help("BGC domain lists"))
    pfam: str = field(default="../shared/data/pfam/Pfam-A.clans.tsv", metadata=field_help("Pfam clans table"))
    classes: str = field(default="../shared/data/bgc/mibig3_classes.csv", metadata=field_help("MIBiG product classes"))
    domains: str = field(
        default="../shared/data/bgc/mibig_domains.tsv", metadata=field_help("per-domain protein table")
    )
    # protein LM (a small ESM-2 trained here; no ESM weights offline)
    protein_layers: int = 4
    protein_dim: int = 64
    protein_heads: int = 4
    protein_epochs: int = field(default=1, metadata=field_help("protein LM epochs"))
    protein_max_length: int = 512
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
    threads: int = field(default=1, metadata=field_help("CPU threads"))
    accelerator: str = field(
        default="auto", metadata=field_help("auto (a GPU when present), cpu or gpu: pre-training and corpus passes")
    )
    progress: bool = field(default=True, metadata=field_help("show progress bars"))


# The choices of SimulateSettings. This module imports nothing from biostrata.data; the same names are
# trees.SHAPES, evolution.MODELS and simulate.LABELS there (tests/data/test_simulate.py checks they agree).
SIMULATE_CHOICES = {
    "tree": ("yule", "birth-death", "balanced", "caterpillar"),
    "model": ("jc69", "k80", "hky85"),
    "label": ("clade", "motif"),
}


def _one_of(name: str) -> str:
    return ", ".join(SIMULATE_CHOICES[name])


@dataclass
class SimulateSettings(Settings):
    """A labelled DNA dataset simulated along a tree (``biostrata simulate``). The keyword defaults of
    ``biostrata.data.simulate.simulate_dataset`` are these fields (``leaves``, ``classes`` and ``clades``
    are its ``n_leaves``, ``n_classes`` and ``n_clades``); numbers are checked there."""

    leaves: int = field(default=5000, metadata=field_help("number of leaves = sequences"))
    length: int = field(default=200, metadata=field_help("root sequence length in bases"))
    tree: str = field(default="yule", metadata=field_help(f"tree shape: {_one_of('tree')}"))
    height: float = field(default=1.0, metadata=field_help("root-to-leaf distance in substitutions per site"))
    birth: float = field(default=1.0, metadata=field_help("birth rate of --tree birth-death"))
    death: float = field(default=0.5, metadata=field_help("death rate of --tree birth-death, <= birth"))
    model: str = field(default="hky85", metadata=field_help(f"substitution model: {_one_of('model')}"))
    kappa: float | None = field(
        default=None, metadata=field_help("transition/transversion ratio of k80 and hky85; unset: 2.0")
    )
    freqs: list[float] | None = field(
        default=None,
        metadata=field_help("base frequencies of hky85: 4 numbers (A C G T) summing to 1; unset: 0.3 0.2 0.2 0.3"),
    )
    gamma: float | None = field(
        default=None, metadata=field_help("shape (alpha) of gamma-distributed site rates; unset: equal rates")
    )
    categories: int = field(default=4, metadata=field_help("discrete gamma rate categories"))
    indel_rate: float = field(default=0.0, metadata=field_help("indel events per site per substitution unit"))
    indel_length: float = field(default=2.0, metadata=field_help("mean indel length, geometric"))
    fixed_length: bool = field(
        default=False, metadata=field_help("cut or pad (random bases) every sequence to --length")
    )
    root: str | None = field(default=None, metadata=field_help("root sequence (ACGT); overrides --length"))
    label: str = field(
        default="clade", metadata=field_help(f"class = clade of the tree, or a planted motif: {_one_of('label')}")
    )
    classes: int = field(default=2, metadata=field_help("number of classes"))
    clades: int | None = field(
        default=None, metadata=field_help("clades to cut the tree into, dealt to the classes; unset: --classes")
    )
    motif_length: int = field(default=8, metadata=field_help("motif length for --label motif"))
    fractions: list[float] = field(
        default=(0.8, 0.1, 0.1), metadata=field_help("split fractions: 3 numbers (train dev test) summing to 1")
    )
    seed: int = field(default=0, metadata=field_help("random seed (the same seed gives the same files)"))

    def validate(self) -> None:
        for name in SIMULATE_CHOICES:
            if getattr(self, name) not in SIMULATE_CHOICES[name]:
                raise InputError(f"{name}={getattr(self, name)!r} is invalid; expected one of {_one_of(name)}")
        for name, size, items in (("freqs", 4, "A C G T"), ("fractions", 3, "train dev test")):
            value = getattr(self, name)
            if value is not None and len(value) != size:
                raise InputError(f"{name}={value!r} is invalid; expected {size} numbers ({items})")

    def keywords(self) -> dict[str, Any]:
        """These settings as the keyword arguments of ``biostrata.data.simulate.simulate_dataset``."""
        renamed = {"leaves": "n_leaves", "classes": "n_classes", "clades": "n_clades"}
        return {renamed.get(k, k): v for k, v in dataclasses.asdict(self).items()}
