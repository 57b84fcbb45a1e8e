"""Representation files: one reader for every format biostrata writes or takes, and one array out of them.

A :class:`Representations` holds one array ``[n, d_layer]`` per layer for the same ``n`` examples,
and (optionally) the examples' ids. :func:`read_representations` reads:

- ``.npz``: every array but ``ids`` is one layer (named by its key), all with the same rows, and a
  3-d array ``[n, L, d]`` named ``k`` is ``L`` layers ``k.0 .. k.<L-1>``; an optional ``ids`` array
  (strings, one per row) names the rows;
- ``.npy``: one array ``[n, d]`` (one layer, named ``0``) or ``[n, L, d]`` (layers ``0..L-1``);
- ``.h5`` / ``.hdf5``: a biostrata embedding store (:mod:`biostrata.data.embedding_store`): the
  ``pooling`` outputs (default ``mean``) of every stored layer, named by layer number, ids from the
  store; or any other HDF5 file: each dataset is a layer, named by its path;
- ``.csv`` / ``.tsv`` / ``.txt``: a numeric table (one layer, ``0``, e.g. a distance matrix); a
  header row and a first column of names are skipped when they are not numbers;
- a model folder (``save_pretrained``) or ``.pt`` file of a family table (``biostrata embed
  --family-table``: one layer ``table``, ids = Pfam families) or of a domain LM (``biostrata pretrain``, or
  a sequence-models checkpoint; layer ``table`` = its token-table rows of the domains, ids = the domains).

:func:`read_array` gives one 2-d numeric array of such a file with its ids (the input of ``biostrata delta``).

Rows joined by id come in the order of their sorted ids (:meth:`Representations.sorted`,
:meth:`Representations.align`): an analysis of files never depends on the order of their rows.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biostrata.errors import DataNotFoundError, InputError, ParameterError

__all__ = [
    "Representations",
    "read_representations",
    "holds_points",
    "lorentz_table",
    "read_model",
    "read_array",
    "load_array",
    "SUFFIXES",
]

SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".csv", ".tsv", ".txt", ".pt")
# What a .pt representation file is.
PT_FILE = (
    "a family table (`biostrata embed --family-table`) or a domain LM (`biostrata pretrain`, or a sequence-models "
    "checkpoint)"
)


@dataclass
class Representations:
    """Arrays ``layers[name] -> [n, d]`` of the same ``n`` examples, named by ``ids`` if known."""

    layers: dict[str, np.ndarray]
    ids: list[str] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.layers:
            raise InputError(f"{self.source or 'representations'}: no layers")
        for name, x in self.layers.items():
            if np.ndim(x) != 2:
                raise InputError(
                    f"{self.source}: layer {name!r} has shape {np.shape(x)}; expected [examples, features]"
                )
        rows = {len(x) for x in self.layers.values()}
        if len(rows) != 1:
            raise InputError(f"{self.source}: layers have different numbers of rows {sorted(rows)}")
        if not min(rows):
            raise InputError(f"{self.source}: no rows; give a file with at least one example")
        if self.ids is not None:
            if len(self.ids) != rows.pop():
                raise InputError(
                    f"{self.source}: {len(self.ids)} ids for {len(next(iter(self.layers.values())))} rows; give one "
                    "id per row (the 'ids' array), or none"
                )
            if len(set(self.ids)) != len(self.ids):
                raise InputError(f"{self.source}: ids repeat; every row needs its own id")

    def __len__(self) -> int:
        return len(next(iter(self.layers.values())))

    def select(self, names: Sequence[str] | None) -> Representations:
        """Only the named layers (all when ``names`` is None)."""
        if names is None:
            return self
        missing = [str(n) for n in names if str(n) not in self.layers]
        if missing:
            raise InputError(f"{self.source}: no layer(s) {missing}; layers are {list(self.layers)}")
        return Representations({str(n): self.layers[str(n)] for n in names}, self.ids, self.source)

    def finite(self) -> Representations:
        """This, after checking that every layer holds real numbers, none of them NaN or infinite."""
        for name, x in self.layers.items():
            x = np.asarray(x)
            real = np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)
            if not real and x.dtype != bool:
                raise InputError(f"{self.source}: layer {name!r} holds {x.dtype} values, not real numbers")
            # non-finite values per row, counted in blocks of rows (no full-size temporary)
            per_row = np.concatenate([(~np.isfinite(x[lo : lo + 65536])).sum(1) for lo in range(0, len(x), 65536)])
            if per_row.any():
                row = int(np.flatnonzero(per_row)[0])
                which = f"row {row}" + (f", id {self.ids[row]!r}" if self.ids is not None else "")
                raise InputError(
                    f"{self.source}: layer {name!r} has {int(per_row.sum())} NaN or infinite value(s) in "
                    f"{int(np.count_nonzero(per_row))} row(s) (first: {which}); fix or drop those rows"
                )
        return self

    def rows(self, ids: Sequence[str]) -> Representations:
        """The rows of ``ids``, in that order."""
        if self.ids is None:
            raise InputError(f"{self.source}: rows have no ids; cannot select by id")
        index = {s: i for i, s in enumerate(self.ids)}
        missing = [s for s in ids if s not in index]
        if missing:
            raise InputError(f"{self.source}: no row for id(s) {missing[:3]}")
        take = np.array([index[s] for s in ids], dtype=np.int64)
        return Representations({k: np.asarray(v)[take] for k, v in self.layers.items()}, list(ids), self.source)

    def sorted(self) -> Representations:
        """The rows in the order of their sorted ids (as they are without ids): the order in which every
        analysis of files reads them, so that the order of a file's rows never changes a result."""
        if self.ids is None or self.ids == sorted(self.ids):
            return self
        return self.rows(sorted(self.ids))

    def align(self, other: Representations) -> tuple[Representations, Representations]:
        """Both restricted to the shared ids, in sorted order (see :meth:`sorted`); without ids (both)
        the same rows, paired by position."""
        if (self.ids is None) != (other.ids is None):
            with_ids, without = (self, other) if other.ids is None else (other, self)
            raise InputError(
                f"{with_ids.source} has row ids and {without.source} has none, so their rows cannot be joined by "
                "id; give both ids (an 'ids' array in an .npz, or an .h5 store), or neither (rows then pair by position)"
            )
        if self.ids is None or other.ids is None:
            if len(self) != len(other):
                raise InputError(
                    f"{self.source} has {len(self)} rows and {other.source} {len(other)}, and at least one has no ids "
                    "to join them; give ids (an 'ids' array in the .npz) or the same rows"
                )
            return self, other
        shared = sorted(set(self.ids) & set(other.ids))
        if not shared:
            raise InputError(f"{self.source} and {other.source} share no ids")
        return self.rows(shared), other.rows(shared)


