"""Encoders. Every model has ``embed(x)`` returning its penultimate representation."""

from biostrata.models.genome_cnn import MODELS, EuclideanCNN, HyperbolicCNN, build_model

__all__ = ["MODELS", "EuclideanCNN", "HyperbolicCNN", "build_model"]
