"""TVTS video encoder: a ViT over cube embeddings with joint space-time attention (TVTS Section 3.3).

Parameter names follow the published TVTS checkpoint (``video_model.*``): ``patch_embed.proj``
(Conv3d), ``cls_token``, ``pos_embed`` (spatial, with a [CLS] slot), ``temporal_embed`` (one per time
slot, zero-initialised), ``blocks.i`` (timm ViT blocks, attention through SDPA), ``norm``.

With ``num_groups > 0`` (S-ViLM) the encoder also owns ``group_token`` (M learnable group tokens),
``grouping.j`` (the grouping block that runs after layer ``group_layers[j]``) and ``group_norm``; these
only read the video tokens, so the token sequence is the same as without grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from tvts.config import JointViTConfig
from tvts.models.grouping import GroupingBlock


@dataclass
class VideoTokens:
    """Output of a video encoder.

    ``tokens``: ``[B, 1 + S*N, W]``, the encoder's output sequence (after its final norm, where the
    encoder applies one to every token); token 0 is the video [CLS], then the kept tokens of time
    slot 0, slot 1, ... (``S`` slots of ``N`` kept tokens each). ``groups``: ``[B, M, W]`` group tokens
    (S-ViLM grouping), or None.
    """

    tokens: torch.Tensor
    num_slots: int
    tokens_per_slot: int
    groups: torch.Tensor | None = None

    @property
    def cls(self) -> torch.Tensor:  # [B, W]
        return self.tokens[:, 0]

    def per_slot(self) -> torch.Tensor:  # [B, S, N, W]
        b, _, w = self.tokens.shape
        return self.tokens[:, 1:].reshape(b, self.num_slots, self.tokens_per_slot, w)

    def join_parts(self, k: int) -> "VideoTokens":
        """The outputs of ``B*K`` parts (row ``b*K + k`` = part k of clip b, each of S slots) → ``B`` clips
        of ``K*S`` slots: clip b's tokens are its parts' slot tokens in time order, and its [CLS] the mean of
        their [CLS]. Group tokens are not joined (None)."""
        bk, _, w = self.tokens.shape
        if bk % k:
            raise ValueError(f"{bk} rows do not hold K={k} parts per clip")
        b = bk // k
        cls = self.tokens[:, 0].reshape(b, k, w).mean(1, keepdim=True)
        slots = self.tokens[:, 1:].reshape(b, k * self.num_slots * self.tokens_per_slot, w)
        return VideoTokens(torch.cat([cls, slots], dim=1), k * self.num_slots, self.tokens_per_slot)


class CubeEmbed(nn.Module):
    """Non-overlapping ``tubelet x patch x patch`` cubes → tokens. ``[B, T, 3, H, W]`` → ``[B, S, P, W]``
    with ``S = T / tubelet`` time slots and ``P = (H / patch)^2`` spatial positions."""

    def __init__(self, tubelet: int, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv3d(3, width, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.proj(frames.transpose(1, 2))  # [B, W, S, h, w]
        return x.flatten(3).permute(0, 2, 3, 1)  # [B, S, P, W]


class JointSpaceTimeViT(nn.Module):
    """ViT-B/16-style video encoder (joint attention over [CLS] and every kept cube token).

    S-ViLM grouping (``cfg.num_groups = M > 0``): after ViT layer ``l`` (1-based) of ``cfg.group_layers``,
    a :class:`~tvts.models.grouping.GroupingBlock` updates the M group tokens from that layer's kept
    video tokens (not the [CLS]); the final group tokens, after ``group_norm``, are ``VideoTokens.groups``.
    With ``cfg.group_self_attention`` the group tokens also enter at the input, after the video tokens, and
    join every layer's self-attention (the [CLS] and the video tokens then read them too).
    """

    def __init__(self, cfg: JointViTConfig):
        super().__init__()
        self.cfg = cfg
        grid = cfg.img_size // cfg.patch
        self.num_patches = grid * grid
        self.width = cfg.width
        self.patch_embed = CubeEmbed(cfg.tubelet, cfg.patch, cfg.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, cfg.width))
        # Zero at start, as in the published code (only pos_embed and cls_token get trunc_normal).
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.max_slots, cfg.width))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(cfg.depth)
        )
        self.norm = norm(cfg.width)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_linear)
        if cfg.num_groups > 0:
            # Built and initialised last, so that the ViT's own parameters draw the same random numbers
            # with and without grouping.
            self.group_token = nn.Parameter(torch.zeros(1, cfg.num_groups, cfg.width))
            self.grouping = nn.ModuleList(GroupingBlock(cfg.width, cfg.group_tau, cfg.mlp_ratio, cfg.group_assign) for _ in cfg.group_layers)
            self.group_norm = norm(cfg.width)
            trunc_normal_(self.group_token, std=0.02)
            self.grouping.apply(init_linear)
            self.group_norm.apply(init_linear)

    def num_slots(self, num_frames: int) -> int:
        return num_frames // self.cfg.tubelet

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> VideoTokens:
        """``frames``: ``[B, T, 3, H, W]`` float; ``keep``: optional ``[B, S, N]`` long, the kept patch
        indices of each time slot (masked tokens are dropped, no [MASK] token)."""
        x = self.patch_embed(frames)  # [B, S, P, W]
        b, s, p, w = x.shape
        if s > self.cfg.max_slots:
            raise ValueError(f"{s} time slots but the temporal embedding has {self.cfg.max_slots}")
        x = x + self.pos_embed[:, None, 1:, :] + self.temporal_embed[:, :s, None, :]
        if keep is not None:
            if keep.shape[:2] != (b, s):
                raise ValueError(f"keep has shape {tuple(keep.shape)}, expected [{b}, {s}, N]")
            x = torch.gather(x, 2, keep[..., None].expand(-1, -1, -1, w))
        n = x.shape[2]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, x.reshape(b, s * n, w)], dim=1)
        groups = self.group_token.expand(b, -1, -1) if self.cfg.num_groups > 0 else None  # [B, M, W]
        m = self.cfg.num_groups if self.cfg.group_self_attention else 0
        if m:  # the group tokens ride at the end of the sequence: [B, 1 + S*N + M, W]
            x = torch.cat([x, groups], dim=1)
        for layer, blk in enumerate(self.blocks, start=1):
            x = checkpoint(blk, x, use_reentrant=False) if self.cfg.grad_checkpointing and self.training else blk(x)
            if groups is not None:
                if m:
                    groups = x[:, -m:]
                for j, after in enumerate(self.cfg.group_layers):
                    if after == layer:
                        groups, _ = self.grouping[j](groups, x[:, 1:x.shape[1] - m])
                        if m:
                            x = torch.cat([x[:, :-m], groups], dim=1)
        if m:
            x = x[:, :-m]
        return VideoTokens(self.norm(x), s, n, groups=None if groups is None else self.group_norm(groups))


def init_linear(m: nn.Module) -> None:
    """The ViT initialisation of one module (``model.apply(init_linear)``): truncated-normal Linear weights
    (std 0.02), zero biases, LayerNorm weight 1 and bias 0."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
