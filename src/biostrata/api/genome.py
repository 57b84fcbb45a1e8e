"""The genome line: :func:`simulate` a labelled DNA dataset along a tree, :func:`train` a Euclidean or
hyperbolic genome CNN on it (or on any task in the GUE layout).

Imports numpy, torch and Lightning only inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biostrata.errors import InputError, ParameterError

if TYPE_CHECKING:
    from biostrata.config import TrainConfig
    from biostrata.data.dna.genome import Splits
    from biostrata.data.simulation.simulate import SimulatedDataset

__all__ = ["simulate", "train"]

PathLike = str | os.PathLike


def simulate(*, out: PathLike | None = None, **options: Any) -> SimulatedDataset:
    """Simulate a labelled DNA dataset: sequences evolved along a tree, labelled by clade or by a
    planted motif, split train/dev/test by leaf.

    Parameters
    ----------
    out : path, optional
        Folder to write the dataset to in the GUE layout: ``train.csv``, ``dev.csv``, ``test.csv``
        (header ``sequence,label``), ``tree.nwk``, ``leaves.csv`` and ``simulation.yaml``.
    **options
        The keywords of :func:`biostrata.data.simulation.simulate.simulate_dataset`, with its defaults:
        ``n_leaves`` (5000), ``length`` (200), ``tree``
        (``yule``), ``height`` (1.0 substitutions per site, root to leaf), ``model`` (``hky85``),
        ``label`` (``clade`` or ``motif``), ``n_classes`` (2), ``fractions`` ((0.8, 0.1, 0.1)), ``seed``
        (0) and the rest; the same seed gives the same dataset.

    Returns
    -------
    SimulatedDataset
        ``sequences`` (list of ``n_leaves`` str), ``labels`` (int array of shape (n_leaves,)),
        ``clades``, ``rows`` (the row indices of each split), ``tree``; ``to_splits()`` gives the
        :class:`~biostrata.data.dna.genome.Splits` that :func:`train` takes.
    """
    import inspect

    from biostrata.data.simulation.simulate import simulate_dataset, write_gue

    known = inspect.signature(simulate_dataset).parameters
    unknown = [name for name in options if name not in known]
    if unknown:
        raise InputError(f"simulate({unknown[0]}=...): no such option; the options are {', '.join(known)}")
    data = simulate_dataset(**options)
    if out is not None:
        write_gue(data, out)
    return data


def read_task(data: Splits | PathLike | Sequence[PathLike]) -> Splits:
    """The train, dev and test sets of ``data``: :class:`~biostrata.data.dna.genome.Splits` as they are, a
    GUE-layout folder (``train.csv``, ``dev.csv``, ``test.csv``), or three files (train, dev, test: CSV
    ``sequence,label`` or FASTA with ``label=K`` in the headers)."""
    from biostrata.data.dna.genome import Splits, read_gue_dir, read_labelled

    if isinstance(data, Splits):
        return data
    if isinstance(data, (str, os.PathLike)):
        if not Path(data).is_dir():
            raise ParameterError("data", f"data={str(data)!r}: not a folder; give a GUE-layout folder or three files")
        return read_gue_dir(data)
    if isinstance(data, Sequence) and len(data) == 3:
        return Splits(*(read_labelled(f) for f in data))
    raise InputError(
        f"data: got {type(data).__name__}; give Splits, a GUE-layout folder, or three files (train, dev, test)"
    )


def train(
    data: Splits | PathLike | Sequence[PathLike],
    config: TrainConfig | dict | PathLike | None = None,
    *,
    out: PathLike = "runs/train",
    **options: Any,
) -> dict:
    """Train a genome CNN on the train split, keep the epoch with the best validation metric (dev
    only) and evaluate it once on test.

    Parameters
    ----------
    data : Splits, path, or three paths
        The task (see :func:`read_task`); e.g. ``biostrata.simulate(...).to_splits()``.
    config : TrainConfig, dict, or path of a YAML file, optional
        The training settings (default: :class:`biostrata.config.TrainConfig`, the HGE paper's).
    out : path
        Folder of the run: ``config.yaml``, ``config.json`` and ``model.safetensors`` (the selected model:
        the folder is a model folder that ``biostrata.load`` reads), ``curve.csv``, ``test_curve.csv`` and, written last, ``metrics.json``.
    **options
        Fields of ``TrainConfig`` that override ``config``: ``model`` (``cnn``, ``hcnn-s`` or
        ``hcnn-m``), ``epochs``, ``lr``, ``seed``, ...

    Returns
    -------
    dict
        The metrics of ``metrics.json``: ``dev_*`` and ``test_*`` (``mcc``, ``accuracy``, ``f1``) of the
        selected epoch, ``best_epoch``, ``params``, ``curvatures``, ``class_labels``, ...
    """
    from biostrata.config import TrainConfig
    from biostrata.train.run import train as train_run

    if config is None:
        cfg = TrainConfig()
    elif isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = TrainConfig.from_dict(config, "config")
    elif isinstance(config, (str, os.PathLike)):
        cfg = TrainConfig.from_yaml(config)
    else:
        raise InputError(f"config: got {type(config).__name__}; give a TrainConfig, a dict or a YAML file")
    return train_run(cfg.replace(**options) if options else cfg, read_task(data), out)
