"""Moved to :mod:`biostrata.data.clusters.proteins` (#25); the old names warn for one release."""

from biostrata.compat import moved

_NAMES = ("CANONICAL_AMINO_ACIDS", "ProteinRecord", "iter_fasta", "read_fasta", "read_proteins", "domain_rows",
          "hit_key", "read_domain_proteins", "read_domain_segments", "family_members")  # fmt: skip
__getattr__ = moved(__name__, dict.fromkeys(_NAMES, "biostrata.data.clusters.proteins"))
