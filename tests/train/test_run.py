import json

import pytest
import torch
import yaml

from biostrata.config import TrainConfig
from biostrata.data.dna.genome import EncodedSequences, read_gue_dir
from biostrata.errors import InputError, NumericalError
from biostrata.train.module import GenomeClassifier, parameter_groups
from biostrata.train.run import load_run, train


@pytest.mark.parametrize("model", ["cnn", "hcnn-s"])
def test_train_writes_config_metrics_and_a_loadable_model(tiny_task, tmp_path, model, tiny):
    cfg = TrainConfig(model=model, **tiny)
    splits = read_gue_dir(tiny_task)
    out = tmp_path / model
    metrics = train(cfg, splits, out)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("test_mcc", "test_accuracy", "test_f1", "dev_mcc", "best_epoch", "params", "wall_time_s"):
        assert key in metrics
    assert -1 <= metrics["test_mcc"] <= 1 and 1 <= metrics["best_epoch"] <= cfg.epochs
    assert TrainConfig.from_yaml(out / "config.yaml") == cfg
    assert not (out / "checkpoints").exists()
    assert len(metrics["curvatures"]) == (0 if model == "cnn" else 1)
    # the thread setting is recorded; biostrata makes OpenMP threads sleep unless told otherwise
    assert metrics["threads"] == torch.get_num_threads() and metrics["omp_wait_policy"] is not None
    loaded, loaded_cfg = load_run(out)
    assert loaded_cfg == cfg and not loaded.training
    saved = json.loads((out / "config.json").read_text())
    assert saved["architecture"]["length"] == 20 and saved["architecture"]["name"] == model
    assert saved["biostrata"]["family"] == "genome-cnn" and saved["training"]["model"] == model
    assert (out / "model.safetensors").is_file()
    # the saved model reproduces the reported test accuracy
    test = EncodedSequences(splits.test, 20)
    with torch.no_grad():
        from biostrata.data.dna.alphabet import one_hot

        pred = loaded(one_hot(test.indices.long())).argmax(1)
    acc = (pred == test.labels).float().mean().item()
    assert acc == pytest.approx(metrics["test_accuracy"])


def test_same_seed_same_numbers(tiny_task, tmp_path, tiny):
    cfg = TrainConfig(model="hcnn-s", **tiny)
    splits = read_gue_dir(tiny_task)
    a = train(cfg, splits, tmp_path / "a")
    b = train(cfg, splits, tmp_path / "b")
    assert a["test_mcc"] == b["test_mcc"] and a["dev_mcc"] == b["dev_mcc"]


def test_curvature_has_its_own_group_and_is_trained(tiny_task, tiny):
    cfg = TrainConfig(model="hcnn-m", **tiny)
    module = GenomeClassifier(cfg, 20, 2)
    groups = {g["name"]: g for g in parameter_groups(module.model, cfg)}
    assert set(groups) == {"weights", "manifold", "curvature"}
    assert len(groups["curvature"]["params"]) == 3  # 2 blocks + head
    assert groups["curvature"]["lr"] == 1e-4 and groups["curvature"]["weight_decay"] == 0.0
    assert groups["manifold"]["lr"] == 2e-2 and groups["weights"]["weight_decay"] == 0.1
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) == len([p for p in module.parameters() if p.requires_grad])
    opt = module.configure_optimizers()["optimizer"]
    before = [p.detach().clone() for p in groups["curvature"]["params"]]
    x = torch.randint(0, 4, (8, 20))
    loss = torch.nn.functional.cross_entropy(module(x), torch.arange(8) % 2)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in groups["curvature"]["params"])
    opt.step()
    after = groups["curvature"]["params"]
    assert all(abs(float(a - b)) == pytest.approx(1e-4, rel=0.2) for a, b in zip(after, before))


def test_nan_stops_the_run_and_reports_no_metric(tiny_task, tmp_path, monkeypatch, tiny):
    real = GenomeClassifier.forward
    monkeypatch.setattr(GenomeClassifier, "forward", lambda self, idx: real(self, idx) * float("nan"))
    with pytest.raises(NumericalError, match="training loss became nan at epoch 0, batch 0, first non-finite in"):
        train(TrainConfig(model="hcnn-s", **tiny), read_gue_dir(tiny_task), tmp_path / "nan")
    assert not (tmp_path / "nan" / "metrics.json").exists()


