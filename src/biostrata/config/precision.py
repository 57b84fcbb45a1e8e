"""The one vocabulary of numeric precisions: every name a user may give, for training (``TrainConfig.precision``,
handed to Lightning) and for embedding (:mod:`biostrata.models.batching`), and the Lightning name it means. A name
means the same in both: ``bf16`` is bfloat16 autocast over float32 weights, Lightning's ``bf16-mixed``. Loads
no torch."""

#: name -> Lightning's name: Lightning's own names, its older short forms, and the short names embedding took first
PRECISIONS = {
    "32-true": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed",
    "bf16-true": "bf16-true", "16-true": "16-true", "64-true": "64-true",
    "32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed", "64": "64-true",
    "fp32": "32-true", "fp16": "16-mixed",
}  # fmt: skip
