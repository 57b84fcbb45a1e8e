"""Encoders. Every model has ``num_layers`` and ``embed(x, layers) -> dict`` (see ``layerwise``)."""

from biostrata.models.genome_cnn import MODELS, EuclideanCNN, HyperbolicCNN, build_model, load_model, save_model

__all__ = ["MODELS", "EuclideanCNN", "HyperbolicCNN", "build_model", "load_model", "save_model"]
