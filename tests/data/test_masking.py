import numpy as np
import pytest
import torch

from tvts.data.samples import MaskSpec, make_mask
from tvts.data.masking import full_mask, num_kept, random_mask, tube_mask
from tvts.errors import ConfigError


def test_num_kept():
    assert num_kept(196, 0.75) == 49
    assert num_kept(196, 0.5) == 98
    assert num_kept(196, 0.0) == 196
    assert num_kept(4, 0.99) == 1  # never zero
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            num_kept(196, bad)


def _check_rows(keep, num_patches, n_keep):
    assert keep.dtype == torch.long and keep.shape[1] == n_keep
    for row in keep.tolist():
        assert row == sorted(row)
        assert len(set(row)) == n_keep
        assert 0 <= min(row) and max(row) < num_patches


def test_random_mask_independent_per_slot():
    keep = random_mask(8, 196, 0.75, np.random.default_rng(0))
    assert keep.shape == (8, 49)
    _check_rows(keep, 196, 49)
    assert len({tuple(r) for r in keep.tolist()}) == 8  # each slot has its own subset
    assert torch.equal(keep, random_mask(8, 196, 0.75, np.random.default_rng(0)))
    assert not torch.equal(keep, random_mask(8, 196, 0.75, np.random.default_rng(1)))


def test_random_mask_is_uniform_over_patches():
    counts = torch.bincount(random_mask(4000, 16, 0.75, np.random.default_rng(1)).flatten(), minlength=16)
    # each patch is kept with probability 1/4: 1000 expected per patch, binomial sd ~27
    assert counts.min() > 850 and counts.max() < 1150


def test_tube_mask_same_positions_in_every_slot():
    keep = tube_mask(6, 49, 0.5, np.random.default_rng(0))
    assert keep.shape == (6, 24)
    _check_rows(keep, 49, 24)
    assert all(torch.equal(keep[0], keep[i]) for i in range(6))
    assert not torch.equal(keep[0], tube_mask(6, 49, 0.5, np.random.default_rng(1))[0])


def test_full_mask():
    keep = full_mask(3, 5)
    assert keep.tolist() == [[0, 1, 2, 3, 4]] * 3 and keep.dtype == torch.long


def test_mask_spec_and_make_mask():
    rng = np.random.default_rng(0)
    assert make_mask(MaskSpec("random", 4, 16, 0.75), rng).shape == (4, 4)
    tube = make_mask(MaskSpec("tube", 4, 16, 0.5), rng)
    assert tube.shape == (4, 8) and torch.equal(tube[0], tube[3])
    assert torch.equal(make_mask(MaskSpec("none", 2, 16), None), full_mask(2, 16))
    with pytest.raises(ConfigError):
        MaskSpec("cube", 4, 16, 0.5)
    with pytest.raises(ConfigError):
        MaskSpec("random", 0, 16, 0.5)
    with pytest.raises(ConfigError):
        MaskSpec("random", 4, 16, 1.0)
    with pytest.raises(ConfigError):
        make_mask(MaskSpec("random", 4, 16, 0.5), None)
