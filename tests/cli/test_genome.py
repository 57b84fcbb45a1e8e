"""Bad input to the genome commands (train, benchmark, simulate, demo, report, delta, study conditions): each
case is a one-line ``biostrata: error:`` naming the file, line or option, with exit code 2, never a
traceback or a silent wrong number. Then the behaviours around them: labels that are not 0..C-1, gzip and
genome-long records, reruns (resume, --overwrite) and Ctrl-C. The table is the one in docs/reliability.md."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from biostrata.cli import main
from biostrata.config import ConditionsSettings, TrainConfig
from biostrata.train.sweep import RECORD_KEYS

TINY = ["--channels", "4", "--hidden", "8", "--blocks", "1", "--kernel-size", "3", "--epochs", "1", "--no-progress"]


def task_rows(n: int, labels=(0, 1), length: int = 20, seed: int = 0) -> str:
    """A CSV body whose class shows in the first bases (learnable in an epoch or two)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        head = "GGGG" if i % len(labels) else "AAAA"
        rows.append(f"{head}{''.join(rng.choice(list('ACGT'), length - 4))},{label}\n")
    return "sequence,label\n" + "".join(rows)


def write_task(folder: Path, labels=(0, 1), test_labels=None, length: int = 20, n: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(("train", "dev", "test")):
        split_labels = test_labels if split == "test" and test_labels else labels
        (folder / f"{split}.csv").write_text(task_rows(n, split_labels, length, seed=i))
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Small good and bad inputs, written once for every case."""
    from biostrata.data.dna.genome import read_gue_dir
    from biostrata.train.run import train

    root = tmp_path_factory.mktemp("genome")
    write_task(root / "ok")
    write_task(root / "one", labels=(1,))
    write_task(root / "unseen", test_labels=(0, 1, 2))
    write_task(root / "onedev")
    (root / "onedev" / "dev.csv").write_text(task_rows(8, (0,)))
    write_task(root / "long30", length=30)
    write_task(root / "nocsv")
    (root / "nocsv" / "test.csv").unlink()
    write_task(root / "suite" / "a")
    write_task(root / "suite" / "b")
    (root / "suite" / "b" / "test.csv").unlink()
    write_task(root / "genome")
    with (root / "genome" / "train.csv").open("a") as handle:
        handle.write("A" * 200_000 + ",0\n")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (root / "broken.csv.gz").write_bytes(gzip.compress(b"sequence,label\n" + b"ACGT,0\n" * 500)[:40])
    (root / "header.csv").write_text("seq,lab\nACGT,0\n")
    for name, text in {
        "ten": "epochs: ten\n",
        "fast": "lr: fast\n",
        "zero": "milestones: 0\n",
        "typo": "epoch: 3\n",
    }.items():
        (root / f"{name}.yaml").write_text(text)
    (root / "text.pt").write_text("not a model\n")
    torch.save({"format": "biostrata-protein-lm/1", "state_dict": {}}, root / "other.pt")
    torch.save({"pytorch-lightning_version": "2.6.0", "epoch": 3, "state_dict": {}}, root / "last.ckpt")
    (root / "nomodel").mkdir()
    # a finished single run, and a finished seed of a run with other settings
    (root / "finished").mkdir()
    (root / "finished" / "metrics.json").write_text(json.dumps({"test_mcc": 0.5}))
    (root / "resume" / "seed0").mkdir(parents=True)
    (root / "resume" / "seed0" / "metrics.json").write_text(json.dumps({"test_mcc": 0.5, "length": 20}))
    TrainConfig(model="cnn", epochs=7).to_yaml(root / "resume" / "seed0" / "config.yaml")
    # a benchmark record made with other settings
    record = {k: None for k in RECORD_KEYS} | {"config": asdict(TrainConfig(epochs=99)), "data": {"dev_split": None}}
    (root / "sweep" / "ok" / "ok" / "cnn" / "seed1").mkdir(parents=True)
    (root / "sweep" / "ok" / "ok" / "cnn" / "seed1" / "record.json").write_text(json.dumps(record))
    (root / "corrupt" / "x").mkdir(parents=True)
    (root / "corrupt" / "x" / "record.json").write_text("{not json")
    (root / "empty").mkdir()
    (root / "conditions").mkdir()
    (root / "conditions" / "settings.json").write_text(json.dumps(asdict(ConditionsSettings(epochs=99))))
    # the runs of --seeds 1 2 (started), and a finished demo
    for k in (1, 2):
        (root / "seeds" / f"seed{k}").mkdir(parents=True)
        TrainConfig(model="cnn", seed=k).to_yaml(root / "seeds" / f"seed{k}" / "config.yaml")
    (root / "demo_done").mkdir()
    (root / "demo_done" / "summary.csv").write_text("model,test_mcc\n")
    # representation files for delta
    rng = np.random.default_rng(0)
    np.savez(root / "fewids.npz", ids=np.array(["a", "b"]), x=rng.normal(size=(5, 3)))
    np.savez(root / "idsonly.npz", ids=np.array(["a", "b"]))
    np.save(root / "one.npy", np.zeros((1, 3)))
    np.savez(root / "layers.npz", h=rng.normal(size=(6, 3, 2)), y=np.arange(6))
    torch.set_num_threads(1)
    train(TrainConfig(model="cnn", channels=4, hidden=8, blocks=1, kernel_size=3, epochs=1, progress=False),
          read_gue_dir(root / "ok"), root / "model")  # fmt: skip
    return {"root": str(root)}


def fill(argv: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in argv]


GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc file system here")
TRAIN = ["train", "--data", "{root}/ok", "--out", "{root}/out/train", *TINY]

# (id, argv, regex that the last line of stderr matches after 'biostrata: error: '[, a mark])
CASES = [
    # train: data
    ("train one class", ["train", "--data", "{root}/one", "--out", "{root}/out/t", *TINY],
     r"one/train\.csv: every sequence of the train split has label 1; it needs two labels at least"),
    ("train test label unseen in train", ["train", "--data", "{root}/unseen", "--out", "{root}/out/t", *TINY],
     r"unseen/test\.csv:4: label 2 does not occur in the training split .*train\.csv \(labels 0, 1\)"),
    ("train dev split of one label", ["train", "--data", "{root}/onedev", "--out", "{root}/out/t", *TINY],
     r"onedev/dev\.csv: every sequence of the dev split has label 0; it needs two labels at least for its MCC"),
    ("train folder without test.csv", ["train", "--data", "{root}/nocsv", "--out", "{root}/out/t"],
     r"nocsv: missing test\.csv; a task folder has train\.csv, dev\.csv, test\.csv"),
    ("train binary file", ["train", "--train", "{root}/binary.csv", "--dev", "{root}/ok/dev.csv", "--test",
     "{root}/ok/test.csv", "--out", "{root}/out/t"], r"binary\.csv: not a text file; give a CSV"),
    ("train damaged gzip", ["train", "--train", "{root}/broken.csv.gz", "--dev", "{root}/ok/dev.csv", "--test",
     "{root}/ok/test.csv", "--out", "{root}/out/t"], r"broken\.csv\.gz: a damaged gzip file"),
    ("train wrong CSV header", ["train", "--train", "{root}/header.csv", "--dev", "{root}/ok/dev.csv", "--test",
     "{root}/ok/test.csv", "--out", "{root}/out/t"], r"header\.csv:1: expected a header with a sequence column"),
    ("train 200,000-bp record, flatten head", ["train", "--data", "{root}/genome", "--out", "{root}/out/t"],
     r"genome/train\.csv: sequences of 200000 bp make a flatten head of 3,379,200,000 weights.*use pool='mean', or cut the sequences with length=N and truncate"),
    ("train --data and --train", ["train", "--data", "{root}/ok", "--train", "{root}/ok/train.csv"],
     r"give either --data DIR or --train/--dev/--test files, not both"),
    # train: seeds and reruns
    ("train --seeds 1 1", [*TRAIN, "--seeds", "1", "1"], r"--seeds: seed 1 given more than once; give each seed once"),
    ("train --seeds -1", [*TRAIN, "--seeds", "-1"], r"--seeds: seed -1 is out of range"),
    ("train finished --out again", ["train", "--data", "{root}/ok", "--out", "{root}/finished", *TINY],
     r"--out .*finished: the run finished already \(metrics\.json written\); pass --overwrite"),
    ("train resume, other settings", ["train", "--data", "{root}/ok", "--out", "{root}/resume", "--model", "cnn",
     "--seeds", "0", "1", *TINY], r"out=\S*resume \(--out\): seed0/ holds a finished run made with other settings "
     r"\(.*epochs: 7 there, 1 now.*\); .*give overwrite=True to train every seed again, or give another out$"),
    ("train one run beside --seeds runs", ["train", "--data", "{root}/ok", "--out", "{root}/seeds", "--seed", "5",
     *TINY], r"--out .*seeds: holds the runs of --seeds \(seed1/, seed2/\); one run is not written beside them: "
     r"give --seeds 5 to add seed5/, or another --out"),
    ("train --seeds beside one run", ["train", "--data", "{root}/ok", "--out", "{root}/model", "--seeds", "1", *TINY],
     r"--out .*model: holds one run \(config\.yaml\); the seed<k>/ runs of --seeds are not written beside it"),
    ("train --out under /proc", ["train", "--data", "{root}/ok", "--out", "/proc/biostrata/run", *TINY],
     r"--out /proc/biostrata/run: cannot (make the folder /proc/biostrata|write in /proc) \(.*\); choose another place",
     PROC),
    # train: option values
    ("train --model foo", [*TRAIN, "--model", "foo"], r"model='foo' \(--model\) is invalid; expected one of cnn"),
    ("train --precision bad", [*TRAIN, "--precision", "bad"], r"precision='bad' \(--precision\) is invalid"),
    ("train --devices bad", [*TRAIN, "--devices", "bad"], r"devices='bad' \(--devices\) is invalid; expected auto"),
    ("train --devices 0", [*TRAIN, "--devices", "0"], r"devices='0' \(--devices\) is invalid"),
    ("train --accelerator tpu", [*TRAIN, "--accelerator", "tpu"], r"accelerator='tpu' \(--accelerator\) is invalid"),
    ("train --accelerator gpu", [*TRAIN, "--accelerator", "gpu"],
     r"accelerator='gpu' \(--accelerator\): torch sees no GPU here; use 'cpu' or 'auto'", GPU),
    ("train --threads -1", [*TRAIN, "--threads", "-1"], r"--threads -1: give 1 CPU thread or more"),
    ("train --channels 0", [*TRAIN, "--channels", "0"], r"channels=0 \(--channels\) is invalid; expected at least 2"),
    ("train --kernel-size 0", [*TRAIN, "--kernel-size", "0"], r"kernel_size=0 \(--kernel-size\) is invalid; expected an odd"),
    ("train --kernel-size 4", [*TRAIN, "--kernel-size", "4"], r"kernel_size=4 \(--kernel-size\) is invalid"),
    ("train --blocks 0", [*TRAIN, "--blocks", "0"], r"blocks=0 \(--blocks\) is invalid; expected at least 1"),
    ("train --hidden 0", [*TRAIN, "--hidden", "0"], r"hidden=0 \(--hidden\) is invalid"),
    ("train --epochs 0", [*TRAIN, "--epochs", "0"], r"epochs=0 \(--epochs\) is invalid; expected at least 1"),
    ("train --batch-size 0", [*TRAIN, "--batch-size", "0"], r"batch_size=0 \(--batch-size\) is invalid"),
    ("train --lr nan", [*TRAIN, "--lr", "nan"], r"--lr: nan is not a finite number"),
    ("train --lr-gamma 0", [*TRAIN, "--lr-gamma", "0"], r"lr_gamma=0\.0 \(--lr-gamma\) is invalid; expected in \(0, 1\]"),
    ("train --num-workers -1", [*TRAIN, "--num-workers", "-1"], r"num_workers=-1 \(--num-workers\) is invalid"),
    # train: config files
    ("train config epochs: ten", [*TRAIN[:5], "--config", "{root}/ten.yaml"], r"ten\.yaml: epochs: 'ten' is not a whole number"),
    ("train config lr: fast", [*TRAIN[:5], "--config", "{root}/fast.yaml"], r"fast\.yaml: lr: 'fast' is not a number"),
    ("train config milestones: 0", [*TRAIN[:5], "--config", "{root}/zero.yaml"],
     r"zero\.yaml: milestones=\[0\] is invalid; expected epochs >= 1"),
    ("train config unknown key", [*TRAIN[:5], "--config", "{root}/typo.yaml"],
     r"typo\.yaml: unknown key\(s\) epoch; known keys: "),
    # benchmark
    ("benchmark task folder without test", ["benchmark", "--suite", "{root}/suite", "--out", "{root}/out/b"],
     r"suite/b: has train and dev files but no test file; a task folder holds all three"),
    ("benchmark --suite nope", ["benchmark", "--suite", "nope", "--out", "{root}/out/b"],
     r"suite='nope' \(--suite\): not one of gue, gb, teb and not a folder"),
    ("benchmark --seeds 1 1", ["benchmark", "--suite", "{root}/ok", "--out", "{root}/out/b", "--seeds", "1", "1"],
     r"--seeds: seed 1 given more than once"),
    ("benchmark --models foo", ["benchmark", "--suite", "{root}/ok", "--out", "{root}/out/b", "--models", "foo"],
     r"models \(--models\): 'foo': model='foo' is invalid"),
    ("benchmark --tasks nope", ["benchmark", "--suite", "{root}/ok", "--out", "{root}/out/b", "--tasks", "nope"],
     r"tasks \(--tasks\): ok has no task 'nope'"),
    ("benchmark --dev-fraction 1", ["benchmark", "--suite", "gb", "--data-dir", "{root}", "--out", "{root}/out/b",
     "--dev-fraction", "1"], r"dev_fraction=1\.0 \(--dev-fraction\): give a share strictly between 0 and 1"),
    ("benchmark config epochs: ten", ["benchmark", "--suite", "{root}/ok", "--out", "{root}/out/b", "--config",
     "{root}/ten.yaml"], r"ten\.yaml: epochs: 'ten' is not a whole number"),
    ("benchmark --dry-run, record of other settings", ["benchmark", "--suite", "{root}/ok", "--out", "{root}/sweep",
     "--models", "cnn", "--seeds", "1", "--dry-run"],
     r"out=\S*sweep \(--out\): ok/ok/cnn/seed1/record\.json was made with other settings \(epochs: 99 there, 100 now\)"),
    ("benchmark --dry-run, no data", ["benchmark", "--suite", "gue", "--tasks", "tf/0", "--data-dir", "{root}/empty",
     "--out", "{root}/out/b", "--dry-run"], r"data_dir \(--data-dir\): GUE data not found under .*empty; missing tf/0: .*Point data_dir"),
    # simulate
    ("simulate --leaves 1", ["simulate", "--out", "{root}/out/s", "--leaves", "1"], r"leaves=1 \(--leaves\) is invalid"),
    ("simulate --classes 1", ["simulate", "--out", "{root}/out/s", "--classes", "1"], r"classes=1 \(--classes\) is invalid"),
    ("simulate --clades 1", ["simulate", "--out", "{root}/out/s", "--clades", "1"],
     r"clades=1 \(--clades\) is invalid; expected at least classes, or unset"),
    ("simulate --tree star", ["simulate", "--out", "{root}/out/s", "--tree", "star"], r"tree='star' \(--tree\) is invalid"),
    ("simulate --fractions", ["simulate", "--out", "{root}/out/s", "--fractions", "0.5", "0.5", "0.5"],
     r"fractions=\[0\.5, 0\.5, 0\.5\] \(--fractions\) is invalid; expected 3 numbers \(train dev test\)"),
    ("simulate --out a file", ["simulate", "--out", "{root}/text.pt"], r"--out .*text\.pt: is a file; give a folder"),
    # demo
    ("demo --leaves 0", ["demo", "--out", "{root}/out/d", "--leaves", "0"], r"leaves=0 \(--leaves\) is invalid"),
    ("demo --classes 1", ["demo", "--out", "{root}/out/d", "--classes", "1"], r"classes=1 \(--classes\) is invalid"),
    ("demo --delta-points 2", ["demo", "--out", "{root}/out/d", "--delta-points", "2"],
     r"delta_points=2 \(--delta-points\) is invalid; expected at least 4"),
    ("demo --epochs 0", ["demo", "--out", "{root}/out/d", "--epochs", "0"], r"epochs=0 \(--epochs\) is invalid"),
    ("demo --seed -1", ["demo", "--out", "{root}/out/d", "--seed", "-1"], r"seed=-1 \(--seed\) is invalid"),
    ("demo finished --out", ["demo", "--out", "{root}/demo_done"],
     r"--out .*demo_done: the run finished already \(summary\.csv written\); pass --overwrite to run it again"),
    ("simulate --out under /proc", ["simulate", "--out", "/proc/biostrata/x"],
     r"--out /proc/biostrata/x: cannot (make the folder /proc/biostrata|write in /proc) ", PROC),
    # report
    ("report folder without records", ["report", "{root}/empty"], r"empty: no record\.json found"),
    ("report damaged record", ["report", "{root}/corrupt"], r"x/record\.json: not a valid record"),
    ("report several folders, no --out", ["report", "{root}/empty", "{root}/corrupt"], r"--out: give a folder"),
    ("report missing folder", ["report", "{root}/nowhere"], r"DIR .*nowhere: no such folder"),
    # delta --model
    ("delta --model text file", ["delta", "--model", "{root}/text.pt", "--data", "{root}/ok"],
     r"text\.pt: not a biostrata model file \(torch\.load: .*\); give the folder of a `biostrata train` run"),
    ("delta --model other format", ["delta", "--model", "{root}/other.pt", "--data", "{root}/ok"],
     r"other\.pt: not a biostrata model file \(format 'biostrata-protein-lm/1'; expected biostrata-genome"),
    ("delta --model Lightning checkpoint", ["delta", "--model", "{root}/last.ckpt", "--data", "{root}/ok"],
     r"last\.ckpt: not a biostrata model file \(a Lightning training checkpoint; "),
    ("delta --model missing", ["delta", "--model", "{root}/missing.pt", "--data", "{root}/ok"],
     r"--model .*missing\.pt: no such file or folder"),
    ("delta --model folder without a model", ["delta", "--model", "{root}/nomodel", "--data", "{root}/ok"],
     r"nomodel: neither config\.json nor model\.pt; give the folder of a `biostrata train` run"),
    ("delta --model without --data", ["delta", "--model", "{root}/model"], r"--model and --data go together"),
    ("delta --model, longer sequences", ["delta", "--model", "{root}/model", "--data", "{root}/long30"],
     r"long30/test\.csv:2: a sequence of 30 bp, but the model in .* takes sequences of at most 20 bp; give the task folder the model was trained on"),
    ("delta --points 2", ["delta", "--model", "{root}/model", "--data", "{root}/ok", "--points", "2"],
     r"points=2 \(--points\): give a whole number, 4 or more \(the four-point condition\)"),
    ("delta --samples 0", ["delta", "--calibrate", "10", "--method", "sampled", "--samples", "0"],
     r"samples=0 \(--samples\): give a whole number, 1 or more"),
    ("delta --calibrate 2", ["delta", "--calibrate", "2"], r"calibrate=2 \(--calibrate\): give a whole number, 4 or more \(the four-point condition\)"),
    ("delta --curvature -1", ["delta", "--calibrate", "10", "--curvature", "-1"],
     r"curvature=-1\.0 \(--curvature\): give K > 0 \(the space has curvature -K\)"),
    ("delta --kmer 9", ["delta", "--model", "{root}/model", "--data", "{root}/ok", "--kmer", "9"], r"kmer=9 \(--kmer\): give a whole number from 1 to 8 \(the k-mer size"),
    ("delta --histogram-bases 0", ["delta", "--calibrate", "10", "--histogram", "5", "--histogram-bases", "0"],
     r"histogram_bases=0 \(--histogram-bases\): give a whole number, 1 or more"),
    # delta INPUT
    ("delta fewer ids than rows", ["delta", "{root}/fewids.npz", "--metric", "euclidean"],
     r"fewids\.npz: 2 ids for 5 rows; give one id per row \(the 'ids' array\), or none"),
    ("delta an .npz of ids only", ["delta", "{root}/idsonly.npz"],
     r"idsonly\.npz: holds only 'ids' \(2 of them\) and no array of representations; save the arrays beside"),
    ("delta one point", ["delta", "{root}/one.npy", "--metric", "euclidean"],
     r"one\.npy: 1 point; the Gromov delta needs at least 2 \(its relative delta, 2 delta / diameter, is 0/0"),
    ("delta several arrays", ["delta", "{root}/layers.npz"],
     r"key \(--key\): \S*layers\.npz holds 4 arrays \(h\.0, h\.1, h\.2, y\); choose one \(e\.g\. key='h\.0'\)"),
    ("delta a 1-d array", ["delta", "{root}/layers.npz", "--key", "y"],
     r"layers\.npz: array 'y' has shape \(6,\); expected a 2-d array .*: choose a 2-d one with key \(h\.0, h\.1, h\.2\)"),
    # study conditions
    ("conditions --seeds 1 1", ["study", "conditions", "--out", "{root}/out/c", "--seeds", "1", "1"],
     r"seeds=\[1, 1\] \(--seeds\) is invalid; expected one value or more, each once"),
    ("conditions --shapes star", ["study", "conditions", "--out", "{root}/out/c", "--shapes", "star"],
     r"shapes=\['star'\] \(--shapes\) is invalid"),
    ("conditions --depths 1", ["study", "conditions", "--out", "{root}/out/c", "--depths", "1"],
     r"depths=\[1\] \(--depths\) is invalid; expected depths >= 2"),
    ("conditions --heights 0", ["study", "conditions", "--out", "{root}/out/c", "--heights", "0"],
     r"heights=\[0\.0\] \(--heights\) is invalid"),
    ("conditions --delta-points 1", ["study", "conditions", "--out", "{root}/out/c", "--delta-points", "1"],
     r"delta_points=1 \(--delta-points\) is invalid"),
    ("conditions --threads 0", ["study", "conditions", "--out", "{root}/out/c", "--threads", "0"],
     r"--threads 0: give 1 CPU thread or more"),
    ("conditions resume, other settings", ["study", "conditions", "--out", "{root}/conditions"],
     r"out=\S*conditions \(--out\): holds results made with other settings \(epochs: 99 there, 10 now\); resume with "
     r"the same settings, or give another out"),
]  # fmt: skip


@pytest.mark.parametrize("argv, pattern", [pytest.param(*c[1:3], id=c[0], marks=c[3:]) for c in CASES])
def test_bad_input_is_one_line_naming_it(files, argv, pattern, capsys, monkeypatch):
    monkeypatch.delenv("BIOSTRATA_DATA", raising=False)
    code = main(fill(argv, files))
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert code == 2, err[-2000:]
    assert last.startswith("biostrata: error: "), err[-2000:]
    assert re.search(pattern, last), last
    assert "Traceback" not in err and "trust" not in err


def test_a_refused_command_loads_no_torch():
    """Argument errors answer at once (well under 2 s): torch, Lightning and pandas load only for work."""
    code = (
        "import sys\nfrom biostrata.cli import main\n"
        "for argv in (['train', '--model', 'foo'], ['delta', '--model', 'missing.pt', '--data', 'x'],\n"
        "             ['benchmark', '--suite', 'nope', '--out', 'x'], ['train', '--threads', '0'],\n"
        "             ['train', '--seeds', '1', '1'], ['demo', '--leaves', '0'], ['delta', '--calibrate', '2']):\n"
        "    assert main(argv) == 2, argv\n"
        "print(sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_labels_need_not_run_from_zero(tmp_path, capsys):
    """Labels {0, 5} make a two-class model; the mapping is printed and saved, and the saved model is right."""
    from biostrata.data.dna.alphabet import one_hot
    from biostrata.data.dna.genome import EncodedSequences, read_gue_dir
    from biostrata.train.run import load_run

    data = write_task(tmp_path / "data", labels=(0, 5))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "cnn", *TINY]) == 0
    assert "the model's classes 0, 1 are labels 0, 5 (class_labels)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_classes"] == 2 and metrics["class_labels"] == [0, 5]
    model, _ = load_run(tmp_path / "run")
    assert model.classifier.out_features == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["class_labels"] == [0, 5]
    splits = read_gue_dir(data)
    test = EncodedSequences(splits.test, 20, labels=splits.labels)
    assert sorted(set(test.labels.tolist())) == [0, 1]
    with torch.no_grad():
        pred = model(one_hot(test.indices.long())).argmax(1)
    assert (pred == test.labels).float().mean().item() == pytest.approx(metrics["test_accuracy"])


def test_gzip_and_genome_long_records_are_read(tmp_path, capsys):
    """gzip-compressed CSV and FASTA, and a 200,000-bp record (over Python csv's default field limit)."""
    from biostrata.data.dna.genome import read_gue_dir, read_labelled

    data = write_task(tmp_path / "gz")
    long = "ACGT" * 50_000
    for split in ("train", "dev", "test"):
        path = data / f"{split}.csv"
        text = path.read_text() + (f"{long},1\n" if split == "train" else "")
        (data / f"{split}.csv.gz").write_bytes(gzip.compress(text.encode()))
        path.unlink()
    splits = read_gue_dir(data)
    assert splits.train.source.endswith("train.csv.gz") and max(map(len, splits.train.sequences)) == 200_000
    fasta = tmp_path / "seqs.fa.gz"
    fasta.write_bytes(gzip.compress(f">a label=0\n{long}\n>b|1\nACGT\n".encode()))
    assert [len(s) for s in read_labelled(fasta).sequences] == [200_000, 4]
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), "--model", "cnn", "--length", "20", "--truncate", *TINY]
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["length"] == 20


