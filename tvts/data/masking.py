"""Which video patches the encoder keeps (masking without [MASK] tokens or reconstruction).

A *slot* is one temporal position of the token grid (a tube of 2 frames with TVTS's 2x16x16 cube embedding,
one frame for a per-frame embedding); a *patch* is a spatial position inside a slot. Masks are returned as
the kept patch indices per slot, sorted ascending, so a model can ``gather`` its tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from tvts.errors import ConfigError

MASK_KINDS = ("random", "tube")  # per-frame random masking (TVTS), tube masking (TVTSv2)

__all__ = ["num_kept", "random_mask", "tube_mask", "full_mask"]


def _check_counts(num_slots, num_patches) -> None:
    for name, v in (("num_slots", num_slots), ("num_patches", num_patches)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {v!r}", field=name)


def num_kept(num_patches: int, ratio: float) -> int:
    """Patches kept per slot at mask ratio ``ratio`` (0 <= ratio < 1): ``max(1, int(num_patches * (1 - ratio)))``."""
    _check_counts(1, num_patches)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)) or not (0.0 <= ratio < 1.0):
        raise ConfigError(f"mask ratio must satisfy 0 <= ratio < 1, got {ratio!r}", field="ratio")
    return max(1, int(num_patches * (1.0 - float(ratio))))


def random_mask(num_slots: int, num_patches: int, ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """TVTS masking ("randomly mask 75% of tokens within each frame"): an independent random subset of
    patches per slot. Returns LongTensor ``[num_slots, n_keep]``, each row sorted ascending, no repeats."""
    _check_counts(num_slots, num_patches)
    n_keep = num_kept(num_patches, ratio)
    # argsort of i.i.d. uniforms = one random permutation per row, vectorised over slots.
    keep = np.argsort(rng.random((num_slots, num_patches)), axis=1)[:, :n_keep]
    return torch.as_tensor(np.sort(keep, axis=1), dtype=torch.long)


def tube_mask(num_slots: int, num_patches: int, ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """TVTSv2 / VideoMAE tube masking: the same kept spatial positions in every slot.
    Returns LongTensor ``[num_slots, n_keep]``; all rows are identical and sorted ascending."""
    _check_counts(num_slots, num_patches)
    n_keep = num_kept(num_patches, ratio)
    keep = np.sort(rng.choice(num_patches, size=n_keep, replace=False))
    return torch.as_tensor(np.tile(keep, (num_slots, 1)), dtype=torch.long)


def full_mask(num_slots: int, num_patches: int) -> torch.Tensor:
    """Keep every patch (evaluation): LongTensor ``[num_slots, num_patches]`` with rows ``0..num_patches-1``."""
    _check_counts(num_slots, num_patches)
    return torch.arange(num_patches, dtype=torch.long).repeat(num_slots, 1)
