import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from biostrata.cli import main
from biostrata.config import TrainConfig
from biostrata.data.dna.benchmarks import custom_suite
from biostrata.errors import BiostrataError, InputError
from biostrata.train.run import train
from biostrata.train.sweep import RECORD_KEYS, Run, Sweep, read_records

TINY = dict(epochs=1, batch_size=8, channels=4, hidden=8, progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tasks(root: Path, tasks=("a", "b"), n: int = 32, length: int = 20) -> Path:
    """GUE-layout task folders; the class shows in the first bases, so a model can learn it."""
    rng = np.random.default_rng(0)
    for task in tasks:
        for split in ("train", "dev", "test"):
            rows = []
            for i in range(n):
                label = i % 2
                body = "".join(rng.choice(list("ACGT"), length - 4))
                rows.append(f"{'GGGG' if label else 'AAAA'}{body},{label}\n")
            path = root / task / f"{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("sequence,label\n" + "".join(rows))
    return root


def make_sweep(data: Path, out: Path, models=("cnn",), seeds=(1, 2), **changes) -> Sweep:
    suite = custom_suite(data)
    return Sweep(suite, suite.tasks, list(models), list(seeds), out, TrainConfig(**(TINY | changes)))


def record_set(out: Path) -> dict[tuple, dict]:
    return {(r["task"], r["model"], r["seed"]): r for r in read_records(out)}


def test_plan_is_task_major_with_one_folder_per_run(tmp_path):
    sweep = make_sweep(write_tasks(tmp_path / "data"), tmp_path / "out", models=("cnn", "hcnn-s"), seeds=(3, 1))
    assert [(r.task, r.model, r.seed) for r in sweep.runs][:4] == [
        ("a", "cnn", 3),
        ("a", "cnn", 1),
        ("a", "hcnn-s", 3),
        ("a", "hcnn-s", 1),
    ]
    assert len(sweep.runs) == 8
    assert Run("data", "a", "cnn", 3).record_path(tmp_path / "out") == tmp_path / "out/data/a/cnn/seed3/record.json"
    with pytest.raises(InputError, match=r"^models: repeated value"):
        make_sweep(tmp_path / "data", tmp_path / "out", models=("cnn", "cnn"))
    with pytest.raises(InputError, match=r"^models: 'cnn2'.*one of cnn, hcnn-s, hcnn-m"):
        make_sweep(tmp_path / "data", tmp_path / "out", models=("cnn2",))
    with pytest.raises(InputError, match=r"^seeds: give at least one"):
        make_sweep(tmp_path / "data", tmp_path / "out", seeds=())


def test_records_are_complete_and_resume_skips_finished_runs(tmp_path):
    calls = []

    def counted(cfg, splits, out_dir):
        calls.append((cfg.model, cfg.seed))
        return train(cfg, splits, out_dir)

    sweep = make_sweep(write_tasks(tmp_path / "data", tasks=("a",)), tmp_path / "out")
    records = sweep.run(train_fn=counted, progress=False)
    assert calls == [("cnn", 1), ("cnn", 2)] and len(records) == 2
    for record in records:
        assert set(RECORD_KEYS) <= set(record)
        assert record["score"] == record["metrics"]["test_mcc"] and record["metric"] == "mcc"
        assert record["config"]["model"] == "cnn" and record["config"]["length"] == 20
        assert record["config"]["seed"] == record["seed"] and record["params"] > 0
        assert record["data"]["sizes"] == {"train": 32, "dev": 32, "test": 32}
        assert record["wall_time_s"] > 0 and record["code_version"].startswith("0.")
        folder = Run(**{k: record[k] for k in ("suite", "task", "model", "seed")}).folder(tmp_path / "out")
        assert json.loads((folder / "record.json").read_text()) == record
        assert (folder / "train" / "model.safetensors").is_file()
    assert [st for _, st in sweep.status()] == ["done", "done"]
    assert make_sweep(tmp_path / "data", tmp_path / "out").run(train_fn=counted, progress=False) == []
    assert len(calls) == 2


def test_resume_refuses_records_made_with_other_settings(tmp_path):
    data = write_tasks(tmp_path / "data", tasks=("a",))
    make_sweep(data, tmp_path / "out", seeds=(1,)).run(progress=False)
    with pytest.raises(
        InputError, match=r"^out=\S*out: \S*/seed1/record.json was made with other settings \(epochs: 1 there, 2 now\)"
    ) as err:
        make_sweep(data, tmp_path / "out", seeds=(1, 2), epochs=2).run(progress=False)
    assert err.value.param == "out"


def test_resume_reads_a_key_added_later_as_its_default(tmp_path):
    data = write_tasks(tmp_path / "data", tasks=("a",))
    make_sweep(data, tmp_path / "out", seeds=(1,)).run(progress=False)
    path = Run("data", "a", "cnn", 1).record_path(tmp_path / "out")
    record = json.loads(path.read_text())
    del record["config"]["warmup_epochs"]  # as written before the field existed
    path.write_text(json.dumps(record))
    assert make_sweep(data, tmp_path / "out", seeds=(1,)).run(progress=False) == []
    record["config"]["warmup_epochs"] = 1.0
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"warmup_epochs: 1.0 there, 0.0 now"):
        make_sweep(data, tmp_path / "out", seeds=(1,)).run(progress=False)


