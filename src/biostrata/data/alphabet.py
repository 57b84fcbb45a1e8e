"""Moved to :mod:`biostrata.data.dna.alphabet` (#25); the old names warn for one release."""

from biostrata.compat import moved

__getattr__ = moved(__name__, dict.fromkeys(("ALPHABET", "PAD", "encode", "one_hot", "encode_batch"),
                                            "biostrata.data.dna.alphabet"))  # fmt: skip
