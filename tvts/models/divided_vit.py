"""TVTSv2 video encoder: a CLIP ViT with divided space-time attention (TVTSv2 Section 3.1, appendix C).

Parameter names are those of the published TVTSv2 checkpoints (``video_model.*``), which extend the CLIP
image tower: ``conv1`` (per-frame patch embedding, no bias), ``class_embedding`` (one [CLS] per video),
``positional_embedding`` (spatial, shared by all frames, with a [CLS] slot), ``temporal_embedding`` (one
row per frame, Eq. 1), ``ln_pre``, ``transformer.resblocks.i``, ``ln_post`` and ``proj``. Every block is
the CLIP block (``ln_1``, ``attn``, ``ln_2``, ``mlp``) plus a temporal attention (``ln_3``, ``timeattn``)
initialised to output exactly zero.

Token layout: ``[CLS ; frame 0 ; frame 1 ; ...]``, each frame holding the same ``n`` kept spatial
positions (tube masking), so the sequence length is ``1 + T*n``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tvts.config import DividedViTConfig
from tvts.models.vit import VideoTokens, init_linear

LN_EPS = 1e-5  # CLIP's LayerNorm eps, everywhere in TVTSv2


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


class DividedAttention(nn.Module):
    """Multi-head attention over ``[CLS ; T frames of n tokens]`` restricted to groups.

    ``axis='space'``: a patch attends to the [CLS] and the patches of its own frame.
    ``axis='time'``: a patch attends to the [CLS] and the patches at its spatial position in every frame.
    The [CLS] attends to every token in both. One ``qkv`` Linear (rows q, k, v; heads contiguous), one
    ``proj`` Linear; every group is one batch row of ``F.scaled_dot_product_attention``.
    """

    def __init__(self, width: int, heads: int, axis: str):
        super().__init__()
        if axis not in ("space", "time"):
            raise ValueError(f"axis must be space or time, not {axis!r}")
        self.heads, self.axis = heads, axis
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``[B, 1 + T*n, W]`` → ``[B, 1 + T*n, W]``."""
        b, length, w = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, length, 3, h, w // h).permute(2, 0, 3, 1, 4)  # each [B, H, L, d]
        cls = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # [B, H, 1, d]
        patches = self._grouped(q[:, :, 1:], k, v, num_frames)  # [B, H, T*n, d]
        out = torch.cat([cls, patches], dim=2).transpose(1, 2).reshape(b, length, w)
        return self.proj(out)

    def _grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t: int) -> torch.Tensor:
        """Patch queries ``[B, H, T*n, d]`` against ``[CLS ; own group]`` of ``k``, ``v`` ``[B, H, 1+T*n, d]``."""
        b, h, tn, d = q.shape
        n = tn // t

        def to_groups(z: torch.Tensor) -> torch.Tensor:  # [B, H, T*n, d] -> [B*G, H, S, d]
            z = z.reshape(b, h, t, n, d)
            if self.axis == "time":
                z = z.transpose(2, 3)  # [B, H, n, T, d]: group = spatial position
            return z.transpose(1, 2).reshape(-1, h, z.shape[3], d)

        groups = t if self.axis == "space" else n

        def with_cls(z: torch.Tensor) -> torch.Tensor:  # keys/values: the [CLS] joins every group
            cls = z[:, :, :1].unsqueeze(1).expand(b, groups, h, 1, d).reshape(b * groups, h, 1, d)
            return torch.cat([cls, to_groups(z[:, :, 1:])], dim=2)

        out = F.scaled_dot_product_attention(to_groups(q), with_cls(k), with_cls(v))  # [B*G, H, S, d]
        out = out.reshape(b, groups, h, -1, d).transpose(1, 2)  # [B, H, G, S, d]
        if self.axis == "time":
            out = out.transpose(2, 3)  # back to [B, H, T, n, d]
        return out.reshape(b, h, tn, d)


class DividedBlock(nn.Module):
    """Temporal attention, spatial attention, MLP (pre-LN).

    ``wiring='published'`` (the released TVTSv2 models, from Frozen-in-Time's block): the temporal output
    only changes the input of the spatial attention, ``y = x + S(ln_1(x + T(ln_3(x))))``.
    ``wiring='residual'``: it stays in the residual stream, ``h = x + T(ln_3(x)); y = h + S(ln_1(h))``.
    Both end with ``y + mlp(ln_2(y))``. ``timeattn`` starts at ``qkv = 0`` (so q = k = v = 0) and
    ``proj.weight = 1, proj.bias = 0``: its output is exactly zero, and the block is the CLIP block.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: str, wiring: str):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = DividedAttention(width, heads, "space")
        self.ln_3 = nn.LayerNorm(width, eps=LN_EPS)
        self.timeattn = DividedAttention(width, heads, "time")
        self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, hidden), gelu=ACTIVATIONS[act](), c_proj=nn.Linear(hidden, width)))
        self.time_in_residual = wiring == "residual"

    def reset_temporal(self) -> None:
        """The zero-output initialisation of the temporal attention (TVTSv2 appendix D, Table 6)."""
        nn.init.zeros_(self.timeattn.qkv.weight)
        nn.init.zeros_(self.timeattn.qkv.bias)
        nn.init.ones_(self.timeattn.proj.weight)
        nn.init.zeros_(self.timeattn.proj.bias)
        nn.init.ones_(self.ln_3.weight)
        nn.init.zeros_(self.ln_3.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``[B, 1 + T*n, W]`` → same shape."""
        h = x + self.timeattn(self.ln_3(x), num_frames)
        y = (h if self.time_in_residual else x) + self.attn(self.ln_1(h), num_frames)
        return y + self.mlp(self.ln_2(y))