def test_a_record_without_the_radius_clip_was_made_with_the_earlier_one(tmp_path):
    """Records written before bn_max_radius existed were trained with the clip at 5: resuming them under
    today's default (10) is refused, under 5 accepted."""
    data = write_tasks(tmp_path / "data", tasks=("a",))
    make_sweep(data, tmp_path / "out", models=("hcnn-s",), seeds=(1,)).run(progress=False)
    path = Run("data", "a", "hcnn-s", 1).record_path(tmp_path / "out")
    record = json.loads(path.read_text())
    del record["config"]["bn_max_radius"]
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"bn_max_radius: 5.0 there, 10.0 now"):
        make_sweep(data, tmp_path / "out", models=("hcnn-s",), seeds=(1,)).run(progress=False)
    assert (
        make_sweep(data, tmp_path / "out", models=("hcnn-s",), seeds=(1,), bn_max_radius=5.0).run(progress=False) == []
    )


def test_failed_run_leaves_no_record_and_the_others_go_on(tmp_path):
    data = write_tasks(tmp_path / "data")
    bad = data / "a" / "test.csv"
    bad.write_text(bad.read_text().replace("\nAAAA", "\nAXAA", 1))
    with pytest.raises(
        BiostrataError, match=r"(?s)2 of 4 run\(s\) failed.*a cnn seed 1: .*invalid character 'X'.*test.csv:2"
    ):
        make_sweep(data, tmp_path / "out").run(progress=False)
    assert sorted(record_set(tmp_path / "out")) == [("b", "cnn", 1), ("b", "cnn", 2)]
    assert not (tmp_path / "out" / "data" / "a" / "cnn" / "seed1" / "record.json").exists()


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    data = write_tasks(tmp_path / "data")
    make_sweep(data, tmp_path / "out", seeds=(1,)).run(progress=False)
    TrainConfig(**TINY).to_yaml(tmp_path / "tiny.yaml")
    capsys.readouterr()
    argv = ["benchmark", "--suite", str(data), "--models", "cnn,hcnn-s", "--seeds", "1", "--out", str(tmp_path / "out"),
            "--dry-run", "--config", str(tmp_path / "tiny.yaml")]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "2 task(s) x 2 model(s) x 1 seed(s) = 4 run(s)" in text and "2 done, 2 to run, 0 without data" in text
    assert "a  cnn     seed 1    done" in text and "b  hcnn-s  seed 1    to run" in text
    assert len(read_records(tmp_path / "out")) == 2
    # what the real run refuses (records of other settings), the dry run refuses too, after the plan
    assert main([*argv, "--epochs", "3"]) == 2
    captured = capsys.readouterr()
    assert "2 done, 2 to run" in captured.out
    assert "seed1/record.json was made with other settings (epochs: 1 there, 3 now)" in captured.err


def test_no_progress_hides_the_sweep_bar(tmp_path, capfd):
    data = write_tasks(tmp_path / "data")
    TrainConfig(**TINY).to_yaml(tmp_path / "tiny.yaml")
    argv = ["benchmark", "--suite", str(data), "--models", "cnn", "--seeds", "1", "--out", str(tmp_path / "out"),
            "--config", str(tmp_path / "tiny.yaml"), "--tasks", "a"]  # fmt: skip
    assert main([*argv, "--no-progress"]) == 0
    assert "sweep" not in capfd.readouterr().err  # the bar of runs (#23: it showed with --no-progress)
    assert main([*argv, "--seeds", "2", "--progress"]) == 0
    assert "sweep" in capfd.readouterr().err


