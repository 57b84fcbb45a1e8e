"""The flat distance head: its logits are those of the Gram form it had written inline."""

import pytest
import torch

from biostrata.nn.distance import EuclideanDistanceHead


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logits_and_gradients_are_those_of_the_inline_gram_form(dtype):
    torch.manual_seed(0)
    head = EuclideanDistanceHead(6, 5, dim=4, tau=0.7).to(dtype)
    with torch.no_grad():
        head.bias.copy_(torch.randn(5))
    h = torch.randn(3, 2, 6, dtype=dtype)

    def before(head: EuclideanDistanceHead, h: torch.Tensor) -> torch.Tensor:  # the forward of earlier releases
        u = head.linear(h)
        p = head.prototypes
        square = (u * u).sum(-1, keepdim=True) - 2 * u @ p.T + (p * p).sum(-1)
        return -torch.sqrt(square.clamp_min(1e-12)) / head.tau + head.bias

    got, ref = head(h), before(head, h)
    assert got.dtype == dtype and torch.equal(got, ref)
    grads = [torch.autograd.grad(out.square().sum(), list(head.parameters())) for out in (got, ref)]
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
