import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests use tiny tensors: one thread avoids oversubscription on small CI machines.
torch.set_num_threads(1)

#: Real public data beside the checkout (../shared/data: GUE, TEB, MIBiG clusters, Pfam, GenBank records). The
#: default suite never needs it: a test that reads it takes the ``shared_data`` fixture and is marked
#: ``@pytest.mark.shared_data("genomes", ...)`` with the folders it reads, and is skipped, naming them, without.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


#: set to 1 (.ci/run does) to fail, not skip, the tests of biostrata's C++ kernels where they cannot be used
REQUIRE_NATIVE = "BIOSTRATA_REQUIRE_NATIVE"


def _need_native_kernels() -> None:
    """Skip a test marked ``native_kernels`` where biostrata's C++ kernels cannot be used (switched off, or
    no compiler to build them), naming why; fail it instead with BIOSTRATA_REQUIRE_NATIVE=1."""
    from biostrata.nn import native

    if native.kernels() is not None:
        return
    off = os.environ.get(native.SWITCH) == "0"
    why = f"{native.SWITCH}=0" if off else "they did not build (see the RuntimeWarning)"
    if os.environ.get(REQUIRE_NATIVE) == "1" and not off:
        pytest.fail(f"biostrata's C++ kernels are required ({REQUIRE_NATIVE}=1), but {why}")
    pytest.skip(f"biostrata's C++ kernels: {why}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("native_kernels"):
        _need_native_kernels()
    for mark in item.iter_markers("shared_data"):
        missing = [folder for folder in mark.args if not (SHARED_DATA / folder).exists()]
        if missing:
            pytest.skip(f"real data {', '.join(str(SHARED_DATA / f) for f in missing)} absent (../shared/data)")


@pytest.fixture
def shared_data() -> Path:
    """The folder of real data, ../shared/data (see SHARED_DATA)."""
    return SHARED_DATA


@pytest.fixture
def tiny_task(tmp_path):
    """A GUE-layout folder where class 1 carries a planted motif: learnable in a few epochs."""
    rng = np.random.default_rng(0)
    root = tmp_path / "task"
    root.mkdir()
    for split, n in [("train", 96), ("dev", 32), ("test", 32)]:
        rows = ["sequence,label"]
        for i in range(n):
            seq = list(rng.choice(list("ACGT"), 20))
            label = i % 2
            if label:
                seq[5:11] = "GGGCCC"
            rows.append(f"{''.join(seq)},{label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tiny():
    """Training options of a tiny, fast model."""
    return dict(channels=6, hidden=8, blocks=2, kernel_size=3, epochs=2, batch_size=16, lr=1e-2, progress=False)