def read_representations(path: str | Path, pooling: str = "mean") -> Representations:
    """Read a representation file (formats in the module docstring)."""
    layers, ids = _read_layers(Path(path), pooling)
    return Representations(layers, ids, str(path))


def _read_layers(
    path: Path, pooling: str, model: object | None = None
) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """The arrays of a file, by name, and its row ids if it has them (not checked against each other);
    ``model``: the file's model (:func:`read_model`) when the caller has read it already."""
    from biostrata.models.pretrained import load_pretrained, pretrained_config

    if model is None and (config := pretrained_config(path)) is not None:
        model = load_pretrained(path, config)
    if model is None and not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; give one of {', '.join(SUFFIXES)}")
    if model is None and not path.stat().st_size:
        raise InputError(f"{path}: empty file (0 bytes); write the representations again")
    suffix = path.suffix.lower()
    if model is not None or suffix == ".pt":
        reps = _table_of(read_model(path) if model is None else model, path)
        return reps.layers, reps.ids
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                ids = [str(s) for s in data["ids"]] if "ids" in data.files else None
                arrays = {k: np.asarray(data[k]) for k in data.files if k != "ids"}
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise InputError(f"{path}: not a numpy .npz archive of plain arrays ({err})") from None
        if not arrays:
            raise InputError(
                f"{path}: holds only 'ids' ({len(ids or [])} of them) and no array of representations; save the "
                "arrays beside the ids, e.g. np.savez(path, ids=ids, x=points)"
            )
        return {name: x for key, a in arrays.items() for name, x in _layers_of(a, f"{key}.").items()}, ids
    if suffix == ".npy":
        return _layers_of(_npy(path)), None
    if suffix in (".h5", ".hdf5"):
        return _hdf5(path, pooling)
    if suffix in (".csv", ".tsv", ".txt"):
        return {"0": _table(path)}, None
    raise InputError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _layers_of(x: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    """An array as layers: ``[n, L, d]`` as ``L`` layers ``<prefix>0 .. <prefix><L-1>``; any other one as
    it is, named ``prefix`` without its dot (``0`` when there is none)."""
    if x.ndim == 3:
        return {f"{prefix}{i}": x[:, i] for i in range(x.shape[1])}
    return {prefix.removesuffix(".") or "0": x}


def read_array(
    path: str | Path, key: str | None = None, layer: int | None = None, *, model: object | None = None
) -> Representations:
    """One numeric 2-d array of a representation file, with the file's row ids if it has them (as many as
    rows, each once): the layer named ``key`` (an ``.npz`` array, or one layer ``key.i`` of a 3-d one; an
    HDF5 dataset path; the only one when ``key`` is None), or, of an embedding store, stored ``layer``
    (default the last) of pooling ``key`` (default ``mean``). Returns it as the one layer of a
    :class:`Representations`. ``model``: the file's model (:func:`read_model`) when read already, not read
    again."""
    path = Path(path)
    store = path.suffix.lower() in (".h5", ".hdf5") and path.is_file() and _is_store(path)
    if layer is not None and not store:
        raise ParameterError("layer", f"{path}: layer applies to biostrata embedding stores; use key to pick an array")
    layers, ids = _read_layers(path, (key or "mean") if store else "mean", model)
    names = list(layers)
    what = "dataset" if path.suffix.lower() in (".h5", ".hdf5") else "array"
    flat = [n for n in names if np.ndim(layers[n]) == 2]
    if store:
        name = names[-1] if layer is None else str(layer)
        if name not in layers:
            raise InputError(f"{path}: layer {layer} not stored; the store holds layers {', '.join(names)}")
    elif key is not None:
        if key not in layers:
            raise InputError(f"{path}: no {what} named {key!r}; it holds {', '.join(names) or 'nothing'}")
        name = key
    elif len(names) != 1:
        raise ParameterError(
            "key", f"key: {path} holds {len(names)} {what}s ({', '.join(names)}); choose one (e.g. key={names[0]!r})"
        )
    else:
        name = names[0]
    arr = np.asarray(layers[name])
    if arr.ndim != 2:
        fix = (
            f"choose a 2-d one with key ({', '.join(flat)})"
            if flat
            else "save it as one (a 3-d array [points, layers, coordinates] is read as one array per layer)"
        )
        raise InputError(
            f"{path}: {what} {name!r} has shape {arr.shape}; expected a 2-d array (a distance matrix, or points x "
            f"coordinates): {fix}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{path}: expected real numbers, got dtype {arr.dtype}")
    return Representations({name: arr}, ids, str(path))


def load_array(path: str | Path, key: str | None = None, layer: int | None = None) -> np.ndarray:
    """The array of :func:`read_array`, without its ids."""
    return next(iter(read_array(path, key, layer).layers.values()))


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise InputError(f"{path}: not a plain numeric .npy array ({err or type(err).__name__})") from None


def _is_store(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == "biostrata-embeddings"
    except OSError as err:
        raise InputError(f"{path}: not an HDF5 file ({err})") from None


def _hdf5(path: Path, pooling: str) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """Layers and ids of an embedding store, or every dataset of another HDF5 file (no ids)."""
    import h5py

    if _is_store(path):
        from biostrata.data.embedding_store import EmbeddingStore

        with EmbeddingStore(path) as store:
            return {str(layer): store.array(pooling, layer) for layer in store.layers}, store.ids
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return {name: f[name][()] for name in names}, None


def _table(path: Path) -> np.ndarray:
    import pandas as pd

    sep = "," if path.suffix.lower() == ".csv" else None
    try:
        df = pd.read_csv(path, header=None, sep=sep, engine="python" if sep is None else "c", comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a numeric table ({err})") from None

    def numeric(values: Sequence) -> bool:
        return bool(pd.to_numeric(pd.Series(values), errors="coerce").notna().all())

    if len(df) and not numeric(df.iloc[0, 1:]):
        df = df.iloc[1:]  # header row
    if df.shape[1] > 1 and not numeric(df.iloc[:, 0]):
        df = df.iloc[:, 1:]  # a column of names
    values = df.apply(pd.to_numeric, errors="coerce")
    bad = np.argwhere(values.isna().to_numpy())
    if len(bad):
        r, c = bad[0]
        raise InputError(f"{path}:{df.index[r] + 1}: column {df.columns[c] + 1}: {df.iat[r, c]!r} is not a number")
    return values.to_numpy(dtype=np.float64)


def read_model(path: str | Path) -> object | None:
    """The family table or domain LM of a model folder (``save_pretrained``) or a ``.pt`` file, read once;
    None for any other file."""
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.hub import load_torch_file
    from biostrata.models.init_table import FamilyTable
    from biostrata.models.pretrained import load_pretrained, pretrained_config

    path = Path(path)
    config = pretrained_config(path)
    if config is not None:
        return load_pretrained(path, config)
    if path.suffix.lower() != ".pt" or not path.is_file():
        return None
    data = load_torch_file(path, PT_FILE)
    if isinstance(data, dict) and "vectors" in data and "families" in data:
        return FamilyTable.from_saved(data, str(path))
    if isinstance(data, dict) and "model_state_dict" in data:
        return DomainLM.from_checkpoint(data, str(path))
    raise InputError(f"{path}: a torch file, but neither kind this reads; expected {PT_FILE}")


def holds_points(path: str | Path) -> bool:
    """Whether a representation file holds points by its nature (never a distance matrix): a biostrata
    embedding store, or a model's table (a model folder, a ``.pt`` file)."""
    from biostrata.models.pretrained import is_pretrained

    path = Path(path)
    suffix = path.suffix.lower()
    return is_pretrained(path) or suffix == ".pt" or (suffix in (".h5", ".hdf5") and path.is_file() and _is_store(path))


def lorentz_table(path: str | Path, model: object | None = None) -> tuple[np.ndarray, list[str], float] | None:
    """The token table of a Lorentz domain LM file (a model folder or a ``.pt`` checkpoint) as points on its
    hyperboloid ``<x, x>_L = -1/K``, time first, ``float64 [domains, 1 + d_embed]``, with the domains as ids
    and ``K``; None for any other file. (Its ``table`` layer, what :func:`read_representations` gives, holds
    the tangent vectors ``log_o(x)`` that the model's body reads.) ``model``: the file's model
    (:func:`read_model`) when read already, not read again."""
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.pretrained import load_pretrained, pretrained_config

    path = Path(path)
    config = pretrained_config(path)
    if config is not None and config.get("architecture", {}).get("geometry") != "lorentz":
        return None  # told by its config, without loading the model
    if model is None:
        model = load_pretrained(path, config) if config is not None else read_model(path)
    if not (isinstance(model, DomainLM) and model.geometry == "lorentz"):
        return None
    points = model.table_points().detach().double().numpy()[model.vocab.domain_slice]
    return points, list(model.vocab.domains), float(model.config["curvature"])


def _table_of(model: object, path: Path) -> Representations:
    """Layer ``table`` of a family table (its vectors) or a domain LM (its domains' token-table rows)."""
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.init_table import FamilyTable

    if isinstance(model, FamilyTable):
        return Representations({"table": model.vectors.double().numpy()}, list(model.families), str(path))
    if isinstance(model, DomainLM):
        rows = model.table.weight.detach().double().numpy()[model.vocab.domain_slice]
        return Representations({"table": rows}, list(model.vocab.domains), str(path))
    raise InputError(f"{path}: a {type(model).__name__} has no table of vectors; expected {PT_FILE}")
