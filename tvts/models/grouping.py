"""S-ViLM grouping block (S-ViLM appendix A.2, after GroupViT and k-means mask transformers).

A set of M learnable group tokens is updated by k-means-style cross attention over the video tokens:
the group tokens are the queries (the cluster centres), the video tokens the keys and values. Every
video token is assigned to exactly one group by a Gumbel-softmax over the group axis made hard (one-hot
in the forward pass, straight-through gradients of the soft assignment in the backward pass); each group
token then moves by the mean of the (projected) video tokens assigned to it, followed by an MLP, both
with residual connections. The video tokens themselves are left unchanged.

``assign`` (``model.video.group_assign``) picks how tokens join groups in training: ``gumbel`` (the paper),
``argmax`` (the same one-hot without the Gumbel noise, as the k-means cross-attention of kMaX-DeepLab) or
``soft`` (the softmax weights themselves: every token joins every group a little, in training and evaluation).
The last two are there to take the paper's choice apart (``benchmarks/objectives.py``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp

from tvts.config import GROUP_ASSIGNS


def hard_assignment(logits: torch.Tensor, tau: float, sample: bool) -> torch.Tensor:
    """One-hot assignment over the last axis with straight-through gradients.

    ``logits``: ``[..., M]``. ``sample=True`` (training): ``F.gumbel_softmax(logits, tau, hard=True)``,
    the forward value is the one-hot argmax of ``(logits + Gumbel noise) / tau``. ``sample=False``
    (evaluation): the same without noise, so encoding a video is deterministic; the backward pass
    still takes the gradient of ``softmax(logits / tau)``.
    """
    if sample:
        return F.gumbel_softmax(logits, tau=tau, hard=True, dim=-1)
    soft = (logits / tau).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def assignment(logits: torch.Tensor, tau: float, assign: str, training: bool) -> torch.Tensor:
    """Assignment weights ``[..., M]`` of ``logits`` ``[..., M]`` by ``assign`` (one of ``GROUP_ASSIGNS``):
    ``gumbel`` samples in training only (:func:`hard_assignment`), ``argmax`` never samples, ``soft`` is
    ``softmax(logits / tau)``."""
    if assign == "soft":
        return (logits / tau).softmax(-1)
    if assign not in GROUP_ASSIGNS:
        raise ValueError(f"unknown assignment '{assign}' (known: {', '.join(GROUP_ASSIGNS)})")
    return hard_assignment(logits, tau, sample=training and assign == "gumbel")


class GroupingBlock(nn.Module):
    """Group tokens ``[B, M, W]`` + video tokens ``[B, N, W]`` → updated group tokens ``[B, M, W]``.

    Parameters: ``norm_groups``, ``norm_tokens`` (pre-norms), ``q`` (group tokens → queries), ``k``,
    ``v`` (video tokens → keys, values), ``proj`` (output projection of the pooled values), ``norm_mlp``
    and ``mlp`` (timm ``Mlp``). Single-head attention, as in GroupViT's assignment attention.
    """

    def __init__(self, width: int, tau: float = 1.0, mlp_ratio: float = 4.0, assign: str = "gumbel"):
        super().__init__()
        self.tau, self.assign_mode = tau, assign
        self.scale = width ** -0.5
        self.norm_groups = nn.LayerNorm(width, eps=1e-6)
        self.norm_tokens = nn.LayerNorm(width, eps=1e-6)
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def logits(self, groups: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Assignment logits ``[B, N, M]``: scaled dot products of the video tokens' keys with the groups' queries."""
        q = self.q(self.norm_groups(groups))  # [B, M, W]
        k = self.k(self.norm_tokens(tokens))  # [B, N, W]
        return k @ q.transpose(1, 2) * self.scale

    def assign(self, groups: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Assignment ``A`` ``[B, N, M]``: row n is the one-hot group of video token n (the weights of each
        group for ``soft``)."""
        return assignment(self.logits(groups, tokens), self.tau, self.assign_mode, self.training)

    def forward(self, groups: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``groups`` ``[B, M, W]``, ``tokens`` ``[B, N, W]`` → (new ``groups`` ``[B, M, W]``, assignment ``[B, N, M]``).

        Group m's update is the mean of ``v(tokens)`` over the tokens assigned to it, zero for a group
        that receives no token: ``A^T v / max(sum_n A_nm, 1)`` (for ``soft``, the weighted mean, a group's
        total weight below 1 counting as 1). (The counts are integers in the forward
        pass; an additive epsilon instead of the clamp would send gradients of size 1/epsilon through
        the straight-through counts of empty groups.)
        """
        a = self.assign(groups, tokens)  # [B, N, M]
        v = self.v(self.norm_tokens(tokens))  # [B, N, W]
        pooled = a.transpose(1, 2) @ v / a.sum(1)[..., None].clamp(min=1)  # [B, M, W]
        groups = groups + self.proj(pooled)
        groups = groups + self.mlp(self.norm_mlp(groups))
        return groups, a