def _wait_for_run_in_progress(out: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until one record exists and another run has started training (its train/ folder exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            "the sweep finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
        )
        try:
            started = {p.parent for p in out.rglob("train") if p.is_dir()}
            done = {p.parent for p in out.rglob("record.json")}
        except FileNotFoundError:  # --out not made yet, or the command's check that it can be made took it away
            started = done = set()
        if done and started - done:
            return
        time.sleep(0.005)
    raise AssertionError("no run in progress seen")


def test_sigkilled_sweep_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    data = write_tasks(tmp_path / "data", n=64)
    TrainConfig(**TINY).to_yaml(tmp_path / "tiny.yaml")
    whole = make_sweep(data, tmp_path / "whole")
    whole.run(progress=False)

    cmd = [sys.executable, "-m", "biostrata.cli", "benchmark", "--suite", str(data), "--models", "cnn",
           "--seeds", "1", "2", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "killed")]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        _wait_for_run_in_progress(tmp_path / "killed", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = record_set(tmp_path / "killed")  # every record there parses and has every key
    assert 1 <= len(before) < 4
    in_progress = [p.parent for p in (tmp_path / "killed").rglob("train") if not (p.parent / "record.json").exists()]
    assert in_progress, "the killed run should have started"

    resumed = Sweep(
        whole.suite, whole.tasks, ["cnn"], [1, 2], tmp_path / "killed", TrainConfig.from_yaml(tmp_path / "tiny.yaml")
    )
    assert len(resumed.run(progress=False)) == 4 - len(before)
    after, reference = record_set(tmp_path / "killed"), record_set(tmp_path / "whole")
    assert sorted(after) == sorted(reference) == [(t, "cnn", s) for t in ("a", "b") for s in (1, 2)]
    for key, record in after.items():
        assert record["config"] == reference[key]["config"]
        assert record["metrics"]["test_mcc"] == pytest.approx(reference[key]["metrics"]["test_mcc"])
        assert record["params"] == reference[key]["params"]
    assert not list((tmp_path / "killed").rglob("*.tmp"))


def test_ray_backend_runs_the_same_sweep(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'biostrata[ray]')")
    data = write_tasks(tmp_path / "data", tasks=("a",))
    local = make_sweep(data, tmp_path / "local")
    local.run(progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = make_sweep(data, tmp_path / "ray").run(backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert sorted((r["task"], r["seed"]) for r in records) == [("a", 1), ("a", 2)]
    on_ray, on_local = record_set(tmp_path / "ray"), record_set(tmp_path / "local")
    assert sorted(on_ray) == sorted(on_local)
    for key, record in on_ray.items():
        assert record["config"] == on_local[key]["config"]
        assert record["metrics"]["test_mcc"] == pytest.approx(on_local[key]["metrics"]["test_mcc"])
        assert (Run("data", *key).folder(tmp_path / "ray") / "train" / "model.safetensors").is_file()


def test_seed_runs_write_the_layout_of_train_and_skip_finished_seeds(tmp_path, monkeypatch):
    """The sweep of `biostrata train --seeds`: OUT/seed<k>/ holds the run's files and its metrics.json is the
    record (no record.json, no train/ folder); a finished seed is skipped; one run (--seed) trains into OUT."""
    from biostrata.data.dna.genome import read_gue_dir
    from biostrata.train.sweep import SeedRuns

    data = write_tasks(tmp_path / "data", tasks=("a",))
    calls, reported = [], []

    def counted(cfg, splits, out_dir):
        calls.append(cfg.seed)
        return train(cfg, splits, out_dir)

    def runs(**kwargs):
        return SeedRuns.of(TrainConfig(model="cnn", **TINY), [1, 2], tmp_path / "out", lambda: read_gue_dir(data / "a"),
                           **kwargs)  # fmt: skip

    metrics = runs().run(train_fn=counted, progress=False, report=lambda run, m: reported.append(run.seed))
    assert calls == reported == [1, 2] and [m["test_mcc"] for m in metrics] == [
        json.loads((tmp_path / "out" / f"seed{k}" / "metrics.json").read_text())["test_mcc"] for k in (1, 2)
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed1", "seed2"]
    assert (tmp_path / "out" / "seed1" / "model.safetensors").is_file() and not list(
        (tmp_path / "out").rglob("record.json")
    )
    (tmp_path / "out" / "seed2" / "metrics.json").unlink()
    assert [st for _, st in runs().status()] == ["done", "to run"]
    runs().run(train_fn=counted, progress=False)
    assert calls == [1, 2, 2]
    import biostrata.train.sweep as sweep_module

    again, reads, read = runs(), [], sweep_module.finished_metrics
    monkeypatch.setattr(sweep_module, "finished_metrics", lambda folder: reads.append(folder.name) or read(folder))
    # each finished run's metrics.json is read once: done() keeps what _check_done compares
    assert again.check() == [] and reads == ["seed1", "seed2"]
    monkeypatch.setattr(again, "check", lambda: pytest.fail("a run checked by its caller is checked again"))
    assert again.run(train_fn=counted, progress=False, todo=[]) == [] and calls == [1, 2, 2]
    monkeypatch.setattr(sweep_module, "finished_metrics", read)
    assert [st for _, st in runs(overwrite=True).status()] == ["to run", "to run"]
    with pytest.raises(
        InputError, match=r"^out=\S*out: seed1/ holds a finished run made with other settings \(epochs: 1 t"
    ) as err:
        SeedRuns.of(TrainConfig(model="cnn", **TINY | {"epochs": 2}), [1], tmp_path / "out",
                    lambda: read_gue_dir(data / "a")).run(progress=False)  # fmt: skip
    assert err.value.param == "out" and "give overwrite=True to train every seed again" in str(err.value)
    one = SeedRuns.of(TrainConfig(model="cnn", seed=7, **TINY), [7], tmp_path / "one", lambda: read_gue_dir(data / "a"),
                      one_run=True)  # fmt: skip
    one.run(progress=False)
    assert (tmp_path / "one" / "metrics.json").is_file() and one.folder(one.runs[0]) == tmp_path / "one"
