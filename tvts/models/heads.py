"""Sort heads: given video tokens and K shuffled transcript features, predict the transcripts' order.

A head is a joint-attention trunk over the video tokens and the K transcripts, then an output layer on
the K transcript states ``h`` ``[B, K, d]``, one of three ways of modelling the order (TVTS Table 3;
conventions in ``tvts.objectives.sorting``):

- ``kway`` (the paper's, Eq. 2): logits ``[B, K, K]``, ``logits[b, i, j]`` = score that shuffled
  transcript ``i`` is the ``j``-th one in time;
- ``pairwise``: logits ``[B, K(K-1)/2]``, one per pair (i, j), i < j, of :func:`pairs` (K): "transcript
  i comes before transcript j", a linear layer on ``[h_i ; h_j]``;
- ``factorial``: logits ``[B, K!]`` over the whole orders ``sorting._permutations(K)``, a linear layer
  on the concatenated ``[h_1 ; ... ; h_K]``.

Both heads see the text features as given; the stop-gradient of TVTS is applied by the caller.
``video=None`` runs the head without any video token (the "text only" rows of TVTS appendix Table 13).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache, partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from tvts.models.vit import VideoTokens, init_linear

from tvts.config import SORT_OUTPUTS  # noqa: F401  (what a sort head outputs; the sort losses read each)


@lru_cache(maxsize=None)
def pairs(k: int) -> torch.Tensor:
    """The K(K-1)/2 item pairs ``[P, 2]``, rows (i, j) with i < j: (0, 1), (0, 2), ..., (K-2, K-1)."""
    return torch.tensor(list(itertools.combinations(range(k), 2)), dtype=torch.long)


class PairwiseOutput(nn.Module):
    """Transcript states ``[B, K, d]`` → ``[B, K(K-1)/2]``: for each pair (i, j), i < j, of ``pairs(K)``,
    the logit that transcript i comes before transcript j, ``proj([h_i ; h_j])``."""

    def __init__(self, num_segments: int, width: int):
        super().__init__()
        self.register_buffer("pairs", pairs(num_segments).clone(), persistent=False)  # [P, 2]
        self.proj = nn.Linear(2 * width, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        both = torch.cat([h[:, self.pairs[:, 0]], h[:, self.pairs[:, 1]]], dim=-1)  # [B, P, 2d]
        return self.proj(both).squeeze(-1)


class FactorialOutput(nn.Module):
    """Transcript states ``[B, K, d]`` → ``[B, K!]``: one K!-way classification over the whole orders,
    ``proj([h_1 ; ... ; h_K])`` (transcripts in their shuffled input order)."""

    def __init__(self, num_segments: int, width: int):
        super().__init__()
        self.proj = nn.Linear(num_segments * width, math.factorial(num_segments))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h.flatten(1))


def _check_output(output: str) -> None:
    if output not in SORT_OUTPUTS:
        raise ValueError(f"unknown sort output '{output}' (known: {', '.join(SORT_OUTPUTS)})")


class SortTransformer(nn.Module):
    """The paper's head: 2 joint-attention blocks over ``[video tokens ; K texts]`` (+ a type embedding),
    final norm on the text positions, then ``head``: the linear K-way classifier (``kway``; names match
    the published ``pred_model``), or a ``PairwiseOutput`` / ``FactorialOutput``.

    ``video_in`` / ``text_in`` map encoder widths to the head width; they are Identity (no parameters)
    when the widths already agree, as in the published ViT-B + DistilBERT model.
    """

    def __init__(self, num_segments: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 video_width: int, text_width: int, output: str = "kway"):
        super().__init__()
        _check_output(output)
        self.output = output
        self.video_in = nn.Linear(video_width, width) if video_width != width else nn.Identity()
        self.text_in = nn.Linear(text_width, width) if text_width != width else nn.Identity()
        self.type_embed = nn.Parameter(torch.zeros(1, 2, width))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(width)
        if output == "kway":
            self.head = nn.Linear(width, num_segments)
        elif output == "pairwise":
            self.head = PairwiseOutput(num_segments, width)
        else:
            self.head = FactorialOutput(num_segments, width)

    def forward(self, video: VideoTokens | None, texts: torch.Tensor) -> torch.Tensor:
        """``texts``: ``[B, K, W_t]`` → logits ``[B, K, K]`` (kway), ``[B, K(K-1)/2]`` (pairwise) or
        ``[B, K!]`` (factorial)."""
        t = self.text_in(texts) + self.type_embed[:, 1:2]
        k = t.shape[1]
        x = t if video is None else torch.cat([self.video_in(video.tokens) + self.type_embed[:, 0:1], t], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, -k:]))


class PointerSortHead(nn.Module):
    """Joint attention over ``[CLS ; K slot tokens ; K texts]``, where slot token k is the mean of the
    video tokens of the k-th temporal part of the clip plus a learned slot embedding; transcript i
    scores slot j by ``<W_t h_i, W_v h_j> / sqrt(d)``.

    Each transcript is still classified into one of K positions (Eq. 2), but the classifier is the
    video itself rather than a fixed linear layer, which gives a learning signal from the first
    steps with a randomly initialised video encoder (see the README's note on sort heads). That is
    the ``kway`` output (``query``, ``key``); ``pairwise`` and ``factorial`` put ``head`` (a
    ``PairwiseOutput`` / ``FactorialOutput``) on the transcript states instead.
    """

    def __init__(self, num_segments: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 video_width: int, text_width: int, output: str = "kway"):
        super().__init__()
        _check_output(output)
        self.output = output
        self.k = num_segments
        self.video_in = nn.Linear(video_width, width)
        self.text_in = nn.Linear(text_width, width)
        self.slot_embed = nn.Parameter(torch.zeros(1, num_segments, width))
        self.type_embed = nn.Parameter(torch.zeros(1, 3, width))  # cls, slot, text
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(width)
        if output == "kway":
            self.query = nn.Linear(width, width)
            self.key = nn.Linear(width, width)
        elif output == "pairwise":
            self.head = PairwiseOutput(num_segments, width)
        else:
            self.head = FactorialOutput(num_segments, width)
        nn.init.trunc_normal_(self.slot_embed, std=0.02)
        self.apply(init_linear)

    def forward(self, video: VideoTokens | None, texts: torch.Tensor) -> torch.Tensor:
        """``texts``: ``[B, K, W_t]`` → logits ``[B, K, K]`` (kway), ``[B, K(K-1)/2]`` (pairwise) or
        ``[B, K!]`` (factorial)."""
        b, k, _ = texts.shape
        t = self.text_in(texts) + self.type_embed[:, 2:3]
        slots = self.slot_embed.expand(b, -1, -1) + self.type_embed[:, 1:2]
        if video is None:
            x = torch.cat([slots, t], dim=1)
        else:
            v = self.video_in(video.tokens)
            per_slot = v[:, 1:].reshape(b, video.num_slots, video.tokens_per_slot, -1).mean(2)  # [B, S, d]
            # Pool the S encoder time slots into the K temporal parts of the clip.
            parts = F.adaptive_avg_pool1d(per_slot.transpose(1, 2), k).transpose(1, 2)  # [B, K, d]
            x = torch.cat([v[:, :1] + self.type_embed[:, 0:1], slots + parts, t], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        if self.output != "kway":
            return self.head(x[:, -k:])
        q, kk = self.query(x[:, -k:]), self.key(x[:, -2 * k:-k])
        return q @ kk.transpose(1, 2) / math.sqrt(q.shape[-1])


SORT_HEADS = {"transformer": SortTransformer, "pointer": PointerSortHead}
