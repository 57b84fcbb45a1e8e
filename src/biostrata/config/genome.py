"""Settings of the genome line: a genome classifier's training, the demo, the conditions study and
simulated datasets (see :mod:`biostrata.settings`). Loads no torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biostrata.config.precision import PRECISIONS
from biostrata.settings import Settings, defaults_from, field_help, read_yaml, source_constant

# The genome classifiers a TrainConfig can name, with the geometry of their layers (what a built model's
# ``layer_manifold`` gives: None for euclidean, a Lorentz manifold for lorentz; a test checks the two agree).
# models.genome_cnn.MODELS says how each is built; reports read the geometry here, not from the names.
GENOME_GEOMETRY = {"cnn": "euclidean", "hcnn-s": "lorentz", "hcnn-m": "lorentz"}
GENOME_MODELS = tuple(GENOME_GEOMETRY)
# What a TrainConfig passes to Lightning: its accelerators (its precisions: config.precision.PRECISIONS).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# The batch norms' radius clip of runs and model files made before bn_max_radius existed (their saved
# configs and architectures lack the field): they were trained with it, not with today's default.
LEGACY_RADIUS_CLIP = 5.0
# Seeds run 0..MAX_SEED (NumPy's range; Lightning replaces any other seed with 0, so two runs would be one).
MAX_SEED = 2**32 - 1


#: The functions whose defaults a TrainConfig takes: the genome CNNs' skeleton (both twins), the Lorentz twin's own
#: arguments, and the Trainer (how a run goes).
TRAINING = (
    "biostrata.models.genome_cnn:Skeleton",
    "biostrata.models.genome_cnn:HyperbolicCNN.__init__",
    "biostrata.train.trainer:make_trainer",
)
#: The heads of the genome CNNs (``pool``), read from the module that builds them.
POOLS = source_constant("biostrata.models.genome_cnn:POOLS")


@dataclass
@defaults_from(*TRAINING)
class TrainConfig(Settings):
    """Training of one genome classifier. Defaults are those of Khan et al. (ICLR 2025): the model's are those
    of the functions of :data:`TRAINING`, the others written here."""

    model: str = field(
        default="hcnn-s",
        metadata=field_help("cnn (Euclidean), hcnn-s (Lorentz, one curvature) or hcnn-m (one per block and the head)"),
    )
    length: int | None = field(
        default=None, metadata=field_help("model input length; unset: the longest train or dev sequence")
    )
    truncate: bool = field(default=False, metadata=field_help("cut longer sequences to the length instead of failing"))
    pool: str = field(metadata=field_help("head: flatten (the paper's) or mean"))
    channels: int = field(metadata=field_help("channels per block (Lorentz: time + space dimensions)"))
    kernel_size: int = field(metadata=field_help("convolution width"))
    blocks: int = field(metadata=field_help("residual blocks"))
    hidden: int = field(metadata=field_help("width of the fully connected layer"))
    init_curvature: float = field(metadata=field_help("starting curvature magnitude K"))
    learn_curvature: bool = field(metadata=field_help("learn the curvature"))
    bn_warm_start: bool = field(
        metadata=field_help("running batch-norm statistics start from the first batches (off: the reference)"),
    )
    bn_max_radius: float = field(
        metadata=field_help(
            "Lorentz batch norm: clip of a rescaled point's radius, in units of sqrt(1/K) (10: the reference's cap; "
            "5: outputs within 10 of the origin, the stricter clip of model files that do not name one)"
        ),
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
    accelerator: str = field(metadata=field_help("Lightning accelerator: auto, cpu, gpu"))
    devices: str = field(metadata=field_help("Lightning devices: auto or a number"))
    num_workers: int = field(default=0, metadata=field_help("data-loader worker processes", operational=True))
    progress: bool = field(metadata=field_help("show progress bars", operational=True))

    @staticmethod
    def saved_values(values: dict[str, Any]) -> dict[str, Any]:
        """The fields of a finished run's saved config (a record's or a model file's ``config``, a run's
        config.yaml), which held every field of its time: a field it lacks did not exist yet and takes the
        value runs had then (``bn_max_radius``: LEGACY_RADIUS_CLIP), not today's default."""
        return {"bn_max_radius": LEGACY_RADIUS_CLIP, **values}

    @classmethod
    def from_saved(cls, saved: dict[str, Any] | str | Path, source: str | None = None) -> TrainConfig:
        """The TrainConfig of a finished run's saved fields, or of its config.yaml (see ``saved_values``)."""
        if not isinstance(saved, dict):
            source, saved = str(saved), read_yaml(Path(saved))
        return cls.from_dict(cls.saved_values(saved), source)

    def validate(self) -> None:
        # the Lorentz layers count time + space, so their widths need 2 at least
        width = 1 if GENOME_GEOMETRY.get(self.model) == "euclidean" else 2
        self.require(
            [
                (self.model in GENOME_MODELS, "model", f"one of {', '.join(GENOME_MODELS)}"),
                (self.length is None or self.length >= 1, "length", "a positive integer, or unset"),
                (self.pool in POOLS, "pool", " or ".join(map(repr, POOLS))),
                (self.channels >= width, "channels", f"at least {width} for {self.model}"),
                (self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size", "an odd number (1, 3, 5, ...)"),
                (self.blocks >= 1, "blocks", "at least 1"),
                (self.hidden >= width, "hidden", f"at least {width} for {self.model}"),
                (self.init_curvature > 0, "init_curvature", "> 0"),
                (self.bn_max_radius > 0, "bn_max_radius", "> 0"),
                (self.epochs >= 1, "epochs", "at least 1"),
                (self.batch_size >= 1, "batch_size", "at least 1"),
                (self.lr > 0, "lr", "> 0"),
                (self.weight_decay >= 0, "weight_decay", ">= 0"),
                (self.manifold_lr > 0, "manifold_lr", "> 0"),
                (self.curvature_lr > 0, "curvature_lr", "> 0"),
                (all(m >= 1 for m in self.milestones), "milestones", "epochs >= 1"),
                (0 < self.lr_gamma <= 1, "lr_gamma", "in (0, 1]"),
                (self.warmup_epochs >= 0, "warmup_epochs", ">= 0"),
                (self.patience is None or self.patience >= 1, "patience", "at least 1, or unset"),
                (self.metric in ("mcc", "f1", "accuracy"), "metric", "'mcc', 'f1' or 'accuracy'"),
                (0 <= self.seed <= MAX_SEED, "seed", f"a whole number in 0..{MAX_SEED}"),
                (self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
                (self.accelerator in ACCELERATORS, "accelerator", f"one of {', '.join(ACCELERATORS)}"),
                (
                    _devices_ok(self.devices),
                    "devices",
                    "auto, a number of devices (1, 2, ...), -1 (all) or indices (0,2)",
                ),
                (self.num_workers >= 0, "num_workers", ">= 0 (0: load data in the training process)"),
            ]
        )


def _devices_ok(devices: str) -> bool:
    """Whether Lightning takes ``devices``: auto, -1, a positive number, or comma-separated device indices."""
    if devices in ("auto", "-1") or devices.isdigit() and int(devices) >= 1:
        return True
    parts = devices.rstrip(",").split(",")
    return "," in devices and all(p.strip().isdigit() for p in parts)


@dataclass
class DemoSettings(Settings):
    """Size of the demo. The defaults run in a few minutes on 2 CPU cores."""

    leaves: int = field(default=5000, metadata=field_help("number of sequences"))
    length: int = field(default=200, metadata=field_help("sequence length"))
    classes: int = field(default=4, metadata=field_help("number of clades = classes"))
    tree: str = field(default="balanced", metadata=field_help("tree shape: balanced, yule, birth-death, caterpillar"))
    height: float = field(default=2.0, metadata=field_help("substitutions per site from root to leaf"))
    epochs: int = field(default=12, metadata=field_help("training epochs at most"))
    patience: int | None = field(
        default=4, metadata=field_help("stop when dev MCC has not improved for this many epochs; unset: every epoch")
    )
    lr: float = field(default=1e-3, metadata=field_help("learning rate"))
    delta_points: int = field(default=600, metadata=field_help("test embeddings in the Gromov delta"))
    seed: int = field(default=0, metadata=field_help("seed of simulation and training"))
    progress: bool = field(default=True, metadata=field_help("show progress bars (off when the models train at once)"))
    parallel: bool = field(
        default=True, metadata=field_help("train the two models at once, one CPU thread each (CPU only)")
    )

    def validate(self) -> None:
        self.require(
            [
                (self.leaves >= 2, "leaves", "at least 2"),
                (self.length >= 1, "length", "at least 1"),
                (self.classes >= 2, "classes", "at least 2"),
                (self.classes <= self.leaves, "classes", f"at most leaves ({self.leaves}): one clade each"),
                (self.tree in SIMULATE_CHOICES["tree"], "tree", f"one of {_one_of('tree')}"),
                (self.height > 0, "height", "> 0"),
                (self.epochs >= 1, "epochs", "at least 1"),
                (self.patience is None or self.patience >= 1, "patience", "at least 1, or unset"),
                (self.lr > 0, "lr", "> 0"),
                (self.delta_points >= 4, "delta_points", "at least 4 (the four-point condition)"),
                (0 <= self.seed < MAX_SEED, "seed", f"a whole number in 0..{MAX_SEED - 1} (training uses seed + 1)"),
            ]
        )


@dataclass
class ConditionsSettings(Settings):
    """The base condition, the levels of each factor, and the size of each run."""

    # The factor levels, the base and the seeds choose which datasets and runs a folder holds (each in its own
    # folder, named by its condition and seed), not what a saved one holds: a folder resumes with others.
    shapes: list[str] = field(
        default_factory=lambda: ["balanced", "yule", "caterpillar"],
        metadata=field_help("tree shapes of the shape factor", operational=True),
    )
    heights: list[float] = field(
        default_factory=lambda: [0.5, 1.0, 2.0],
        metadata=field_help("root-to-leaf substitutions per site of the height factor", operational=True),
    )
    depths: list[int] = field(
        default_factory=lambda: [2, 8, 32],
        metadata=field_help("clades dealt into the two classes, of the depth factor", operational=True),
    )
    base_shape: str = field(default="yule", metadata=field_help("tree shape of the base condition", operational=True))
    base_height: float = field(default=1.0, metadata=field_help("height of the base condition", operational=True))
    base_depth: int = field(default=8, metadata=field_help("depth of the base condition", operational=True))
    leaves: int = field(default=2000, metadata=field_help("sequences per dataset"))
    length: int = field(default=100, metadata=field_help("sequence length"))
    epochs: int = field(default=10, metadata=field_help("epochs per run"))
    lr: float = field(default=1e-3, metadata=field_help("learning rate"))
    seeds: list[int] = field(default_factory=lambda: [1, 2], metadata=field_help("training seeds", operational=True))
    delta_points: int = field(default=400, metadata=field_help("test embeddings in the Gromov delta"))

    def validate(self) -> None:
        checks = [(bool(v) and len(set(v)) == len(v), k, "one value or more, each once") for k, v in self._levels()]
        self.require(
            checks
            + [
                (set(self.shapes) <= set(SIMULATE_CHOICES["tree"]), "shapes", f"shapes among {_one_of('tree')}"),
                (self.base_shape in SIMULATE_CHOICES["tree"], "base_shape", f"one of {_one_of('tree')}"),
                (all(h > 0 for h in self.heights), "heights", "heights > 0"),
                (self.base_height > 0, "base_height", "> 0"),
                (all(d >= 2 for d in self.depths), "depths", "depths >= 2 (clades dealt into 2 classes)"),
                (self.base_depth >= 2, "base_depth", "at least 2 (clades dealt into 2 classes)"),
                (self.leaves >= max(self.depths + [self.base_depth]), "leaves", "at least the largest depth"),
                (self.length >= 1, "length", "at least 1"),
                (self.epochs >= 1, "epochs", "at least 1"),
                (self.lr > 0, "lr", "> 0"),
                (all(0 <= seed <= MAX_SEED for seed in self.seeds), "seeds", f"seeds in 0..{MAX_SEED}"),
                (self.delta_points >= 4, "delta_points", "at least 4 (the four-point condition)"),
            ]
        )

    def _levels(self) -> list[tuple[str, list]]:
        return [("shapes", self.shapes), ("heights", self.heights), ("depths", self.depths), ("seeds", self.seeds)]

    def conditions(self) -> list[dict]:
        """One-factor-at-a-time design around the base; the base appears once."""
        base = {"shape": self.base_shape, "height": self.base_height, "depth": self.base_depth}
        out = [dict(base, factor="base")]
        for factor, levels in (("shape", self.shapes), ("height", self.heights), ("depth", self.depths)):
            out += [dict(base, factor=factor, **{factor: v}) for v in levels if v != base[factor]]
        return out


#: The choices of SimulateSettings, read from the simulator's modules' source (written there once; this module
#: imports nothing from biostrata.data).
SIMULATE_CHOICES = {
    "tree": source_constant("biostrata.data.simulation.trees:SHAPES"),
    "model": source_constant("biostrata.data.simulation.evolution:MODELS"),
    "label": source_constant("biostrata.data.simulation.simulate:LABELS"),
}


#: The function a SimulateSettings configures, and the fields it names otherwise.
SIMULATE_DATASET = "biostrata.data.simulation.simulate:simulate_dataset"
_RENAMED = {"leaves": "n_leaves", "classes": "n_classes", "clades": "n_clades"}


def _one_of(name: str) -> str:
    return ", ".join(SIMULATE_CHOICES[name])


def _fractions_ok(fractions: list[float]) -> bool:
    return len(fractions) == 3 and min(fractions) >= 0 and fractions[0] > 0 and abs(sum(fractions) - 1) < 1e-9


@dataclass
@defaults_from(SIMULATE_DATASET, **_RENAMED)
class SimulateSettings(Settings):
    """A labelled DNA dataset simulated along a tree (``biostrata simulate``): the keywords of
    ``biostrata.data.simulation.simulate.simulate_dataset``, whose defaults they take (``leaves``, ``classes`` and
    ``clades`` are its ``n_leaves``, ``n_classes`` and ``n_clades``); numbers are checked there."""

    leaves: int = field(metadata=field_help("number of leaves = sequences"))
    length: int = field(metadata=field_help("root sequence length in bases"))
    tree: str = field(metadata=field_help(f"tree shape: {_one_of('tree')}"))
    height: float = field(metadata=field_help("root-to-leaf distance in substitutions per site"))
    birth: float = field(metadata=field_help("birth rate of tree birth-death"))
    death: float = field(metadata=field_help("death rate of tree birth-death, <= birth"))
    model: str = field(metadata=field_help(f"substitution model: {_one_of('model')}"))
    kappa: float | None = field(metadata=field_help("transition/transversion ratio of k80 and hky85; unset: 2.0"))
    freqs: list[float] | None = field(
        metadata=field_help("base frequencies of hky85: 4 numbers (A C G T) summing to 1; unset: 0.3 0.2 0.2 0.3")
    )
    gamma: float | None = field(
        metadata=field_help("shape (alpha) of gamma-distributed site rates; unset: equal rates")
    )
    categories: int = field(metadata=field_help("discrete gamma rate categories"))
    indel_rate: float = field(metadata=field_help("indel events per site per substitution unit"))
    indel_length: float = field(metadata=field_help("mean indel length, geometric"))
    fixed_length: bool = field(metadata=field_help("cut or pad (random bases) every sequence to the length"))
    root: str | None = field(metadata=field_help("root sequence (ACGT); overrides the length"))
    label: str = field(metadata=field_help(f"class = clade of the tree, or a planted motif: {_one_of('label')}"))
    classes: int = field(metadata=field_help("number of classes"))
    clades: int | None = field(
        metadata=field_help("clades to cut the tree into, dealt to the classes; unset: the number of classes")
    )
    motif_length: int = field(metadata=field_help("motif length for label motif"))
    fractions: list[float] = field(metadata=field_help("split fractions: 3 numbers (train dev test) summing to 1"))
    seed: int = field(metadata=field_help("random seed (the same seed gives the same files)"))

    def validate(self) -> None:
        clades = self.clades or self.classes
        self.require(
            [
                (getattr(self, name) in SIMULATE_CHOICES[name], name, f"one of {_one_of(name)}")
                for name in SIMULATE_CHOICES
            ]
            + [
                (self.freqs is None or len(self.freqs) == 4, "freqs", "4 numbers (A C G T)"),
                (
                    _fractions_ok(self.fractions),
                    "fractions",
                    "3 numbers (train dev test) >= 0, summing to 1, train > 0",
                ),
                # the other numbers are checked by simulate_dataset, under these names; these three it calls n_*
                (self.leaves >= 2, "leaves", "at least 2"),
                (self.classes >= 2, "classes", "at least 2"),
                (self.clades is None or self.clades >= self.classes, "clades", "at least classes, or unset"),
                (clades <= self.leaves, "leaves", f"at least the number of clades ({clades})"),
            ]
        )

    def keywords(self) -> dict[str, Any]:
        """These settings as the keyword arguments of ``biostrata.data.simulation.simulate.simulate_dataset``."""
        return {_RENAMED.get(k, k): v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def file_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A settings file, or the ``simulation.yaml`` a simulation writes (its ``parameters``, the arguments of
        ``simulate_dataset``): ``--config OUT/simulation.yaml`` runs that simulation again."""
        if str(values.get("format", "")).startswith(SIMULATION_FORMAT) and isinstance(values.get("parameters"), dict):
            back = {v: k for k, v in _RENAMED.items()}
            return {back.get(k, k): v for k, v in values["parameters"].items()}
        return values


#: The ``format`` entry of ``simulation.yaml`` (``biostrata.data.simulation.simulate.write_gue``).
SIMULATION_FORMAT = "biostrata simulated dataset"
