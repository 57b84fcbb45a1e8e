import pandas as pd

from biostrata.config import DemoSettings
from biostrata.demo import run_demo


def test_small_demo_end_to_end(tmp_path, capsys):
    settings = DemoSettings(
        leaves=240,
        length=40,
        classes=2,
        tree="yule",
        height=0.5,
        epochs=2,
        delta_points=60,
        progress=False,
        parallel=False,
    )
    table = run_demo(tmp_path, settings)
    # the test split holds fewer than delta_points sequences: the number actually used is printed
    test_size = len((tmp_path / "data" / "test.csv").read_text().splitlines()) - 1
    assert test_size < settings.delta_points
    assert f"[3/3] Gromov delta of the test embeddings ({test_size} points)" in capsys.readouterr().out
    assert list(table["model"]) == ["cnn", "hcnn-s"]
    assert table["test_mcc"].between(-1, 1).all()
    assert (table["delta"] >= 0).all() and table["relative_delta"].between(0, 1).all()
    for name in (
        "summary.csv",
        "summary.md",
        "summary.png",
        "data/train.csv",
        "data/tree.nwk",
        "runs/hcnn-s/model.safetensors",
    ):
        assert (tmp_path / name).is_file(), name
    assert pd.read_csv(tmp_path / "summary.csv").shape == (2, table.shape[1])
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
