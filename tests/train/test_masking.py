"""Tests of biostrata.train.masking: BERT-style 15% (80/10/10) masking and cropping."""

from __future__ import annotations

import pytest
import torch

from biostrata.errors import InputError
from biostrata.train.masking import MaskingScheme, MLMCollator, mask_tokens

PAD, MASK = 0, 2


def scheme(**kw) -> MaskingScheme:
    maskable = torch.zeros(30, dtype=torch.bool)
    maskable[5:] = True  # 0..4 are specials (pad, stop, mask, a class token, UNK-like)
    return MaskingScheme(PAD, MASK, maskable, torch.arange(10, 30), **kw)


def test_counts_and_positions() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, 30, (6, 40), generator=g)
    tokens[:, 0] = 3  # class token: never chosen
    tokens[1, 7:] = PAD
    tokens[2, 2:] = PAD  # one maskable position: still one chosen
    src, selected = mask_tokens(tokens, scheme(), g)
    maskable = tokens >= 5
    n = maskable.sum(1)
    assert selected.sum(1).tolist() == [max(1, int(k * 0.15)) for k in n.tolist()]
    assert not (selected & ~maskable).any()
    assert torch.equal(src[~selected], tokens[~selected])


def test_80_10_10_proportions() -> None:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(5, 10, (400, 100), generator=g)  # originals never among the replacements 10..29
    src, selected = mask_tokens(tokens, scheme(), g)
    chosen, out = tokens[selected], src[selected]
    n = len(chosen)
    assert n == 400 * 15
    masked = (out == MASK).float().mean()
    random_ = ((out >= 10) & (out < 30)).float().mean()
    kept = (out == chosen).float().mean()
    assert abs(masked - 0.8) < 0.02 and abs(random_ - 0.1) < 0.015 and abs(kept - 0.1) < 0.015
    assert torch.isclose(masked + random_ + kept, torch.tensor(1.0))


def test_scheme_validation() -> None:
    with pytest.raises(InputError, match="p_mask"):
        scheme(p_mask=0.95, p_random=0.1)
    with pytest.raises(InputError, match="replacement"):
        MaskingScheme(PAD, MASK, torch.ones(3, dtype=torch.bool), torch.tensor([], dtype=torch.long))


def test_collator_crops_and_pads() -> None:
    long = torch.arange(5, 25)  # 20 tokens: first = "BOS", last = "EOS"
    short = torch.tensor([5, 6, 7])
    train = MLMCollator(scheme(), max_length=8, keep_first=1, keep_last=1, seed=0)
    for _ in range(5):
        target, src, selected = train([long, short])
        assert target.shape == (2, 8)
        row = target[0].tolist()
        assert row[0] == 5 and row[-1] == 24
        assert row[1:-1] == list(range(row[1], row[1] + 6))  # a contiguous window of the body
        assert target[1].tolist() == [5, 6, 7, PAD, PAD, PAD, PAD, PAD]
        assert not selected[1, 3:].any()
    valid = MLMCollator(scheme(), max_length=8, keep_first=1, keep_last=1, train=False)
    assert valid([long])[0][0].tolist() == [5, 6, 7, 8, 9, 10, 11, 24]
    with pytest.raises(InputError, match="max_length=2"):
        MLMCollator(scheme(), max_length=2, keep_first=1, keep_last=1)
