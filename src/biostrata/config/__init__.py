"""The settings of every experiment (see ``biostrata.settings``): a genome classifier's training,
the demo, the conditions study and simulated datasets (:mod:`.genome`); masked-LM pre-training, the
cross-granularity study and genome annotation (:mod:`.sequences`). Loads no torch, so the command
line can build its options.

A config file holds the fields of one settings class; unknown keys are errors. Command-line options
override the file. The settings used are saved beside every result.
"""

from biostrata.config.genome import (
    ACCELERATORS,
    GENOME_GEOMETRY,
    GENOME_MODELS,
    LEGACY_RADIUS_CLIP,
    MAX_SEED,
    SIMULATE_CHOICES,
    ConditionsSettings,
    DemoSettings,
    SimulateSettings,
    TrainConfig,
)
from biostrata.config.precision import PRECISIONS
from biostrata.config.sequences import ANNOTATE_CHOICES, AnnotateSettings, CrossGranularitySettings, PretrainSettings
from biostrata.config.strata import DOMAIN_VARIANTS, STRATA_PARTS, StrataSettings

__all__ = [
    "ACCELERATORS", "ANNOTATE_CHOICES", "DOMAIN_VARIANTS", "GENOME_GEOMETRY", "GENOME_MODELS", "LEGACY_RADIUS_CLIP", "MAX_SEED", "PRECISIONS", "SIMULATE_CHOICES",
    "AnnotateSettings", "ConditionsSettings", "CrossGranularitySettings", "DemoSettings", "PretrainSettings",
    "SimulateSettings", "STRATA_PARTS", "StrataSettings", "TrainConfig",
]  # fmt: skip
