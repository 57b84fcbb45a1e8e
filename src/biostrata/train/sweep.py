"""Sweeps: one training run per (task, model, seed), one record per run, resumable.

Layout of a sweep folder ``OUT``::

    OUT/<suite>/<task>/<model>/seed<k>/record.json   the run's record, written when it has finished
    OUT/<suite>/<task>/<model>/seed<k>/train/        the run's training files (config, checkpoint)

A record is written atomically (temporary file, then ``os.replace``) after its run has finished,
so it is either complete or absent: a sweep started again skips every run whose record exists
and loses nothing that had finished. A run killed half-way leaves no record and starts afresh.

Record (JSON object, keys sorted): ``suite, task, model, seed`` (the run); ``metric`` (``"mcc"`` or ``"f1"``)
and ``score`` (its test value); ``metrics`` (everything the training returned); ``params``,
``wall_time_s``, ``best_epoch`` (counted from 1, with ``epochs_from: 1``; records without it counted from 0
and are read as from 1); ``config`` (the run's full training config); ``data`` (task
folder, split sizes, and for Genomic Benchmarks the fraction and seed of the carved dev split);
``code_version`` (``<version>+g<commit>[.dirty]``); ``host``; ``finished_at`` (UTC, ISO 8601).

Backends: ``"local"`` runs in this process, one run after the other; ``"ray"`` sends each run to
a Ray cluster as one task (``num_gpus=1`` per run when the cluster has GPUs) and writes each
record here as soon as its run returns.

:class:`SeedRuns` is the sweep of ``biostrata train``: one model on one task, once per seed, in the
layout of a training run (``OUT/seed<k>/``, or ``OUT`` itself for one run; the run's files there and its
``metrics.json``, written last, as its record).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from biostrata.data.dna.benchmarks import (
    Suite,
    Task,
    check_data,
    input_length,
    load_task,
    missing_files,
    task_files,
)
from biostrata.errors import BiostrataError, InputError, ParameterError, check_fraction
from biostrata.io import atomic_write_json
from biostrata.provenance import code_version

RECORD_NAME = "record.json"
RECORD_KEYS = (
    "suite", "task", "model", "seed", "metric", "score", "metrics", "params", "wall_time_s",
    "best_epoch", "config", "data", "code_version", "host", "finished_at",
)  # fmt: skip
# Set per run by the sweep (metric: model selection on the task's metric of record).
PER_RUN_KEYS = ("model", "seed", "length", "metric")

# train_fn(cfg, splits, out_dir) -> metrics, with keys test_<metric>, params, best_epoch.
TrainFn = Callable[[Any, Any, Path], dict]
# report(run, record): told of each run as it finishes.
Report = Callable[["Run", dict], None]


@dataclass(frozen=True)
class Run:
    """One (task, model, seed) of a suite."""

    suite: str
    task: str
    model: str
    seed: int

    def folder(self, out: str | Path) -> Path:
        return Path(out) / self.suite / self.task / self.model / f"seed{self.seed}"

    def record_path(self, out: str | Path) -> Path:
        return self.folder(out) / RECORD_NAME

    def __str__(self) -> str:
        return f"{self.suite}/{self.task} {self.model} seed {self.seed}"


def read_record(path: str | Path) -> dict:
    """One record, checked to be a JSON object with every key of ``RECORD_KEYS``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not a valid record ({err}); delete it to run that run again") from None
    missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else list(RECORD_KEYS)
    if missing:
        raise InputError(f"{path}: record lacks {', '.join(missing)}; delete it to run that run again")
    if record.setdefault("epochs_from", 0) == 0 and record["best_epoch"] is not None:
        record["best_epoch"] += 1  # written before epochs were counted from 1: read as they are counted now
        record["epochs_from"] = 1
    return record


def read_records(out: str | Path) -> list[dict]:
    """Every record under ``out`` (any depth), in path order."""
    return [read_record(path) for path in sorted(Path(out).rglob(RECORD_NAME))]


