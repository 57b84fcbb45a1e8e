"""The flat twin of :class:`~biostrata.nn.lorentz.LorentzDistanceHead`, for controls: the same map, the
same start and the same temperature, with Euclidean distances in place of geodesic ones, so that a
comparison of the two isolates the curvature."""

from __future__ import annotations

import math

import torch
from torch import nn

from biostrata.errors import ParameterError
from biostrata.geometry.distances import euclidean_gram_distances


class EuclideanDistanceHead(nn.Module):
    """Logits of states h ``[..., in_features]`` by Euclidean distance to one learned point per class:

        u = W h + b,    logit_c = -|u - p_c| / tau + b_c

    W starts as N(0, sigma^2) with sigma = init_radius / sqrt(dim in_features) and b = 0 (a LayerNorm
    output starts at |u| ~ ``init_radius``), the points p_c as N(0, 1/dim) (|p_c| ~ 1), as in
    :class:`~biostrata.nn.lorentz.LorentzDistanceHead` at curvature 1. Distances by the Gram form
    (:func:`~biostrata.geometry.distances.euclidean_gram_distances`), as the Lorentz head's."""

    def __init__(self, in_features: int, num_classes: int, dim: int | None = None, tau: float = 1.0,
                 init_radius: float = 0.5) -> None:  # fmt: skip
        super().__init__()
        if not tau > 0:
            raise ParameterError("tau", f"tau={tau}: the temperature must be > 0")
        dim = in_features if dim is None else dim
        self.linear = nn.Linear(in_features, dim)
        with torch.no_grad():
            self.linear.weight.normal_(0.0, init_radius / math.sqrt(dim * in_features))
            self.linear.bias.zero_()
        self.prototypes = nn.Parameter(torch.randn(num_classes, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.register_buffer("tau", torch.tensor(float(tau)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return -euclidean_gram_distances(self.linear(h), self.prototypes) / self.tau + self.bias
