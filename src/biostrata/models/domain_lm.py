"""BiGCARP: a masked language model over the Pfam domains of a gene cluster (ByteNet dilated CNN).

The network is sequence-models' ``ByteNetLM`` built the way BiGCARP builds it:

    token table [V, d_embed] -> 1x1 conv to d_model ->
    n_layers x residual block  x + W2(act(LN(dilconv_k(act(LN(W1(act(LN(x)))))))))
               (bottleneck d_model/2 when slim; dilation 2^(i mod (log2(r)+1)))
    -> LayerNorm -> 1x1 decoder over V

with GELU, and ``padding_idx`` of the token table set to the *mask* token (so ``#`` embeds to a
fixed zero vector, as in BiGCARP). Positions holding the pad token ``-`` are zeroed before every
convolution, so the output at real positions does not depend on padding.

``geometry="lorentz"`` puts the two ends on the hyperboloid <x,x>_L = -k of curvature -K, K = 1/k =
``curvature`` (:class:`~biostrata.geometry.lorentz.Lorentz`), and leaves the body as it is:

    token table of points x_v (:class:`~biostrata.nn.lorentz.LorentzTangentEmbedding`, mask row = origin)
    -> log_o(x_v) [d_embed] -> the ByteNet body above -> LayerNorm -> h [d_model]
    -> u = W h + b -> clip |u| <= 5 sqrt(k) -> y = exp_o(u) -> logit_c = -d(y, p_c) / tau + b_c
       (:class:`~biostrata.nn.lorentz.LorentzDistanceHead`; d the geodesic distance, tau = LORENTZ_TAU)

so layer 0 of ``embed`` (what the body reads) is the tangent vector log_o(x_v); ``table_points()``
gives the points x_v. Adam on the table's space parts keeps every row on the manifold.

Model files: :meth:`DomainLM.save_pretrained` writes the folder of every biostrata model
(:mod:`biostrata.models.pretrained`, family ``domain-lm``): ``config.json`` with ``architecture`` (the
keyword arguments of :class:`DomainLM`), ``vocabulary`` (``domains``, ``classes``, ``gene_separator``) and
``frozen_rows``, and ``model.safetensors``. :meth:`DomainLM.save_sequence_models` exports, and
:meth:`DomainLM.load` reads, the sequence-models ``.pt`` layout: a dict with ``model_state_dict`` (ByteNetLM
keys), ``d_embed``, ``d_model``, ``n_layers``, ``kernel_size``, ``activation``, ``slim``, ``r``,
``tokens`` (``{"size", "specials", "domains"}``), ``pfam_to_domain`` and ``model`` (e.g.
``bigcarp_random``), plus ``geometry``, ``curvature`` and ``head`` (absent: euclidean, linear) and
``frozen_rows``. ``head="distance"`` on a euclidean model is the lorentz model's flat control: BiGCARP's
table, and logits -|W h + b - p_c| / tau + b_c (:class:`~biostrata.nn.distance.EuclideanDistanceHead`,
the same map, start and temperature as the lorentz head).
Checkpoints of the frozen variant (``embedder.embedder.trainable/frozen`` keys) load into one table
whose last rows are marked frozen. A lorentz checkpoint keeps this layout, but its state dict holds
the keys of the Lorentz modules (``embedder.embedder.space``, ``decoder.linear.*``,
``decoder.logits.*``, ``*.manifold.k``) where ByteNetLM has its table and decoder: sequence-models
itself cannot load it, nor one with the distance head (only :meth:`DomainLM.load` can).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from sequence_models.convolutional import ByteNetLM
from torch import nn

from biostrata.data.clusters.corpus import DomainVocabulary
from biostrata.data.clusters.pfam import PfamTable
from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.geometry.lorentz import Lorentz
from biostrata.io import atomic_write
from biostrata.models.hub import hub_file, load_torch_file
from biostrata.models.layerwise import resolve_layers
from biostrata.models.pretrained import Pretrained, pretrained_config
from biostrata.nn.distance import EuclideanDistanceHead
from biostrata.nn.lorentz import LorentzDistanceHead, LorentzTangentEmbedding

__all__ = ["DomainLM", "RowFrozenEmbedding", "PRESETS", "BIGCARP_URL", "GEOMETRIES", "HEADS"]

#: Architectures: BiGCARP's published size, and a small one that trains on a CPU in minutes.
PRESETS: dict[str, dict] = {
    "bigcarp": {
        "d_embed": 1280,
        "d_model": 256,
        "n_layers": 32,
        "kernel_size": 3,
        "r": 128,
        "slim": True,
        "activation": "gelu",
    },
    "small": {
        "d_embed": 128,
        "d_model": 128,
        "n_layers": 8,
        "kernel_size": 3,
        "r": 8,
        "slim": True,
        "activation": "gelu",
    },
}
#: Where sequence-models downloads the published BiGCARP checkpoints (``<name>.pt``).
BIGCARP_URL = "https://zenodo.org/record/6857704/files/"
#: What ``DomainLM.load`` takes, for its errors.
CHECKPOINT = (
    "a model folder of `biostrata pretrain`, a sequence-models BiGCARP checkpoint (.pt) or a published name "
    "(bigcarp_random, bigcarp_esm1bfinetune, bigcarp_esm1bfrozen)"
)
_CONFIG_KEYS = ("d_embed", "d_model", "n_layers", "kernel_size", "r", "slim", "activation")
#: The geometries of the token table and the output layer (the body is Euclidean in both).
GEOMETRIES = ("euclidean", "lorentz")
_OPTION_KEYS = (*_CONFIG_KEYS, "geometry", "curvature", "head")
#: Output layers: BiGCARP's linear decoder, or logits by distance to one learned point per token
#: (geodesic for a lorentz model, which has no other; Euclidean, the control of the lorentz one).
HEADS = ("linear", "distance")
# Temperature of the lorentz output layer. Its logits -d(y, p_c) / tau span at most the spread of the
# distances, a few units while the prototypes sit near the origin (Adam moves their space parts, so
# their radius grows like asinh of the steps): at tau = 1 a model over MIBiG's 3161 tokens (width 64,
# 10 epochs) stalled at validation accuracy 0.31, perplexity 275 (euclidean: 0.445, 28); at tau = 0.1
# it reached 0.439, 29 (0.25: 0.42, 39). A buffer of the head, so checkpoints keep their own.
LORENTZ_TAU = 0.1


class RowFrozenEmbedding(nn.Embedding):
    """``nn.Embedding`` whose rows marked in the (non-persistent) ``frozen`` buffer get no gradient:
    the lookup reads them through ``detach()``. Its state dict is that of ``nn.Embedding``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.register_buffer("frozen", torch.zeros(num_embeddings, dtype=torch.bool), persistent=False)

    @torch.no_grad()
    def write_rows_(self, rows: torch.Tensor, vectors: torch.Tensor) -> None:
        """Set rows ``rows`` to ``vectors [n, dim]``, what the lookup gives back (as
        :meth:`~biostrata.nn.lorentz.LorentzTangentEmbedding.write_rows_` does for a Lorentz table)."""
        self.weight[rows] = vectors.to(self.weight.device, self.weight.dtype)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.frozen.any():
            weight = torch.where(self.frozen.unsqueeze(1), weight.detach(), weight)
        return F.embedding(idx, weight, self.padding_idx)


