"""Transcript sorting losses and metrics for the three ways of modelling the order (TVTS Table 3), and
the sort-accuracy metrics of TVTS appendix Table 13.

Conventions shared by the heads (``tvts.models.heads``) and the losses here, for K shuffled items:

- ``order`` ``[B, K]``: ``order[b, i]`` is the original position of shuffled item i (o_i of Eq. 2);
- ``kway`` logits ``[B, K, K]``: ``logits[b, i, j]`` scores item i being the j-th in time (Eq. 2);
- ``pairwise`` logits ``[B, K(K-1)/2]``: one logit per pair ``pairs(K)[p] = (i, j)``, i < j in
  ``itertools.combinations`` order, for "item i comes before item j";
- ``factorial`` logits ``[B, K!]``: one logit per whole order ``_permutations(K)[p]`` (a ``[K]`` row
  giving each item's position, ``itertools.permutations`` order, i.e. lexicographic).

The video-ordering objectives (``tvts.objectives.video_order``) reuse them for shuffled video parts.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from tvts.data.segments import MAX_SEGMENTS

from tvts.config import SORT_OUTPUTS
from tvts.models.heads import pairs  # noqa: F401  (re-exported: the pair table the pairwise loss reads)


# ---------------------------------------------------------------------------------------- index tables
@lru_cache(maxsize=None)
def _permutations(k: int) -> torch.Tensor:
    """All K! orders ``[K!, K]``; row p gives each item's position (lexicographic order of rows)."""
    if k > MAX_SEGMENTS:
        raise ValueError(f"whole-order decoding enumerates K! orders; K={k} is too large")
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)  # [K!, K]


def permutation_index(order: torch.Tensor) -> torch.Tensor:
    """``order`` ``[B, K]`` (each row a permutation of 0..K-1) → ``[B]``, the row of ``_permutations(K)``
    equal to it (the class of the K!-way classification)."""
    perms = _permutations(order.shape[1]).to(order.device)  # [K!, K]
    match = (order[:, None, :] == perms[None]).all(-1)  # [B, K!]
    if not bool(match.any(-1).all()):
        raise ValueError("order has a row that is not a permutation of 0..K-1")
    return match.float().argmax(-1)


# ---------------------------------------------------------------------------------------- losses
def kway_sort_loss(logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[B, K, K]`` (transcript i → position j), ``order`` ``[B, K]`` with o_i the original
    position of shuffled transcript i. Mean over all B·K transcripts of −log softmax(p^i)_{o_i}."""
    k = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, k).float(), order.reshape(-1))


def pairwise_sort_loss(logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[B, K(K-1)/2]`` (pair p = (i, j): "i comes before j"), ``order`` ``[B, K]``. Binary
    cross-entropy with target ``o_i < o_j``, mean over all B·K(K-1)/2 pairs."""
    ij = pairs(order.shape[1]).to(order.device)
    target = (order[:, ij[:, 0]] < order[:, ij[:, 1]]).float()  # [B, P]
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def factorial_sort_loss(logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[B, K!]`` over whole orders, ``order`` ``[B, K]``. Cross-entropy on the index of
    ``order`` among ``_permutations(K)``, mean over the B samples."""
    return F.cross_entropy(logits.float(), permutation_index(order))


SORT_LOSSES = {"kway": kway_sort_loss, "pairwise": pairwise_sort_loss, "factorial": factorial_sort_loss}


def sort_loss(logits: torch.Tensor, order: torch.Tensor, output: str = "kway") -> torch.Tensor:
    """The loss of sort output ``output`` (``kway`` | ``pairwise`` | ``factorial``)."""
    if output not in SORT_LOSSES:
        raise ValueError(f"unknown sort output '{output}' (known: {', '.join(SORT_OUTPUTS)})")
    return SORT_LOSSES[output](logits, order)


# ---------------------------------------------------------------------------------------- decoding
def best_permutation(logits: torch.Tensor) -> torch.Tensor:
    """The joint assignment of positions maximising the summed log-probabilities: ``[B, K, K]`` →
    ``[B, K]``, a permutation per sample (transcript i → position)."""
    b, k, _ = logits.shape
    perms = _permutations(k).to(logits.device)  # [P, K]
    logp = logits.float().log_softmax(-1)  # [B, K, K]
    # score[b, p] = sum_i logp[b, i, perms[p, i]]
    score = logp[:, torch.arange(k, device=logits.device)[None, :], perms].sum(-1)  # [B, P]
    return perms[score.argmax(-1)]


def _pairwise_best_permutation(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, K(K-1)/2]`` → ``[B, K]``: the order maximising the summed pair log-probabilities,
    log σ(l_ij) where it puts i before j and log σ(−l_ij) where it puts j before i (enumerated)."""
    perms = _permutations(k).to(logits.device)  # [K!, K]
    ij = pairs(k).to(logits.device)  # [P, 2]
    sign = (perms[:, ij[:, 0]] < perms[:, ij[:, 1]]).float() * 2 - 1  # [K!, P]: +1 where i before j
    score = F.logsigmoid(logits.float()[:, None, :] * sign[None]).sum(-1)  # [B, K!]
    return perms[score.argmax(-1)]


def num_items(logits: torch.Tensor, output: str) -> int:
    """K from the shape of the logits of sort output ``output``."""
    if output == "kway":
        return logits.shape[-1]
    n = logits.shape[-1]
    for k in range(2, 8):
        if n == (k * (k - 1) // 2 if output == "pairwise" else math.factorial(k)):
            return k
    raise ValueError(f"{n} {output} logits match no K in 2..7")


def predicted_order(logits: torch.Tensor, output: str = "kway") -> torch.Tensor:
    """The predicted whole order ``[B, K]`` (item i → position), a permutation per sample.

    ``kway``: the best joint assignment (``best_permutation``); ``pairwise``: the order maximising the
    summed pair log-probabilities (enumerating the K! orders, K <= 7); ``factorial``: the argmax order.
    """
    if output == "kway":
        return best_permutation(logits)
    k = num_items(logits, output)
    if output == "pairwise":
        return _pairwise_best_permutation(logits, k)
    if output == "factorial":
        return _permutations(k).to(logits.device)[logits.argmax(-1)]
    raise ValueError(f"unknown sort output '{output}' (known: {', '.join(SORT_OUTPUTS)})")


def sort_metrics(logits: torch.Tensor, order: torch.Tensor, output: str = "kway") -> dict[str, torch.Tensor]:
    """``segment_acc``: fraction of transcripts whose predicted position is right (chance 1/K): for
    ``kway`` each transcript's argmax position (its own K-way classification), for ``pairwise`` and
    ``factorial`` (which score no single transcript's position) its position in ``predicted_order``.
    ``order_acc``: fraction of samples whose predicted whole order is exactly right (chance 1/K!)."""
    with torch.no_grad():
        best = predicted_order(logits, output)
        position = logits.argmax(-1) if output == "kway" else best
        seg = (position == order).float().mean()
        whole = (best == order).all(-1).float().mean()
    return {"segment_acc": seg, "order_acc": whole}
