"""Names moved in this release keep working for one release, with a DeprecationWarning."""

import pytest
import torch


@pytest.mark.parametrize(
    "old_module, name, new_module",
    [
        ("biostrata.report.tables", "write_report", "biostrata.report.summary"),
        ("biostrata.analysis.probes", "read_labels", "biostrata.analysis.probe_files"),
        ("biostrata.analysis.probes", "probe_files", "biostrata.analysis.probe_files"),
    ],
)
def test_moved_names_warn_and_resolve_to_the_new_ones(old_module, name, new_module):
    import importlib

    old, new = importlib.import_module(old_module), importlib.import_module(new_module)
    with pytest.warns(DeprecationWarning, match=f"moved to {new_module}.{name}"):
        assert getattr(old, name) is getattr(new, name)
    with pytest.raises(AttributeError):
        _ = old.no_such_name


def test_clip_radius_function_warns_and_equals_the_manifold_method():
    from biostrata.geometry.lorentz import Lorentz

    m = Lorentz(0.5)
    s = torch.randn(3, 4, 5) * 10
    with pytest.warns(DeprecationWarning, match="manifold.clip_radius"):
        from biostrata.nn.lorentz import clip_radius
    assert torch.allclose(clip_radius(s, m.kk, 1.5), m.clip_radius(s, 1.5))
