"""Encoders. Every model has ``num_layers`` and ``embed(x, layers) -> dict`` (see ``layerwise``)."""

from biostrata.models.genome_cnn import MODELS, EuclideanCNN, GenomeCNN, HyperbolicCNN, build_model, load_model

__all__ = ["MODELS", "EuclideanCNN", "GenomeCNN", "HyperbolicCNN", "build_model", "load_model"]
