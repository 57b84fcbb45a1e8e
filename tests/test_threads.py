"""Tests of biostrata.threads: one place that sets CPU thread counts."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from biostrata.errors import InputError
from biostrata.threads import cpu_threads


def test_a_block_limits_torch_and_native_libraries_and_restores_them() -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(2)  # so that restoring is seen, whatever the suite started with
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.get_num_threads() == before
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    torch.set_num_threads(old)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_counts_are_refused_by_name(bad) -> None:
    with pytest.raises(InputError, match="threads=.*at least 1"), cpu_threads(bad):
        pass