def test_rerun_resumes_unfinished_seeds_and_refuses_to_overwrite(tiny_task, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["train", "--data", str(tiny_task), "--out", str(out), "--model", "cnn", "--seeds", "0", "1", *TINY]
    assert main(argv) == 0
    first = json.loads((out / "seed1" / "metrics.json").read_text())
    (out / "seed1" / "metrics.json").unlink()  # seed 1 did not finish
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "cnn seed 0: finished already in" in text and "cnn seed 1: test MCC" in text and "over seeds [0, 1]" in text
    assert json.loads((out / "seed1" / "metrics.json").read_text())["test_mcc"] == first["test_mcc"]
    assert main(argv) == 2
    assert "pass --overwrite to train again" in capsys.readouterr().err
    before = (out / "seed0" / "metrics.json").stat().st_mtime_ns
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "seed0" / "metrics.json").stat().st_mtime_ns != before


def test_ctrl_c_keeps_finished_seeds_and_a_rerun_completes(tiny_task, tmp_path):
    """SIGINT in the middle of seed 1's training: exit 130, the resume hint, no metrics.json for seed 1 (Lightning
    catches the interrupt itself; train must not then write metrics), and a rerun trains seed 1 only."""
    out = tmp_path / "runs"
    argv = [sys.executable, "-m", "biostrata.cli", "train", "--data", str(tiny_task), "--out", str(out), "--model",
            "cnn", "--seeds", "0", "1", *TINY, "--epochs", "60", "--batch-size", "8", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Ctrl-C reaches Python as KeyboardInterrupt only if SIGINT is not ignored when it starts, and a shell
    # without job control starts background jobs (e.g. a test run launched with `&`) with SIGINT ignored
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 60
    while not list((out / "seed1" / "checkpoints").glob("*.ckpt")):  # seed 1 is training
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "seed 1 never started training"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert (
        f"biostrata: interrupted: seed 1 did not finish (no metrics.json in {out / 'seed1'}); finished and kept: "
        "seed 0. Run the same command again to resume" in stderr
    )
    assert (out / "seed0" / "metrics.json").is_file() and not (out / "seed1" / "metrics.json").exists()
    assert not (out / "seed1" / "model.safetensors").exists()
    rerun = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "cnn seed 0: finished already" in rerun.stdout and "cnn seed 1: test MCC" in rerun.stdout
    assert (out / "seed1" / "metrics.json").is_file()


def test_delta_of_a_model_draws_the_same_sequences_from_the_same_rows_in_any_order(files, tmp_path, capsys):
    """`delta --model --data` samples --points sequences from the split's sequences in sorted order: the same
    numbers with the rows of test.csv shuffled."""
    data = Path(files["root"]) / "ok"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for split in ("train", "dev", "test"):
        header, *rows = (data / f"{split}.csv").read_text().splitlines()
        np.random.default_rng(1).shuffle(rows)
        (mixed / f"{split}.csv").write_text("\n".join([header, *rows]) + "\n")
    results = []
    for folder in (data, mixed):
        argv = ["delta", "--model", f"{files['root']}/model", "--data", str(folder), "--points", "10", "--json"]
        assert main(argv) == 0
        rows = json.loads(capsys.readouterr().out)
        results.append([{k: v for k, v in r.items() if k not in ("seconds", "witness")} for r in rows])
    assert results[0] == results[1]


def test_the_advice_on_an_array_of_layers_works(files, capsys):
    """A 3-d array [points, layers, coordinates] is one array per layer: --key h.1 picks layer 1."""
    assert main(["delta", f"{files['root']}/layers.npz", "--key", "h.1", "--metric", "euclidean", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 6


def test_one_run_and_seed_runs_never_share_a_folder(files, tmp_path, capsys):
    """`train --seed 5` into a folder of seed<k>/ runs is refused (see the table); the advice, --seeds 5, adds
    seed5/ beside them and trains no other seed."""
    out = tmp_path / "seeds"
    for k in (1, 2):
        (out / f"seed{k}").mkdir(parents=True)
        TrainConfig(model="cnn", seed=k).to_yaml(out / f"seed{k}" / "config.yaml")
    argv = ["train", "--data", f"{files['root']}/ok", "--out", str(out), "--model", "cnn", "--seeds", "5", *TINY]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed1", "seed2", "seed5"]
    assert (out / "seed5" / "metrics.json").is_file() and not (out / "seed1" / "metrics.json").exists()


@pytest.mark.parametrize("module", ["biostrata.cli.genome", "biostrata.config"])
def test_ctrl_c_while_the_command_starts_exits_130_quietly(module):
    """SIGINT while `biostrata` imports its subcommands (biostrata.cli.genome) or builds its parser
    (biostrata.config): exit 130, one line, no KeyboardInterrupt traceback."""
    code = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['biostrata', 'train', '--help']\n"
        "from biostrata.cli import main\n"
        "sys.exit(main())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert (run.returncode, run.stderr, run.stdout) == (130, "biostrata: interrupted\n", "")
