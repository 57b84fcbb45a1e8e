"""Moved to :mod:`biostrata.data.dna.genome` (#25), and the file helpers to :mod:`biostrata.data.files`; the old
names warn for one release."""

from biostrata.compat import moved

_NAMES = ("SPLITS", "FASTA_SUFFIXES", "SEQUENCE_SUFFIXES", "SEQUENCE_COLUMNS", "SequenceSet", "Splits", "EncodedSequences",
          "read_labelled", "split_file", "read_gue_dir")  # fmt: skip
__getattr__ = moved(__name__, dict.fromkeys(_NAMES, "biostrata.data.dna.genome")
                    | dict.fromkeys(("is_gzip", "open_bytes", "open_text"), "biostrata.data.files"))  # fmt: skip
