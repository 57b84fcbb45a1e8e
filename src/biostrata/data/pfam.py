"""Moved to :mod:`biostrata.data.clusters.pfam` (#25); the old names warn for one release."""

from biostrata.compat import moved

__getattr__ = moved(
    __name__, dict.fromkeys(("PfamFamily", "PfamTable", "parse_accession"), "biostrata.data.clusters.pfam")
)
