"""Cross-model initialization: a domain-token table from protein-level embeddings of Pfam families.

The vector of a Pfam family is the mean, over its member sequences, of their mean-pooled protein-LM
states at one layer (BiGCARP used one representative sequence per family, ESM-1b layer 33):

    v_f = (1 / |M_f|) sum_{s in M_f} (1 / n_s) sum_{j=1..n_s} h_layer(s)_j

These vectors replace the rows of the domain LM's token table. When the protein width ``D`` differs
from the table width ``d_embed`` there are two ways:

- ``projection="learned"``: build the domain LM with ``d_embed = D`` (as BiGCARP did with ESM-1b's
  1280); its 1x1 up-projection ``d_embed -> d_model`` is then the learned projection.
- ``projection="pca"``: a fixed projection onto the top ``d_embed`` principal axes of the family
  vectors (rows centred first; zero columns if there are fewer families than ``d_embed``).

Families of the vocabulary without a vector keep their random rows and are reported. With
``freeze=True`` the initialized rows stay fixed during training (the "frozen" arm).

A lorentz table (``DomainLM(geometry="lorentz")``) gets the point whose tangent vector at the origin
is the (projected) family vector, x_v = exp_o(v_f): the body reads log_o(x_v) = v_f, as it reads v_f
from a euclidean table.

Files: :meth:`FamilyTable.save_pretrained` writes the folder of every biostrata model
(:mod:`biostrata.models.pretrained`, family ``family-table``): ``config.json`` with ``families``
(accessions), ``members`` (member counts) and ``meta``, and ``model.safetensors`` with ``vectors``
``float32 [F, D]``. Earlier versions wrote a ``.pt`` file (loads with ``weights_only``): ``{"families":
[accession], "vectors": FloatTensor[F, D], "members": [int], "meta": {str: str|int}}``; :meth:`FamilyTable.load`
reads both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.hub import load_torch_file
from biostrata.models.pretrained import Pretrained, pretrained_config

__all__ = ["FamilyTable", "InitReport", "family_table_from_store", "initialize_token_table", "ARMS"]

#: The three arms of the study: random table, initialized and fine-tuned, initialized and frozen.
ARMS = ("random", "finetune", "frozen")
#: How family vectors of another width reach the token table: a learned linear map, or PCA.
PROJECTIONS = ("learned", "pca")


@dataclass
class FamilyTable(Pretrained):
    """One vector per Pfam family (see module docstring for the file format)."""

    family = "family-table"

    families: list[str]
    vectors: torch.Tensor
    members: list[int]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or not len(self.families) == len(self.vectors) == len(self.members):
            raise InputError(
                f"family table: {len(self.families)} families, vectors {tuple(self.vectors.shape)}, "
                f"{len(self.members)} member counts; they must agree"
            )
        if len(set(self.families)) != len(self.families):
            raise InputError("family table: a family appears twice")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def pretrained_config(self) -> dict:
        return {"families": list(self.families), "members": [int(m) for m in self.members], "meta": dict(self.meta)}

    def pretrained_tensors(self) -> dict:
        return {"vectors": self.vectors.float()}

    @classmethod
    def from_config(cls, config: dict, tensors: dict, where: str) -> FamilyTable:
        return cls(list(config["families"]), tensors["vectors"], list(config["members"]), dict(config["meta"]))

    @classmethod
    def load(cls, path: str | Path) -> FamilyTable:
        """A family table from a folder of :meth:`save_pretrained` or a ``.pt`` file of earlier versions."""
        path = Path(path)
        config = pretrained_config(path)
        if config is not None:
            return cls._from_parsed(path, config)
        if not path.is_file():
            raise DataNotFoundError(f"family table not found: {path}")
        return cls.from_saved(load_torch_file(path, _WHAT), str(path))

    @classmethod
    def from_saved(cls, data: object, where: str) -> FamilyTable:
        """The table of a dict read from a file of :meth:`save`; ``where`` names the file in errors."""
        try:
            return cls(
                list(data["families"]), data["vectors"].float(), list(data["members"]), dict(data.get("meta", {}))
            )
        except (KeyError, TypeError, RuntimeError, AttributeError, IndexError) as err:
            raise InputError(
                f"{where}: a torch file, but not a family table ({type(err).__name__}: {err}); expected {_WHAT}"
            ) from None


#: What :meth:`FamilyTable.load` takes, for its errors.
_WHAT = "a family table (a folder, or a .pt of earlier versions) from `biostrata embed --family-table`"


def family_table_from_store(
    store: EmbeddingStore | str | Path, members: Mapping[str, Sequence[str]], layer: int, pooling: str = "mean"
) -> FamilyTable:
    """Average the stored ``pooling`` vectors at ``layer`` of each family's member ids."""
    own = not isinstance(store, EmbeddingStore)
    st = EmbeddingStore(store) if own else store
    try:
        families = sorted(f for f, ids in members.items() if ids)
        rows = [st.array(pooling, layer, ids=list(members[f])).astype(np.float64).mean(0) for f in families]
        meta = {"model": st.model, "layer": int(layer), "pooling": pooling, "store": str(st.path)}
    finally:
        if own:
            st.close()
    if not families:
        raise InputError("no family has member sequences; nothing to average")
    vectors = torch.tensor(np.stack(rows), dtype=torch.float32)
    return FamilyTable(families, vectors, [len(members[f]) for f in families], meta)


