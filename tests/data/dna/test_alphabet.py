import numpy as np
import pytest
import torch

from biostrata.data.dna.alphabet import ALPHABET, PAD, encode, encode_batch, one_hot
from biostrata.errors import InputError


def test_encode_maps_letters_case_and_iupac():
    idx = encode("ACGTNacgtnRyU", 15)
    assert idx.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4, 4, 3, PAD, PAD]


def test_invalid_character_names_where_and_what():
    with pytest.raises(InputError, match=r"invalid character 'X' at position 3 \(train.csv, line 7\)"):
        encode("ACXT", 10, where="train.csv, line 7")
    with pytest.raises(InputError, match="invalid character 'é' at position 2"):
        encode("Aé", 10)
    with pytest.raises(InputError, match="invalid character '-'"):
        encode("AC-T", 10)


def test_too_long_is_an_error_unless_truncating():
    with pytest.raises(
        InputError, match=r"length 5 is longer than the model length 3 \(f.csv, line 2\); raise the length or truncate"
    ):
        encode("ACGTA", 3, where="f.csv, line 2")
    assert encode("ACGTA", 3, truncate=True).tolist() == [0, 1, 2]


def test_one_hot_padding_is_zero_and_round_trips():
    x = encode_batch(["ACGT", "NN"], 5)
    assert x.shape == (2, len(ALPHABET), 5)
    assert torch.equal(x.sum(1), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.float32))
    assert x[0].argmax(0)[:4].tolist() == [0, 1, 2, 3]
    idx = torch.from_numpy(np.stack([encode("GATTACA", 9)]))
    assert torch.equal(one_hot(idx).argmax(1)[0, :7], idx[0, :7])
