"""Learning curves: what training writes per epoch, and proof that the test curve shapes nothing."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from biostrata.config import TrainConfig
from biostrata.data.dna.genome import SequenceSet, Splits, read_gue_dir
from biostrata.train.curves import clip_summary, read_curve
from biostrata.train.run import train


def _with_test_labels(splits: Splits, labels: np.ndarray) -> Splits:
    test = SequenceSet(splits.test.sequences, labels, splits.test.source)
    return Splits(splits.train, splits.dev, test)


@pytest.mark.parametrize("model", ["cnn", "hcnn-s"])
def test_curves_have_one_row_per_epoch_and_agree_with_the_metrics(tiny_task, tmp_path, tiny, model):
    cfg = TrainConfig(model=model, **(tiny | {"epochs": 3, "milestones": [2], "lr_gamma": 0.5}))
    metrics = train(cfg, read_gue_dir(tiny_task), tmp_path)
    curve, test_curve = read_curve(tmp_path / "curve.csv"), read_curve(tmp_path / "test_curve.csv")
    assert [r["epoch"] for r in curve] == [r["epoch"] for r in test_curve] == [1, 2, 3]  # counted from 1
    best = curve[metrics["best_epoch"] - 1]
    # the chosen epoch is the first with the best validation MCC; its numbers are the reported ones
    assert metrics["best_epoch"] == int(np.argmax([r["val_mcc"] for r in curve])) + 1
    assert best["val_mcc"] == pytest.approx(metrics["dev_mcc"])
    assert test_curve[metrics["best_epoch"] - 1]["test_mcc"] == pytest.approx(metrics["test_mcc"])
    assert metrics["epochs_run"] == 3 and metrics["stopped_early"] is False
    assert all(r["train_loss"] > 0 and np.isfinite(r["train_loss"]) for r in curve)
    assert all(-1 <= r["test_mcc"] <= 1 for r in test_curve)
    # the rate each epoch trained at: the decay at milestone 2 shows in epoch 2, not before
    assert [r["lr"] for r in curve] == pytest.approx([cfg.lr, cfg.lr, cfg.lr * 0.5])
    hyperbolic = model != "cnn"
    assert ("curvature_0" in best) == hyperbolic
    shares = metrics["bn_clip_share"]
    assert len(shares) == (2 * tiny["blocks"] if hyperbolic else 0)
    assert all(0 <= s[mode] <= 1 for s in shares.values() for mode in ("train", "val"))
    assert shares == clip_summary(best)


def test_test_labels_change_neither_the_chosen_epoch_nor_the_model(tiny_task, tmp_path, tiny):
    """Scrambling the test labels changes the test curve and nothing that training or selection produce."""
    cfg = TrainConfig(model="hcnn-s", **(tiny | {"epochs": 3}))
    splits = read_gue_dir(tiny_task)
    scrambled = _with_test_labels(splits, np.random.default_rng(0).permutation(splits.test.labels))
    a = train(cfg, splits, tmp_path / "a")
    b = train(cfg, scrambled, tmp_path / "b")
    assert a["best_epoch"] == b["best_epoch"] and a["dev_mcc"] == b["dev_mcc"]
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()
    assert (tmp_path / "a" / "test_curve.csv").read_text() != (tmp_path / "b" / "test_curve.csv").read_text()
    sa = load_file(tmp_path / "a" / "model.safetensors")
    sb = load_file(tmp_path / "b" / "model.safetensors")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_clip_that_acts_is_counted(tiny_task, tmp_path, tiny):
    """With a clip far below the batch's radii, most positions are clipped, and metrics.json says so."""
    cfg = TrainConfig(model="hcnn-s", **(tiny | {"epochs": 1, "bn_max_radius": 0.05}))
    metrics = train(cfg, read_gue_dir(tiny_task), tmp_path)
    shares = [s["train"] for s in metrics["bn_clip_share"].values()]
    assert min(shares) > 0.5
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["bn_clip_share"] == metrics["bn_clip_share"]


@pytest.mark.parametrize("model", ["cnn", "hcnn-s"])
def test_the_test_curve_changes_nothing_in_training(tiny_task, tmp_path, tiny, model, monkeypatch):
    """The same run with and without the per-epoch test pass gives the same weights, to the bit."""
    import biostrata.train.run as run

    cfg = TrainConfig(model=model, **(tiny | {"epochs": 2}))
    splits = read_gue_dir(tiny_task)
    train(cfg, splits, tmp_path / "with")

    class NoTest(run.LearningCurves):
        def __init__(self, out_dir, test=None):
            super().__init__(out_dir, None)

    monkeypatch.setattr(run, "LearningCurves", NoTest)
    train(cfg, splits, tmp_path / "without")
    assert not (tmp_path / "without" / "test_curve.csv").exists()
    sa = load_file(tmp_path / "with" / "model.safetensors")
    sb = load_file(tmp_path / "without" / "model.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