@dataclass
class InitReport:
    """What :func:`initialize_token_table` did."""

    initialized: list[str]
    missing: list[str]  # vocabulary domains without a vector: random rows kept
    unused: list[str]  # table families not in the vocabulary
    projection: str
    frozen: bool

    def summary(self) -> str:
        return (
            f"{len(self.initialized)} domain rows initialized ({self.projection} projection, "
            f"{'frozen' if self.frozen else 'trainable'}); {len(self.missing)} domains have no member "
            f"sequences and keep random rows (e.g. {self.missing[:5]}); {len(self.unused)} table families "
            "are not in the vocabulary"
        )


def _pca_projection(x: torch.Tensor, d: int) -> torch.Tensor:
    """Centred ``x [F, D]`` projected on its top ``d`` principal axes, ``[F, d]`` (zero-padded)."""
    xc = x.double() - x.double().mean(0)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(d, vh.shape[0])
    out = torch.zeros(len(x), d, dtype=torch.float64)
    out[:, :k] = xc @ vh[:k].T
    return out.float()


def initialize_token_table(
    model: DomainLM, table: FamilyTable, projection: str = "learned", freeze: bool = False
) -> InitReport:
    """Write family vectors into the domain rows of ``model``'s token table (see module docstring)."""
    if projection not in PROJECTIONS:
        raise ParameterError("projection", f"projection={projection!r}: use one of {', '.join(PROJECTIONS)}")
    d_embed = model.config["d_embed"]
    if projection == "learned" and table.dim != d_embed:
        raise InputError(
            f"family vectors have {table.dim} dimensions but the token table has {d_embed}: build the domain LM "
            f"with d_embed={table.dim} (its up-projection then learns the map), or use projection='pca'"
        )
    vocab = model.vocab
    index = {f: k for k, f in enumerate(table.families)}
    initialized = [d for d in vocab.domains if d in index]
    missing = [d for d in vocab.domains if d not in index]
    unused = [f for f in table.families if f not in vocab]
    if not initialized:
        raise InputError("no vocabulary domain has a vector in the family table; check that both use Pfam accessions")
    vectors = table.vectors if projection == "learned" else _pca_projection(table.vectors, d_embed)
    rows = torch.tensor([vocab.index(d) for d in initialized])
    model.table.write_rows_(rows, vectors[[index[d] for d in initialized]])
    model.freeze_rows(rows if freeze else None)
    return InitReport(initialized, missing, unused, projection, freeze)