class DomainLM(Pretrained, nn.Module):
    """BiGCARP's ByteNet masked LM over a :class:`DomainVocabulary`.

    ``forward(tokens)`` gives logits ``[B, L, V]``; ``embed(tokens, layers)`` gives a dict keyed by
    layer: 0 is the token-table lookup ``[B, L, d_embed]`` (lorentz: the tangent vectors log_o(x_v)),
    ``i`` (1..n_layers) the output of residual block ``i`` ``[B, L, d_model]``; negative layers count
    from the end (-1 = last block). ``geometry`` and ``curvature`` (K > 0; lorentz only): see the
    module docstring.
    """

    def __init__(
        self,
        vocab: DomainVocabulary,
        d_embed: int = 1280,
        d_model: int = 256,
        n_layers: int = 32,
        kernel_size: int = 3,
        r: int = 128,
        slim: bool = True,
        activation: str = "gelu",
        geometry: str = "euclidean",
        curvature: float = 1.0,
        head: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ParameterError("activation", f"activation={activation!r}: choose 'relu' or 'gelu'")
        if geometry not in GEOMETRIES:
            raise ParameterError("geometry", f"geometry={geometry!r}: choose one of {list(GEOMETRIES)}")
        if not (isinstance(curvature, (int, float)) and math.isfinite(curvature) and curvature > 0):
            raise ParameterError(
                "curvature", f"curvature={curvature!r}: give the curvature magnitude K, a finite number > 0"
            )
        if geometry == "euclidean" and curvature != 1.0:
            raise ParameterError(
                "curvature", f"curvature={curvature}: only a lorentz model has a curvature; give geometry='lorentz'"
            )
        head = head or ("distance" if geometry == "lorentz" else "linear")
        if head not in HEADS or (geometry == "lorentz" and head != "distance"):
            raise ParameterError(
                "head", f"head={head!r}: choose one of {list(HEADS)} (a lorentz model has the distance head)"
            )
        for name, value in dict(
            d_embed=d_embed, d_model=d_model, n_layers=n_layers, kernel_size=kernel_size, r=r
        ).items():
            if int(value) < 1:
                raise InputError(f"{name}={value}: must be a positive integer")
        self.vocab = vocab
        self.config = dict(
            d_embed=int(d_embed),
            d_model=int(d_model),
            n_layers=int(n_layers),
            kernel_size=int(kernel_size),
            r=int(r),
            slim=bool(slim),
            activation=activation,
            geometry=geometry,
            curvature=float(curvature),
            head=head,
        )
        self.geometry = geometry
        self.net = ByteNetLM(
            len(vocab),
            d_embed,
            d_model,
            n_layers,
            kernel_size,
            r,
            padding_idx=vocab.mask_idx,
            causal=False,
            dropout=0.0,
            final_ln=True,
            slim=slim,
            activation=activation,
        )
        if geometry == "lorentz":  # one manifold (fixed curvature) shared by the table and the head
            manifold = Lorentz(curvature)
            self.net.embedder.embedder = LorentzTangentEmbedding(len(vocab), d_embed, manifold, vocab.mask_idx)
            self.net.decoder = LorentzDistanceHead(d_model, len(vocab), manifold, tau=LORENTZ_TAU)
        else:
            if head == "distance":  # the flat control of the lorentz head: same map, start and temperature
                self.net.decoder = EuclideanDistanceHead(d_model, len(vocab), tau=LORENTZ_TAU)
            table = self.net.embedder.embedder
            self.net.embedder.embedder = RowFrozenEmbedding(len(vocab), d_embed, padding_idx=vocab.mask_idx)
            with torch.no_grad():
                self.net.embedder.embedder.weight.copy_(table.weight)

    @classmethod
    def from_preset(cls, preset: str, vocab: DomainVocabulary, **overrides: object) -> DomainLM:
        """Build ``PRESETS[preset]`` (``bigcarp`` or ``small``) with some sizes overridden, and
        ``geometry`` / ``curvature`` if given."""
        if preset not in PRESETS:
            raise ParameterError("preset", f"preset={preset!r}: choose one of {sorted(PRESETS)}")
        unknown = set(overrides) - set(_OPTION_KEYS)
        if unknown:
            raise InputError(f"unknown DomainLM option(s) {sorted(unknown)}; known: {list(_OPTION_KEYS)}")
        return cls(vocab, **{**PRESETS[preset], **overrides})  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------- layers
    @property
    def table(self) -> RowFrozenEmbedding | LorentzTangentEmbedding:
        """The domain-token table ``[V, d_embed]`` (layer 0; lorentz: ``weight`` is computed, the
        tangent vectors, and the parameter is ``space``)."""
        return self.net.embedder.embedder

    def table_points(self) -> torch.Tensor:
        """The points x_v ``[V, 1 + d_embed]`` of a lorentz table on <x,x>_L = -1/curvature, time first,
        to measure with hyperbolic distances. A euclidean table has no points: InputError (read
        ``table.weight``)."""
        if not isinstance(self.table, LorentzTangentEmbedding):
            raise InputError(
                f"table_points: this model's geometry is {self.geometry!r}, its table has no hyperboloid points; "
                "read model.table.weight"
            )
        return self.table.points()

    @property
    def frozen_rows(self) -> torch.Tensor:
        """Bool ``[V]``: the table rows kept fixed in training."""
        return self.table.frozen

    @property
    def num_layers(self) -> int:
        return self.config["n_layers"]

    def freeze_rows(self, rows: torch.Tensor | Sequence[int] | None) -> None:
        """Keep these table rows fixed in training (no gradient reaches them; use an optimizer without
        weight decay on the table, e.g. Adam, so that zero gradient means no change). None unfreezes."""
        self.frozen_rows.zero_()
        if rows is not None:
            self.frozen_rows[torch.as_tensor(rows, dtype=torch.long)] = True

    #: Tokens added before and after each cluster's own (none: a cluster is its domains).
    special_tokens = (0, 0)

    def tokenize(self, items: Sequence) -> torch.Tensor:
        """Right-padded token rows ``[B, longest]`` of clusters, or of token tensors already encoded by
        ``vocab.encode``."""
        rows = [x if isinstance(x, torch.Tensor) else self.vocab.encode(x) for x in items]
        tokens = torch.full((len(rows), max((len(r) for r in rows), default=0)), self.vocab.pad_idx, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r
        return tokens

    def _input_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens != self.vocab.pad_idx).unsqueeze(-1).to(self.net.last_norm.weight.dtype)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise InputError(f"tokens must be a LongTensor [batch, length], got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= len(self.vocab)):
            raise InputError(
                f"token ids must lie in [0, {len(self.vocab)}); got {int(tokens.min())}..{int(tokens.max())}"
            )

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final states after the last LayerNorm, ``[B, L, d_model]``."""
        self._check_tokens(tokens)
        return self.net.last_norm(self.net.embedder(tokens, input_mask=self._input_mask(tokens)))

    def decode(self, states: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary of states ``[..., d_model]`` (the 1x1 decoder)."""
        shape = states.shape
        return self.net.decoder(states.reshape(1, -1, shape[-1])).reshape(*shape[:-1], -1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L, V]`` (exactly ``ByteNetLM.forward`` with the pad positions masked)."""
        self._check_tokens(tokens)
        return self.net(tokens, input_mask=self._input_mask(tokens))

    def masked_logits(self, src: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, V]`` at the ``n`` positions where ``selected`` is True (decoder run only there)."""
        return self.decode(self.hidden(src)[selected])

    def layer_index(self, layers: Iterable[int]) -> list[int]:
        """Layers as indices in 0..num_layers (see :mod:`biostrata.models.layerwise`)."""
        return resolve_layers(layers, self.num_layers)

    def embed(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """Layer-wise states (see class docstring); values at pad positions are not meaningful."""
        self._check_tokens(tokens)
        want = self.layer_index(layers)
        mask = self._input_mask(tokens)
        x = self.net.embedder.embedder(tokens)
        out = {0: x} if 0 in want else {}
        x = self.net.embedder.up_embedder(x)
        for i, block in enumerate(self.net.embedder.layers, 1):
            if i > max(want):
                break
            x = block(x, input_mask=mask)
            if i in want:
                out[i] = x
        return {i: out[i] for i in want}

    # ---------------------------------------------------------------------------------- files
    family = "domain-lm"

    def pretrained_config(self) -> dict:
        v = self.vocab
        return {
            "architecture": dict(self.config),
            "vocabulary": {"domains": v.domains, "classes": v.classes, "gene_separator": v.sep_idx is not None},
            "frozen_rows": self.frozen_rows.nonzero().flatten().tolist(),
        }

    @classmethod
    def from_config(cls, config: dict, tensors: dict, where: str) -> DomainLM:
        model = cls(DomainVocabulary(**config["vocabulary"]), **config["architecture"])
        try:
            model.load_state_dict(tensors)
        except RuntimeError as err:
            raise InputError(f"{where}: weights do not fit the architecture it declares: {err}") from None
        model.freeze_rows(config["frozen_rows"] or None)
        return model.eval()

    def checkpoint(self, pfam: PfamTable | None = None, name: str = "bigcarp_random") -> dict:
        """The sequence-models checkpoint dict of this model (see module docstring)."""
        tokens, pfam_to_domain = self.vocab.to_sequence_models(pfam)
        c = self.config
        return {
            "model": name,
            "model_state_dict": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
            "d_embed": c["d_embed"],
            "d_model": c["d_model"],
            "n_layers": c["n_layers"],
            "kernel_size": c["kernel_size"],
            "activation": c["activation"],
            "slim": c["slim"],
            "r": c["r"],
            "geometry": c["geometry"],
            "curvature": c["curvature"],
            "head": c["head"],
            "tokens": tokens,
            "pfam_to_domain": pfam_to_domain,
            "frozen_rows": self.frozen_rows.nonzero().flatten().cpu(),
        }

    def save_sequence_models(
        self, path: str | Path, pfam: PfamTable | None = None, name: str = "bigcarp_random"
    ) -> None:
        """Export a sequence-models ``.pt`` checkpoint atomically (Pfam names via ``pfam`` if given), the
        layout BiGCARP's own code reads (a euclidean model with the linear head; see the module docstring)."""
        data = self.checkpoint(pfam, name)
        atomic_write(Path(path), lambda tmp: torch.save(data, tmp))

    @classmethod
    def from_checkpoint(cls, data: dict, where: str = "checkpoint", pfam: PfamTable | None = None) -> DomainLM:
        """Build from a sequence-models BiGCARP checkpoint dict (``geometry``/``curvature`` absent:
        euclidean)."""
        missing = [k for k in ("model_state_dict", "tokens", *_CONFIG_KEYS) if k not in data]
        if missing:
            raise InputError(f"{where}: not a sequence-models BiGCARP checkpoint; missing key(s) {missing}")
        vocab = DomainVocabulary.from_sequence_models(data["tokens"], data.get("pfam_to_domain"), pfam)
        geometry = {"geometry": data.get("geometry", "euclidean"), "curvature": data.get("curvature", 1.0),
                    "head": data.get("head")}  # fmt: skip
        try:
            model = cls(vocab, **{k: data[k] for k in _CONFIG_KEYS}, **geometry)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        state = dict(data["model_state_dict"])
        frozen = torch.as_tensor(data.get("frozen_rows", []), dtype=torch.long)
        key = "embedder.embedder."
        if key + "trainable.weight" in state:  # DoubleEmbedding: trainable rows first, frozen rows last
            trainable, fixed = state.pop(key + "trainable.weight"), state.pop(key + "frozen.weight")
            state[key + "weight"] = torch.cat([trainable, fixed])
            frozen = torch.arange(len(trainable), len(trainable) + len(fixed))
        try:
            model.net.load_state_dict(state)
        except RuntimeError as err:
            raise InputError(f"{where}: weights do not fit the architecture it declares: {err}") from None
        model.freeze_rows(frozen if len(frozen) else None)
        return model.eval()

    @classmethod
    def load(cls, name_or_path: str | Path, pfam: PfamTable | None = None) -> DomainLM:
        """Load a model folder of :meth:`save_pretrained`, a checkpoint from a local ``.pt`` file, or a published one by name
        (``bigcarp_random``, ``bigcarp_esm1bfinetune``, ``bigcarp_esm1bfrozen``) from the torch hub
        cache (``$TORCH_HOME/hub/checkpoints/<name>.pt``), downloading it if it is not there.
        ``pfam`` maps family names the checkpoint's ``pfam_to_domain`` lacks to accessions."""
        path = Path(name_or_path)
        config = pretrained_config(path)
        if config is not None:
            return cls._from_parsed(path, config)
        if not path.is_file():
            if path.suffix == ".pt" or os.sep in str(name_or_path):
                raise DataNotFoundError(f"BiGCARP checkpoint not found: {path}")
            path = hub_file(str(name_or_path), f"{BIGCARP_URL}{name_or_path}.pt?download=1", "BiGCARP checkpoint")
        data = load_torch_file(path, CHECKPOINT)
        if not isinstance(data, dict):
            raise InputError(f"{path}: holds a {type(data).__name__}; expected {CHECKPOINT}")
        return cls.from_checkpoint(data, str(path), pfam)
