"""Tests of biostrata.train.trainer: the one Trainer set-up."""

from __future__ import annotations

from pathlib import Path

from biostrata.train.trainer import make_trainer


def test_trainer_logs_under_the_run_folder(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, epochs=3, batches_per_epoch=4, accelerator="cpu", progress=False, log_version="")
    assert t.max_epochs == 3 and t.log_every_n_steps == 4 and t.num_sanity_val_steps == 0
    assert Path(t.logger.log_dir) == tmp_path / "logs"
    versioned = make_trainer(tmp_path, epochs=1, batches_per_epoch=100, accelerator="cpu", progress=False)
    assert versioned.log_every_n_steps == 10 and Path(versioned.logger.log_dir).parent == tmp_path / "logs"
