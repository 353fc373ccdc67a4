"""Transcript sorting as K-way classification of each shuffled transcript (TVTS Eq. 2), and the
sort-accuracy metrics of TVTS appendix Table 13."""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch
import torch.nn.functional as F


def kway_sort_loss(logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[B, K, K]`` (transcript i → position j), ``order`` ``[B, K]`` with o_i the original
    position of shuffled transcript i. Mean over all B·K transcripts of −log softmax(p^i)_{o_i}."""
    k = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, k).float(), order.reshape(-1))


@lru_cache(maxsize=None)
def _permutations(k: int) -> torch.Tensor:
    if k > 7:
        raise ValueError(f"whole-order decoding enumerates K! orders; K={k} is too large")
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)  # [K!, K]


def best_permutation(logits: torch.Tensor) -> torch.Tensor:
    """The joint assignment of positions maximising the summed log-probabilities: ``[B, K, K]`` →
    ``[B, K]``, a permutation per sample (transcript i → position)."""
    b, k, _ = logits.shape
    perms = _permutations(k).to(logits.device)  # [P, K]
    logp = logits.float().log_softmax(-1)  # [B, K, K]
    # score[b, p] = sum_i logp[b, i, perms[p, i]]
    score = logp[:, torch.arange(k, device=logits.device)[None, :], perms].sum(-1)  # [B, P]
    return perms[score.argmax(-1)]


def sort_metrics(logits: torch.Tensor, order: torch.Tensor) -> dict[str, torch.Tensor]:
    """``segment_acc``: fraction of transcripts whose argmax position is right (chance 1/K).
    ``order_acc``: fraction of samples whose best joint permutation is exactly right (chance 1/K!)."""
    with torch.no_grad():
        seg = (logits.argmax(-1) == order).float().mean()
        whole = (best_permutation(logits) == order).all(-1).float().mean()
    return {"segment_acc": seg, "order_acc": whole}
