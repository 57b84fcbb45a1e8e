import pytest

from biostrata.studies.conditions import ConditionsSettings, condition_name, run_conditions, summarize


@pytest.fixture
def tiny_settings():
    # depth 8: a caterpillar cut into 2 clades has a one-leaf class, in one split only (refused by train)
    return ConditionsSettings(
        shapes=["yule", "caterpillar"], heights=[0.5], depths=[8], base_shape="yule", base_height=0.5, base_depth=8,
        leaves=120, length=30, epochs=1, seeds=[1], delta_points=40,
    )  # fmt: skip


def test_design_is_one_factor_at_a_time(tiny_settings):
    conds = ConditionsSettings().conditions()
    assert conds[0]["factor"] == "base"
    assert len(conds) == 1 + 2 + 2 + 2  # base + the other levels of each factor
    for c in conds[1:]:
        changed = [k for k in ("shape", "height", "depth") if c[k] != conds[0][k]]
        assert changed == [c["factor"]]
    assert [condition_name(c) for c in tiny_settings.conditions()] == ["yule_h0.5_d8", "caterpillar_h0.5_d8"]


def test_sweep_writes_results_and_resumes(tmp_path, tiny_settings):
    table = run_conditions(tmp_path, tiny_settings, progress=False)
    assert len(table) == 2 * 2  # conditions x models x seeds
    assert table["relative_delta"].between(0, 1).all()
    for name in ("conditions.csv", "conditions.md", "conditions.png", "settings.json"):
        assert (tmp_path / name).is_file()
    summary = summarize(table)
    row = summary.iloc[0]
    assert row["gain"] == pytest.approx(row["mcc_hcnn"] - row["mcc_cnn"])
    metrics = tmp_path / "runs" / "caterpillar_h0.5_d8" / "hcnn-s" / "seed1" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    again = run_conditions(tmp_path, tiny_settings, progress=False)
    assert metrics.stat().st_mtime_ns == before  # finished runs are not redone
    assert again.equals(table)
