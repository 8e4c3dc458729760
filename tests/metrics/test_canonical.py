"""Canonical row order: a function of the rows' content only, duplicates included."""

from __future__ import annotations

import pytest
import torch
from helpers.gaussians import generator

from auditor.metrics.canonical import canonical_order, canonical_rows


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.int64])
def test_canonical_rows_are_the_same_for_any_permutation_duplicates_included(dtype: torch.dtype) -> None:
    gen = generator(1)
    x = (torch.randn(50, 3, generator=gen) * 4).to(dtype)
    x[::3] = x[7]  # a row repeated many times
    x[1] = x[2]
    expected = canonical_rows(x)
    for _ in range(5):
        permuted = x[torch.randperm(50, generator=gen)]
        assert torch.equal(canonical_rows(permuted), expected)
    assert sorted(map(tuple, expected.tolist())) == sorted(map(tuple, x.tolist()))  # the same rows


def test_canonical_order_is_the_byte_order_of_the_rows() -> None:
    x = torch.tensor([[1, 0], [0, 255], [0, 1], [255, 0]], dtype=torch.uint8)
    assert canonical_order(x).tolist() == [2, 1, 0, 3]  # memcmp order, first byte first
    # rows differing only in a late column are still told apart
    y = torch.tensor([[5.0, 1.0, 3.0], [5.0, 1.0, 2.0]], dtype=torch.float64)
    assert torch.equal(canonical_rows(y), canonical_rows(y.flip(0)))


def test_canonical_order_of_degenerate_shapes_and_non_contiguous_input() -> None:
    assert canonical_order(torch.empty(0, 4)).tolist() == []
    assert canonical_order(torch.ones(1, 4)).tolist() == [0]
    assert canonical_order(torch.empty(3, 0)).tolist() == [0, 1, 2]
    x = torch.randn(6, 8, generator=generator(2))
    assert torch.equal(canonical_rows(x[:, ::2]), canonical_rows(x[:, ::2].contiguous()))
    with pytest.raises(ValueError, match="2-D"):
        canonical_order(torch.ones(3))
