"""docs/python.md runs: its python blocks, in order and in one namespace, on one CPU thread."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from biostrata.threads import cpu_threads

TOUR = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def python_blocks(text: str) -> list[str]:
    """The code of each ```python block of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_python_blocks_are_found() -> None:
    text = "prose\n```python\na = 1\n```\n```\nnot python\n```\n```python\nb = 2\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = 2\n"]


def test_the_python_tour_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the tour's temporary folder goes here
    blocks = python_blocks(TOUR.read_text())
    assert len(blocks) >= 4, "docs/python.md: expected a python block per step"
    namespace: dict = {"__name__": "__tour__"}
    with cpu_threads(1):
        for i, block in enumerate(blocks, 1):
            try:
                exec(compile(block, f"{TOUR.name} block {i}", "exec"), namespace)
            except Exception as error:
                pytest.fail(f"{TOUR.name}, python block {i} raised {error!r}:\n{block}")
    data, reps, model = namespace["data"], namespace["reps"], namespace["model"]
    assert namespace["folder"].parent == tmp_path
    assert sorted(reps) == [0, 1, model.num_layers]
    assert all(x.shape[0] == len(data.sequences) and np.isfinite(x).all() for x in reps.values())
    assert 0 <= namespace["hyperbolicity"]["relative_delta"] <= 1
    assert np.allclose(np.diag(namespace["similarity"].to_numpy()), 1)
    assert (namespace["folder"] / "run" / "metrics.json").is_file()


def test_the_cross_granularity_guide_states_the_current_defaults() -> None:
    """docs/cross_granularity.md once said the token budget was 4096 and that transformers checkpoints were not
    read (#23): its stated defaults are checked against the code."""
    from biostrata.models.batching import DEFAULT_TOKEN_BUDGET

    text = (TOUR.parent / "cross_granularity.md").read_text()
    found = re.search(r"default (\d+) on the CPU, (\d+) on a\s+GPU", text)
    assert found and (int(found[1]), int(found[2])) == (DEFAULT_TOKEN_BUDGET["cpu"], DEFAULT_TOKEN_BUDGET["cuda"])
    assert "checkpoints are not read" not in text and "default 4096" not in text