def execute_run(run: Run, cfg: Any, splits: Any, train_dir: Path, train_fn: TrainFn, fresh: bool = True) -> dict:
    """Train one run into ``train_dir`` (emptied first if ``fresh``); return its metrics, wall time and host."""
    if fresh:
        shutil.rmtree(train_dir, ignore_errors=True)
    train_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics = train_fn(cfg, splits, train_dir)
    return {
        "metrics": _plain(metrics),
        "wall_time_s": time.perf_counter() - start,
        "host": socket.gethostname(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _plain(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy and torch scalars become Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _config_dict(cfg: Any) -> dict:
    return _plain(dataclasses.asdict(cfg))


def _defaults(cfg: Any) -> dict:
    """The default value of each field of the dataclass ``cfg`` that has one."""
    missing = dataclasses.MISSING
    return _plain(
        {
            f.name: f.default if f.default is not missing else f.default_factory()
            for f in dataclasses.fields(cfg)
            if f.default is not missing or f.default_factory is not missing
        }
    )


@dataclass
class Sweep:
    """Runs of ``models`` x ``seeds`` on ``tasks`` of ``suite``, recorded under ``out``.

    ``config`` is the training config every run starts from (a dataclass such as
    ``biostrata.config.TrainConfig``); each run replaces its ``model``, ``seed``, ``length`` and
    ``metric`` (model selection on the task's metric of record). With ``overwrite`` finished runs are
    run again. A run that fails leaves no record and the others go on (``keep_going``).
    """

    suite: Suite
    tasks: Sequence[Task]
    models: Sequence[str]
    seeds: Sequence[int]
    out: Path
    config: Any
    data_dir: Path | None = None
    dev_fraction: float = 0.1
    split_seed: int = 0
    overwrite: bool = False
    runs: list[Run] = field(init=False)
    keep_going: ClassVar[bool] = True  # a failed run does not stop the others
    fresh: ClassVar[bool] = True  # a run's training folder is emptied before it trains

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for what, items in (("models", self.models), ("seeds", self.seeds), ("tasks", [t.name for t in self.tasks])):
            if not items:
                raise ParameterError(what, f"{what}: give at least one")
            if len(set(items)) != len(items):
                raise ParameterError(what, f"{what}: repeated value in {', '.join(map(str, items))}")
        check_fraction(self.dev_fraction, "dev_fraction")  # before any run, of any suite
        if not dataclasses.is_dataclass(self.config):
            raise ParameterError(
                "config", f"config: give a dataclass such as TrainConfig, not a {type(self.config).__name__}"
            )
        unknown = [k for k in PER_RUN_KEYS if not hasattr(self.config, k)]
        if unknown:
            raise InputError(f"config has no field(s) {', '.join(unknown)}; the sweep sets them per run")
        for model in self.models:
            try:
                dataclasses.replace(self.config, model=model)
            except InputError as err:
                raise ParameterError("models", f"models: {model!r}: {err}") from None
        self.runs = [
            Run(self.suite.name, t.name, m, int(s)) for t in self.tasks for m in self.models for s in self.seeds
        ]

    # -- state ---------------------------------------------------------------------------------

    def _task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

    def _root(self) -> Path:
        return Path(self.data_dir) if self.data_dir is not None else Path(".")

    def folder(self, run: Run) -> Path:
        """The folder of ``run``."""
        return run.folder(self.out)

    def done(self, run: Run) -> bool:
        """Whether ``run`` has finished (its record exists) and ``overwrite`` is off."""
        return not self.overwrite and run.record_path(self.out).is_file()

    def _lacking(self) -> set[str]:
        """The tasks without their data files."""
        return {t.name for t in self.tasks if missing_files(t, self.suite, self._root())}

    def status(self) -> list[tuple[Run, str]]:
        """Each run with ``"done"`` (finished), ``"no data"`` or ``"to run"``."""
        lacking = self._lacking()
        return [(r, "done" if self.done(r) else "no data" if r.task in lacking else "to run") for r in self.runs]

    def describe(self) -> str:
        """The plan as text: one line per run with its status, then the base config."""
        rows = self.status()
        counts = {s: sum(1 for _, st in rows if st == s) for s in ("done", "to run", "no data")}
        width = max(len(r.task) for r, _ in rows)
        mwidth = max(len(r.model) for r, _ in rows)
        lines = [
            f"{self.suite.title}: {len(self.tasks)} task(s) x {len(self.models)} model(s) x {len(self.seeds)} seed(s) "
            f"= {len(rows)} run(s) -> {self.out}",
            f"  {counts['done']} done, {counts['to run']} to run, {counts['no data']} without data",
        ]
        lines += [f"  {r.task:<{width}}  {r.model:<{mwidth}}  seed {r.seed:<4} {st}" for r, st in rows]
        base = {k: v for k, v in _config_dict(self.config).items() if k not in PER_RUN_KEYS}
        lines.append("config: " + ", ".join(f"{k}={v}" for k, v in base.items()))
        if self.suite.layout == "gb":
            lines.append(f"dev split: stratified {self.dev_fraction:g} of train, seed {self.split_seed}")
        return "\n".join(lines)

    def check(self) -> list[Run]:
        """The runs still to do, once the checks made before any run pass: finished records come from this
        sweep's settings (see ``_check_done``), and the tasks to run have their files (``check_data``)."""
        rows = self.status()
        self._check_done(r for r, st in rows if st == "done")
        todo = [r for r, st in rows if st != "done"]
        self._check_data([self._task(n) for n in dict.fromkeys(r.task for r in todo)])
        return todo

    def _check_data(self, tasks: Sequence[Task]) -> None:
        check_data(tasks, self.suite, self._root())

    def _check_done(self, done: Iterable[Run]) -> None:
        """Finished records must come from the same base config and dev split as this sweep."""
        # A key added to the config after a record was written counts as its default there, unless the
        # config class says which value runs had before the key existed (TrainConfig.saved_values).
        defaults = _defaults(self.config)
        saved = getattr(type(self.config), "saved_values", dict)
        for run in done:
            path = run.record_path(self.out)
            record = read_record(path)
            diff = self.config.resume_changes({**defaults, **saved(record["config"])}, PER_RUN_KEYS)
            if record["data"].get("dev_split") != self._dev_split():
                diff.append(f"dev split: {record['data'].get('dev_split')!r} there, {self._dev_split()!r} now")
            if diff:
                raise ParameterError(
                    "out",
                    f"out={self.out}: {path.relative_to(self.out)} was made with other settings ({'; '.join(diff)}); "
                    "resume with the same settings, or give another out",
                )

    def _dev_split(self) -> dict | None:
        return {"fraction": self.dev_fraction, "seed": self.split_seed} if self.suite.layout == "gb" else None

    # -- running -------------------------------------------------------------------------------

    def run(
        self,
        *,
        backend: str = "local",
        train_fn: TrainFn | None = None,
        address: str | None = None,
        cpus_per_run: float = 1,
        gpus_per_run: float | None = None,
        progress: bool = True,
        report: Report | None = None,
        todo: Sequence[Run] | None = None,
    ) -> list[dict]:
        """Run every unfinished run; return the records written now, each also given to ``report`` as its
        run finishes. ``todo``: what :meth:`check` returned, when the caller checked already (so that a
        command checks once); checked here otherwise.

        Runs that fail with a ``BiostrataError`` (bad data, NaN) leave no record; the others go
        on, and the failures are raised together at the end (without ``keep_going``: the first
        is raised at once). ``train_fn`` defaults to ``biostrata.train.run.train``.
        """
        if train_fn is None:
            from biostrata.train.run import train as train_fn
        todo = self.check() if todo is None else list(todo)
        version = code_version()
        if backend == "local":
            results = self._run_local(todo, train_fn, version, progress, report)
        elif backend == "ray":
            results = self._run_ray(todo, train_fn, version, progress, report, address, cpus_per_run, gpus_per_run)
        else:
            raise ParameterError("backend", f"backend={backend!r}: use 'local' or 'ray'")
        records, failures = results
        if failures:
            text = "\n".join(f"  {run}: {err}" for run, err in failures)
            raise BiostrataError(
                f"{len(failures)} of {len(todo)} run(s) failed (no record written; run the sweep again to retry):\n{text}"
            )
        return records

    def _prepare(self, run: Run, splits: Any) -> tuple[Any, dict]:
        """The run's training config and the record's ``data`` entry."""
        task = self._task(run.task)
        cfg = dataclasses.replace(
            self.config, model=run.model, seed=run.seed, length=input_length(task, splits), metric=task.metric
        )
        data = {
            "path": str(task_files(task, self.suite, self._root())[0].parent),
            "sizes": {name: len(part) for name, part in zip(("train", "dev", "test"), splits)},
            "num_classes": splits.num_classes,
            "dev_split": self._dev_split(),
        }
        return cfg, data

    def _record(self, run: Run, cfg: Any, data: dict, result: dict, version: str) -> dict:
        """Build the record of a finished run and write it atomically."""
        task = self._task(run.task)
        metrics = result["metrics"]
        key = f"test_{task.metric}"
        missing = [k for k in (key, "params", "best_epoch") if k not in metrics]
        if missing:
            raise InputError(f"{run}: the training returned no {', '.join(missing)} (it returned {', '.join(metrics)})")
        record = {
            "suite": run.suite,
            "task": run.task,
            "model": run.model,
            "seed": run.seed,
            "metric": task.metric,
            "score": metrics[key],
            "metrics": metrics,
            "params": metrics["params"],
            "wall_time_s": result["wall_time_s"],
            "best_epoch": metrics["best_epoch"],
            "epochs_from": 1,
            "config": _config_dict(cfg),
            "data": data,
            "code_version": version,
            "host": result["host"],
            "finished_at": result["finished_at"],
        }
        atomic_write_json(run.record_path(self.out), record)
        return record

    def _load(self, task_name: str) -> Any:
        return load_task(
            self._task(task_name), self.suite, self._root(), dev_fraction=self.dev_fraction, split_seed=self.split_seed
        )

    def _train_dir(self, run: Run) -> Path:
        """Where ``run`` trains (emptied first)."""
        return self.folder(run) / "train"

    def _finish(self, run: Run, cfg: Any, data: dict, result: dict, version: str, report: Report | None) -> dict:
        """The record of a finished run, written and reported."""
        record = self._record(run, cfg, data, result, version)
        if report is not None:
            report(run, record)
        return record

    def _run_local(self, todo: list[Run], train_fn: TrainFn, version: str, progress: bool, report: Report | None):
        from tqdm.auto import tqdm

        records: list[dict] = []
        failures: list[tuple[Run, str]] = []
        loaded: tuple[str, Any] | None = None
        bar = tqdm(todo, desc=f"sweep {self.suite.name}", unit="run", disable=not progress)
        for run in bar:
            bar.set_postfix_str(f"{run.task} {run.model} seed {run.seed}")
            try:
                if loaded is None or loaded[0] != run.task:
                    loaded = (run.task, self._load(run.task))
                cfg, data = self._prepare(run, loaded[1])
                result = execute_run(run, cfg, loaded[1], self._train_dir(run), train_fn, self.fresh)
                records.append(self._finish(run, cfg, data, result, version, report))
            except BiostrataError as err:
                if not self.keep_going:
                    raise
                failures.append((run, str(err)))
        return records, failures

    def _run_ray(
        self,
        todo: list[Run],
        train_fn: TrainFn,
        version: str,
        progress: bool,
        report: Report | None,
        address: str | None,
        cpus_per_run: float,
        gpus_per_run: float | None,
    ):
        try:
            import ray
        except ImportError:
            raise ParameterError("backend", "backend='ray' needs Ray: pip install 'biostrata[ray]'") from None
        from tqdm.auto import tqdm

        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            if gpus_per_run is None:
                gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(execute_run)
            records: list[dict] = []
            failures: list[tuple[Run, str]] = []
            pending: dict[Any, tuple[Run, Any, dict]] = {}
            for task in dict.fromkeys(r.task for r in todo):
                try:
                    splits = self._load(task)
                except BiostrataError as err:
                    failures += [(r, str(err)) for r in todo if r.task == task]
                    continue
                ref = ray.put(splits)
                for run in (r for r in todo if r.task == task):
                    cfg, data = self._prepare(run, splits)
                    pending[remote.remote(run, cfg, ref, self._train_dir(run), train_fn, self.fresh)] = (run, cfg, data)
            bar = tqdm(total=len(pending), desc=f"sweep {self.suite.name} (ray)", unit="run", disable=not progress)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                run, cfg, data = pending.pop(ready[0])
                try:
                    records.append(self._finish(run, cfg, data, ray.get(ready[0]), version, report))
                except BiostrataError as err:
                    failures.append((run, str(err)))
                bar.update()
            bar.close()
            return records, failures
        finally:
            if started:
                ray.shutdown()


def finished_metrics(folder: Path) -> dict | None:
    """The metrics of the finished training run in ``folder`` (its metrics.json, written last), or None."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None  # unreadable: the run is trained again
    return metrics if isinstance(metrics, dict) and "test_mcc" in metrics else None


@dataclass
class SeedRuns(Sweep):
    """The sweep of ``biostrata train``: ``config.model`` on one task, once per seed, in the layout of a
    training run: ``OUT/seed<k>/`` holds the files of seed k's run (``OUT`` itself, with ``one_run``, for the
    one seed), and its ``metrics.json``, written last by the training, is the run's record. ``load`` reads the
    task (once, when a run needs it; :attr:`splits`). Only the seed is set per run; the first run that fails
    stops the others. Make one with :meth:`of`."""

    load: Callable[[], Any] | None = None
    one_run: bool = False
    # the metrics.json that done() read of each finished run, which _check_done compares
    _finished: dict[Run, dict] = field(default_factory=dict, init=False, repr=False, compare=False)
    keep_going: ClassVar[bool] = False
    fresh: ClassVar[bool] = False  # the training resets what a run writes (OUT itself may hold other files)

    @classmethod
    def of(
        cls, config: Any, seeds: Sequence[int], out: str | Path, load: Callable[[], Any], *, one_run: bool = False,
        overwrite: bool = False,
    ) -> SeedRuns:  # fmt: skip
        """The runs of ``config`` with each of ``seeds`` on the task that ``load`` reads, in ``out``."""
        task = Task("task", "task", None, None, config.metric)
        suite = Suite("task", "the task", "given", "", "", (task,))
        return cls(suite, [task], [config.model], list(seeds), Path(out), config, overwrite=overwrite, load=load,
                   one_run=one_run)  # fmt: skip

    @cached_property
    def splits(self) -> Any:
        """The task's splits, read once."""
        return self.load()

    def folder(self, run: Run) -> Path:
        return self.out if self.one_run else self.out / f"seed{run.seed}"

    def done(self, run: Run) -> bool:
        """Whether ``run`` has finished (its metrics.json is read, and kept for ``_check_done``) and ``overwrite``
        is off."""
        metrics = None if self.overwrite else finished_metrics(self.folder(run))
        if metrics is None:
            self._finished.pop(run, None)
        else:
            self._finished[run] = metrics
        return metrics is not None

    def _lacking(self) -> set[str]:
        return set()

    def _check_data(self, tasks: Sequence[Task]) -> None:
        """The task is read by ``load`` (whose reader checks it) when its first run starts."""

    def _check_done(self, done: Iterable[Run]) -> None:
        """A finished run is skipped only if this sweep would train it the same way: the settings saved beside it
        but the seed (``config.yaml``), and data of the same length and labels (``metrics.json``)."""
        for run in done:
            folder = self.folder(run)
            then = dataclasses.asdict(type(self.config).from_saved(folder / "config.yaml"))
            diff = self.config.resume_changes(then, per_run=("seed",))
            metrics = self._finished[run]  # read by done(), which status() asked just before
            data = {"length": self.config.length or self.splits.max_length, "class_labels": self.splits.labels}
            diff += [f"data {k}: {metrics[k]!r} there, {v!r} now" for k, v in data.items() if metrics.get(k, v) != v]
            if diff:
                raise ParameterError(
                    "out",
                    f"out={self.out}: {'it' if folder == self.out else f'{folder.name}/'} holds a finished run made "
                    f"with other settings ({'; '.join(diff)}); resume with the same settings and data, give "
                    "overwrite=True to train every seed again, or give another out",
                )

    def _load(self, task_name: str) -> Any:
        return self.splits

    def _prepare(self, run: Run, splits: Any) -> tuple[Any, dict]:
        return self.config.replace(seed=run.seed), {}

    def _train_dir(self, run: Run) -> Path:
        return self.folder(run)

    def _record(self, run: Run, cfg: Any, data: dict, result: dict, version: str) -> dict:
        """The run's metrics.json, which the training wrote."""
        return result["metrics"]