class DividedTransformer(nn.Module):
    """The block stack (``resblocks``), with optional gradient checkpointing per block in training."""

    def __init__(self, cfg: DividedViTConfig):
        super().__init__()
        self.grad_checkpointing = cfg.grad_checkpointing
        self.resblocks = nn.ModuleList(
            DividedBlock(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.wiring) for _ in range(cfg.depth))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.resblocks:
            x = checkpoint(blk, x, num_frames, use_reentrant=False) if ckpt else blk(x, num_frames)
        return x


class DividedSpaceTimeViT(nn.Module):
    """Frames ``[B, T, 3, H, W]`` → :class:`VideoTokens` ``[B, 1 + T*n, E]`` already projected to the
    shared width ``E`` (token 0 is the video embedding).

    ``post_norm='all'``: ``ln_post`` on every token, then ``@ proj`` (published B/32, B/16).
    ``post_norm='cls'``: ``ln_post`` on the [CLS] only; the patch tokens are projected un-normalised
    (published H/14, OpenCLIP's pooled/tokens convention). The video embedding is the same either way.
    """

    def __init__(self, cfg: DividedViTConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        grid = cfg.img_size // cfg.patch
        self.num_patches = grid * grid
        self.width = cfg.width
        w, scale = cfg.width, cfg.width ** -0.5
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch, stride=cfg.patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(1 + self.num_patches, w))
        # New in TVTSv2. Zero, not the published W^-0.5 * randn: with a zero temporal embedding and
        # the zero temporal attention the encoder starts as the CLIP image encoder (it then learns at
        # the lr of new modules, see tvts.train.optim).
        self.temporal_embedding = nn.Parameter(torch.zeros(cfg.max_slots, w))
        self.ln_pre = nn.LayerNorm(w, eps=LN_EPS)
        self.transformer = DividedTransformer(cfg)
        self.ln_post = nn.LayerNorm(w, eps=LN_EPS)
        self.proj = nn.Parameter(scale * torch.randn(w, embed_dim))
        self.apply(init_linear)
        for blk in self.transformer.resblocks:
            blk.reset_temporal()

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> VideoTokens:
        """``frames`` ``[B, T, 3, H, W]`` (T <= max_slots); ``keep``: optional ``[B, T, n]`` kept patch
        indices, the same in every frame (tube mask); dropped patches are removed before the blocks."""
        b, t = frames.shape[:2]
        if t > self.cfg.max_slots:
            raise ValueError(f"{t} frames but the temporal embedding has {self.cfg.max_slots}")
        x = self.conv1(frames.flatten(0, 1))  # [B*T, W, h, w]
        x = x.flatten(2).transpose(1, 2).reshape(b, t, self.num_patches, self.width)
        x = x + self.positional_embedding[1:] + self.temporal_embedding[:t, None]
        if keep is not None:
            pos = tube_positions(keep, b, t)  # [B, n]
            x = torch.gather(x, 2, pos[:, None, :, None].expand(b, t, pos.shape[1], self.width))
        n = x.shape[2]
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype).expand(b, 1, self.width)
        x = self.ln_pre(torch.cat([cls, x.reshape(b, t * n, self.width)], dim=1))
        x = self.transformer(x, t)
        if self.cfg.post_norm == "all":
            x = self.ln_post(x)
        else:
            x = torch.cat([self.ln_post(x[:, :1]), x[:, 1:]], dim=1)
        return VideoTokens(x @ self.proj, t, n)


def tube_positions(keep: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """``keep`` ``[B, T, n]`` with identical rows per sample → the kept positions ``[B, n]``."""
    if keep.ndim != 3 or keep.shape[:2] != (batch, frames):
        raise ValueError(f"keep has shape {tuple(keep.shape)}, expected [{batch}, {frames}, n]")
    pos = keep[:, 0]
    if not torch.equal(keep, pos[:, None].expand_as(keep)):
        raise ValueError("divided attention needs the same kept positions in every frame (tube masking)")
    return pos