def test_first_nonfinite_names_the_layer():
    from biostrata.models import HyperbolicCNN
    from biostrata.train.module import first_nonfinite

    model = HyperbolicCNN(20, 2, channels=6, hidden=8, blocks=2, kernel_size=3)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (4, 20)), 5).float().transpose(1, 2)
    assert first_nonfinite(model, x) == "no module output (the loss itself)"
    with torch.no_grad():
        model.blocks[1].conv2.conv.bias.fill_(float("inf"))
    assert first_nonfinite(model, x) == "parameter blocks.1.conv2.conv.bias"
    with torch.no_grad():
        model.blocks[1].conv2.conv.bias.fill_(1e30)
    where = first_nonfinite(model, x)
    assert where.startswith("blocks.1.") and "its inputs finite: True" in where
    assert model.blocks[1].conv2.space.__func__ is type(model.blocks[1].conv2).space  # unwrapped again


def test_config_yaml_errors(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": "cnn", "epoch": 3}))
    with pytest.raises(InputError, match="unknown key\\(s\\) epoch"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(InputError, match="model='mlp' is invalid"):
        TrainConfig(model="mlp")
    with pytest.raises(InputError, match="config file not found"):
        TrainConfig.from_yaml(tmp_path / "none.yaml")


def test_bf16_mixed_precision_trains_finite(tiny_task, tmp_path, tiny):
    """Mixed precision (bf16 autocast, here on the CPU): Lorentz maths stays finite and on float32."""
    cfg = TrainConfig(model="hcnn-s", precision="bf16-mixed", **tiny)
    metrics = train(cfg, read_gue_dir(tiny_task), tmp_path / "bf16")
    assert -1 <= metrics["test_mcc"] <= 1
    model, _ = load_run(tmp_path / "bf16")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_batch_norm_centres_stay_bounded_after_optimizer_steps(tiny):
    """After every step the batch-norm centres are pulled back within MAX_CENTRE_RADIUS, on the manifold."""
    import math

    from biostrata.nn.lorentz import MAX_CENTRE_RADIUS, LorentzBatchNorm1d

    module = GenomeClassifier(TrainConfig(model="hcnn-s", **tiny), 20, 2)
    bns = [m for m in module.modules() if isinstance(m, LorentzBatchNorm1d)]
    with torch.no_grad():
        for bn in bns:
            bn.beta[1:] = 1e4
            bn.beta[0] = torch.sqrt(bn.manifold.kk + bn.beta[1:].square().sum())
    opt = module.configure_optimizers()["optimizer"]
    torch.nn.functional.cross_entropy(module(torch.randint(0, 4, (8, 20))), torch.arange(8) % 2).backward()
    opt.step()
    for bn in bns:
        k = bn.manifold.kk.detach()
        assert bn.beta[1:].norm() <= torch.sqrt(k) * math.sinh(MAX_CENTRE_RADIUS) * 1.001
        beta = bn.beta.detach().double()
        assert float(beta[0]) == pytest.approx(float(torch.sqrt(k.double() + beta[1:].square().sum())), rel=1e-6)


def test_riemannian_momentum_stays_tangent(tiny):
    """The optimizer keeps each manifold parameter's momentum in its tangent space (<x, m>_L = 0):
    left to float32 transport, it drifted off and grew to 1e14 in long runs."""
    from biostrata.geometry.lorentz import minkowski_inner
    from biostrata.nn.lorentz import LorentzBatchNorm1d

    torch.manual_seed(0)
    module = GenomeClassifier(TrainConfig(model="hcnn-s", **tiny), 20, 2)
    opt = module.configure_optimizers()["optimizer"]
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.randint(0, 4, (8, 20))), torch.arange(8) % 2).backward()
        opt.step()
    for bn in (m for m in module.modules() if isinstance(m, LorentzBatchNorm1d)):
        point, momentum = bn.beta.detach().double(), opt.state[bn.beta]["exp_avg"].double()
        assert abs(float(minkowski_inner(point, momentum, dim=0))) < 1e-6 * (
            1 + float(momentum.norm()) * float(point.norm())
        )


def test_the_schedule_steps_per_batch_with_warmup(tiny):
    cfg = TrainConfig(model="hcnn-s", **(tiny | {"lr": 1e-3, "milestones": [1], "warmup_epochs": 1.0}))
    module = GenomeClassifier(cfg, 20, 2, steps_per_epoch=4)
    sched = module.configure_optimizers()["lr_scheduler"]
    assert sched["interval"] == "step"
    lrs = []
    for _ in range(6):
        lrs.append(sched["scheduler"].optimizer.param_groups[0]["lr"])
        sched["scheduler"].optimizer.step()
        sched["scheduler"].step()
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-4, 1e-4])
    with pytest.raises(InputError, match="warmup_epochs=-1"):
        TrainConfig(warmup_epochs=-1)


