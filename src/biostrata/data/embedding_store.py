"""An HDF5 store of layer-wise sequence embeddings, keyed by sequence id, written incrementally.

Layout (one file):

- attributes: ``format = "biostrata-embeddings"``, ``version = 1``, ``model`` (name or path),
  ``layers`` (int array, the model's layer numbers, in the order of the layer axis), ``dim``,
  ``poolings`` (subset of ``mean``, ``bos``, ``per_token``), ``dtype`` of the stored values.
- ``ids`` ``[N]`` UTF-8 strings, row order. A row counts as written once its id is in ``ids``:
  rows are appended data first, ids last, then flushed, so a killed job leaves at most a partial
  batch that reopening discards.
- ``lengths`` ``[N]`` residues (or tokens) embedded per sequence (after truncation).
- ``mean`` and/or ``bos`` ``[N, n_layers, dim]``: pooled outputs.
- ``per_token/<row>`` ``[n_layers, length, dim]``: per-residue outputs, when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from biostrata.errors import DataNotFoundError, InputError, ParameterError

__all__ = ["EmbeddingStore", "merge_stores", "POOLINGS"]

POOLINGS = ("mean", "bos", "per_token")
_FORMAT = "biostrata-embeddings"
_STR = h5py.string_dtype("utf-8")


class EmbeddingStore:
    """Read (``mode="r"``) or append to (``mode="a"``) an embedding store; use :meth:`create`
    to start or resume one."""

    def __init__(self, path: str | Path, mode: str = "r") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataNotFoundError(f"embedding store not found: {self.path}")
        if mode not in ("r", "a"):
            raise ParameterError("mode", f"mode={mode!r}: use 'r' or 'a'")
        self.file = h5py.File(self.path, mode)
        if self.file.attrs.get("format") != _FORMAT:
            self.file.close()
            raise InputError(f"{self.path}: not a biostrata embedding store (format attribute missing)")
        self.layers = [int(x) for x in self.file.attrs["layers"]]
        self.dim = int(self.file.attrs["dim"])
        self.poolings = [str(p) for p in self.file.attrs["poolings"]]
        self.model = str(self.file.attrs["model"])
        n = len(self.file["ids"])
        if mode == "a":
            self._discard_partial(n)
        self._row = {s: i for i, s in enumerate(self.file["ids"].asstr()[:n])}

    @classmethod
    def create(
        cls,
        path: str | Path,
        model: str,
        layers: Sequence[int],
        dim: int,
        poolings: Sequence[str] = ("mean",),
        dtype: str = "float32",
    ) -> EmbeddingStore:
        """Open ``path`` for appending; a new file is laid out, an existing one must match."""
        bad = [p for p in poolings if p not in POOLINGS]
        if bad or not poolings or len(set(poolings)) != len(poolings):
            raise ParameterError("poolings", f"poolings={list(poolings)}: choose from {list(POOLINGS)}, each once")
        if len(set(layers)) != len(layers):
            raise ParameterError("layers", f"layers={list(layers)}: a layer repeats; give each once")
        if dtype not in ("float32", "float16"):
            raise ParameterError("dtype", f"dtype={dtype!r}: use 'float32' or 'float16'")
        path = Path(path)
        if path.exists():
            store = cls(path, "a")
            same = (
                store.layers == [int(x) for x in layers]
                and store.dim == dim
                and store.poolings == list(poolings)
                and store.model == str(model)
            )
            if not same:
                store.close()
                raise InputError(
                    f"{path} exists with model={store.model!r}, layers={store.layers}, dim={store.dim}, "
                    f"poolings={store.poolings}; it cannot be resumed with model={model!r}, "
                    f"layers={list(layers)}, dim={dim}, poolings={list(poolings)}. Use another output path."
                )
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f.attrs.update(
                format=_FORMAT,
                version=1,
                model=str(model),
                layers=np.asarray(layers, dtype=np.int64),
                dim=int(dim),
                poolings=np.asarray(list(poolings), dtype=_STR),
                dtype=dtype,
            )
            f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(4096,))
            f.create_dataset("lengths", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
            for p in poolings:
                if p != "per_token":
                    f.create_dataset(
                        p,
                        shape=(0, len(layers), dim),
                        maxshape=(None, len(layers), dim),
                        dtype=dtype,
                        chunks=(min(256, max(1, 2**20 // (4 * dim))), 1, dim),
                    )
            if "per_token" in poolings:
                f.create_group("per_token")
        return cls(path, "a")

    # ---------------------------------------------------------------------------------- writing
    def _discard_partial(self, n: int) -> None:
        for name in ("lengths", *[p for p in self.poolings if p != "per_token"]):
            if len(self.file[name]) != n:
                self.file[name].resize(n, axis=0)
        if "per_token" in self.file:
            for key in [k for k in self.file["per_token"] if int(k) >= n]:
                del self.file["per_token"][key]

    def append(
        self,
        ids: Sequence[str],
        lengths: Sequence[int],
        pooled: dict[str, np.ndarray],
        per_token: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Append rows: ``pooled[p]`` is ``[b, n_layers, dim]``; ``per_token[i]`` ``[n_layers, L_i, dim]``."""
        b, n = len(ids), len(self)
        dup = [i for i in ids if i in self._row]
        if dup or len(set(ids)) != b:
            raise InputError(f"{self.path}: id(s) {dup[:3] or list(ids)[:3]} already stored or repeated")
        shape = (b, len(self.layers), self.dim)
        for p in self.poolings:
            if p == "per_token":
                if per_token is None or len(per_token) != b:
                    raise InputError("this store keeps per-token outputs; pass one array per id")
                for k, arr in enumerate(per_token):
                    self.file["per_token"].create_dataset(
                        str(n + k), data=np.asarray(arr, dtype=self.file.attrs["dtype"])
                    )
                continue
            arr = np.asarray(pooled[p])
            if arr.shape != shape:
                raise InputError(f"pooled[{p!r}] has shape {arr.shape}, expected {shape}")
            self.file[p].resize(n + b, axis=0)
            self.file[p][n:] = arr
        self.file["lengths"].resize(n + b, axis=0)
        self.file["lengths"][n:] = np.asarray(lengths, dtype=np.int64)
        self.file["ids"].resize(n + b, axis=0)
        self.file["ids"][n:] = np.asarray(list(ids), dtype=object)
        self.file.flush()
        self._row.update({s: n + k for k, s in enumerate(ids)})

    # ---------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, sid: object) -> bool:
        return sid in self._row

    @property
    def ids(self) -> list[str]:
        return list(self._row)

    def _layer_pos(self, layer: int | None) -> slice | int:
        if layer is None:
            return slice(None)
        if layer not in self.layers:
            raise InputError(f"{self.path}: layer {layer} not stored; stored layers are {self.layers}")
        return self.layers.index(layer)

    def _rows(self, ids: Iterable[str]) -> list[int]:
        rows = []
        for sid in ids:
            if sid not in self._row:
                raise InputError(f"{self.path}: no embedding for id {sid!r}")
            rows.append(self._row[sid])
        return rows

    def _pooled(self, pooling: str) -> h5py.Dataset:
        pooled = [p for p in self.poolings if p != "per_token"]
        if pooling == "per_token":  # stored or not, it is not one row per item
            raise InputError(
                f"{self.path}: per_token outputs are one [length, dim] array per item, not one row each; give a pooled "
                f"output ({', '.join(pooled) or 'none stored'}), or read them with EmbeddingStore.per_token(id)"
            )
        if pooling not in self.poolings:
            raise InputError(f"{self.path}: pooling {pooling!r} not stored; pooled outputs stored: {', '.join(pooled)}")
        return self.file[pooling]

    def get(self, sid: str, pooling: str = "mean", layer: int | None = None) -> np.ndarray:
        """``[n_layers, dim]`` (or ``[dim]`` for one layer) of one sequence."""
        (row,) = self._rows([sid])
        return self._pooled(pooling)[row][self._layer_pos(layer)]

    def array(self, pooling: str = "mean", layer: int | None = None, ids: Sequence[str] | None = None) -> np.ndarray:
        """Pooled outputs of ``ids`` (default: all, in row order): ``[N, n_layers, dim]`` or ``[N, dim]``."""
        data = self._pooled(pooling)
        pos = self._layer_pos(layer)
        if ids is None:
            return data[: len(self)][:, pos]
        rows = np.asarray(self._rows(ids), dtype=np.int64)
        # HDF5 reads need strictly increasing rows: read each distinct row once, then expand.
        unique, inverse = np.unique(rows, return_inverse=True)
        out = data[unique] if len(unique) else np.zeros((0, *data.shape[1:]), data.dtype)
        return out[inverse][:, pos]

    def per_token(self, sid: str, layer: int | None = None) -> np.ndarray:
        """``[n_layers, length, dim]`` (or ``[length, dim]``) of one sequence."""
        if "per_token" not in self.poolings:
            raise InputError(f"{self.path}: per-token outputs not stored; stored: {self.poolings}")
        (row,) = self._rows([sid])
        return self.file["per_token"][str(row)][self._layer_pos(layer)]

    def length(self, sid: str) -> int:
        (row,) = self._rows([sid])
        return int(self.file["lengths"][row])

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_stores(paths: Sequence[str | Path], out: str | Path, batch: int = 4096) -> Path:
    """Concatenate stores with the same model/layers/dim/poolings (e.g. one per rank) into ``out``
    (written beside it under a temporary name, renamed when complete)."""
    if not paths:
        raise InputError("merge_stores needs at least one store")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} exists; merge into a new path")
    first = EmbeddingStore(paths[0])
    dtype = str(first.file.attrs["dtype"])
    tmp = out.with_name(f".{out.name}.partial")
    tmp.unlink(missing_ok=True)
    merged = EmbeddingStore.create(tmp, first.model, first.layers, first.dim, first.poolings, dtype)
    first.close()
    try:
        for path in paths:
            with EmbeddingStore(path) as part:
                layout = (part.model, part.layers, part.dim, part.poolings)
                if layout != (merged.model, merged.layers, merged.dim, merged.poolings):
                    raise InputError(f"{path}: model/layers/dim/poolings differ from {paths[0]}; cannot merge")
                ids = part.ids
                for i in range(0, len(ids), batch):
                    chunk = ids[i : i + batch]
                    pooled = {p: part.file[p][i : i + len(chunk)] for p in part.poolings if p != "per_token"}
                    tokens = None
                    if "per_token" in part.poolings:
                        tokens = [part.file["per_token"][str(i + k)][()] for k in range(len(chunk))]
                    merged.append(chunk, part.file["lengths"][i : i + len(chunk)], pooled, tokens)
        merged.close()
        os.replace(tmp, out)
    finally:
        merged.close()
        tmp.unlink(missing_ok=True)
    return out
