"""End-to-end studies: each one command that reproduces a set of results."""


def device_of(accelerator: str) -> str | None:
    """Where a study's models run outside Lightning, for its ``accelerator`` setting: cpu; gpu or cuda: the
    GPU; mps; auto: a GPU when present (None). A device torch does not see is refused where the models are
    moved to it (:func:`biostrata.models.batching.default_device` says so), not replaced by the CPU."""
    return {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}.get(accelerator)