def test_model_files_of_the_earlier_format_are_refused_with_a_message(tmp_path):
    """Format /1 held the earlier, non-reference hyperbolic model: loading says so, no traceback."""
    path = tmp_path / "model.pt"
    torch.save({"format": "biostrata-genome-classifier/1", "config": {}, "state_dict": {}}, path)
    with pytest.raises(InputError, match=r"earlier biostrata \(format /1\).*train the model again"):
        load_run(path)
    torch.save({"format": "something else"}, path)
    with pytest.raises(InputError, match="not a biostrata model file"):
        load_run(path)


def test_a_metric_that_comes_out_nan_is_an_error_not_a_number(tiny_task, tmp_path, monkeypatch, tiny):
    import biostrata.train.module as module

    real = module.classification_metrics
    monkeypatch.setattr(module, "classification_metrics", lambda t, p: real(t, p) | {"mcc": float("nan")})
    with pytest.raises(NumericalError, match=r"dev_mcc, test_mcc of the run in .* came out NaN"):
        train(TrainConfig(model="cnn", **tiny), read_gue_dir(tiny_task), tmp_path / "nan")
    assert not (tmp_path / "nan" / "metrics.json").exists() and not (tmp_path / "nan" / "model.safetensors").exists()


def test_ctrl_c_caught_by_lightning_comes_back_out_and_writes_no_metrics(tiny_task, tmp_path, tiny):
    """Lightning catches KeyboardInterrupt, ignores SIGINT and exits 1; train re-raises it and restores Ctrl-C."""
    import signal

    import lightning.pytorch as pl

    class CtrlC(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            raise KeyboardInterrupt

    out = tmp_path / "run"
    train(TrainConfig(model="cnn", **tiny), read_gue_dir(tiny_task), out)  # a finished run, then a rerun of it
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(model="cnn", **tiny), read_gue_dir(tiny_task), out, callbacks=[CtrlC()])
    assert signal.getsignal(signal.SIGINT) is handler
    assert not (out / "metrics.json").exists()  # the rerun removed the old one first


def test_splits_that_cannot_train_a_classifier_are_refused(tiny_task, tmp_path, tiny):
    from biostrata.data.dna.genome import SequenceSet, Splits

    splits = read_gue_dir(tiny_task)
    one = SequenceSet(splits.train.sequences, [1] * len(splits.train), "one.csv")
    with pytest.raises(InputError, match=r"one.csv: every sequence of the train split has label 1"):
        train(TrainConfig(model="cnn", **tiny), Splits(one, splits.dev, splits.test), tmp_path / "one")
    empty = SequenceSet([], [], "simulated dev")
    with pytest.raises(InputError, match=r"simulated dev: the dev split has no sequences"):
        train(TrainConfig(model="cnn", **tiny), Splits(splits.train, empty, splits.test), tmp_path / "empty")
    assert not (tmp_path / "one").exists() and not (tmp_path / "empty").exists()


def test_an_early_stop_is_announced_and_recorded(tiny_task, tmp_path, monkeypatch, capsys):
    """Epochs count from 1 in what train prints and records; a run that patience stops says so."""
    import biostrata.train.module as module
    from biostrata.cli import main

    real = module.classification_metrics
    monkeypatch.setattr(module, "classification_metrics", lambda t, p: real(t, p) | {"mcc": 0.5})  # never improves
    argv = ["train", "--data", str(tiny_task), "--model", "cnn", "--out", str(tmp_path / "r"), "--epochs", "6",
            "--patience", "2", "--channels", "4", "--hidden", "8", "--blocks", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert (metrics["best_epoch"], metrics["epochs_run"], metrics["stopped_early"]) == (1, 3, True)
    assert "(best epoch 1 of 3, dev mcc 0.5000)" in out
    assert "stopped early after 3 of 6 epochs: no better dev mcc in 2 epochs (--patience)" in out


def test_the_progress_bar_counts_epochs_from_1_out_of_the_total(tiny_task, tmp_path, tiny, capfd):
    train(TrainConfig(model="cnn", **(tiny | {"progress": True})), read_gue_dir(tiny_task), tmp_path / "bar")
    shown = "".join(capfd.readouterr())  # Lightning's bar writes to stdout
    assert "Epoch 1/2" in shown and "Epoch 2/2" in shown and "Epoch 0" not in shown
