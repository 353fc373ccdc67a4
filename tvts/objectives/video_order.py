"""Video-ordering pretext tasks of TVTS Table 1, on the K temporal parts of a clip encoded on their own
(``VideoTextModel.encode_parts``: a part sees no other part and its time slots are numbered from 0, so its
features carry nothing of where it came from in the clip; that is what makes ordering shuffled parts a task
at all). ``part_embeddings`` is also what MERLOT's frame-transcript contrastive in ``tvts.objectives.tvts``
matches with the segments.

Both objectives train L = w_c · L_base + λ · L_order, with L_base the clip-level video-transcript
InfoNCE (TVTS Eq. 3) exactly as ``TVTSObjective`` computes it, on the full clip:

- ``MerlotLikeObjective`` (TVTS Section 4.5, "MERLOT-like"): sort K shuffled parts by K-way
  classification with the knowledge of the ordered transcripts;
- ``VCOPObjective`` (Xu et al. 2019, clip order prediction, no text): classify which of the K!
  permutations shuffled the parts.

The shuffle is a random permutation per sample drawn from the global torch RNG on the batch's device
(the trainer reseeds it at every checkpoint, so a resumed run draws the same shuffles). The heads are
the objective's own pretraining-only parameters; they are not part of the released model.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from tvts.config import ObjectiveConfig, video_width
from tvts.models.vit import init_linear
from tvts.objectives.contrastive import info_nce
from tvts.objectives.sorting import kway_sort_loss, pairs, sort_loss, sort_metrics


# ---------------------------------------------------------------------------------------- parts
def part_embeddings(model: nn.Module, frames: torch.Tensor, keep: torch.Tensor | None, k: int) -> torch.Tensor:
    """The video embeddings of the K parts, each encoded on its own: ``[B, K, D]``."""
    return model.video_embedding(model.encode_parts(frames, keep, k)).reshape(frames.shape[0], k, -1)


def random_orders(b: int, k: int, device: torch.device) -> torch.Tensor:
    """``[B, K]``: a uniformly random permutation of 0..K-1 per sample (global RNG of ``device``)."""
    return torch.rand(b, k, device=device).argsort(-1)


def shuffle_parts(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, T, ...]`` with its K = ``perm.shape[1]`` temporal parts reordered: part i of the result
    is part ``perm[b, i]`` of ``x``, so ``perm[b, i]`` is shuffled part i's original position (the
    ``order`` convention of the transcripts)."""
    b, t = x.shape[:2]
    k = perm.shape[1]
    parts = x.reshape(b, k, t // k, *x.shape[2:])
    return parts[torch.arange(b, device=x.device)[:, None], perm].reshape(x.shape)


def unshuffle(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Shuffled items ``x`` ``[B, K, ...]`` (item i at original position ``order[b, i]``) → the same
    items in time order: ``result[b, order[b, i]] = x[b, i]``."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], order.argsort(-1)]


def shuffled_part_features(model: nn.Module, frames: torch.Tensor, keep: torch.Tensor | None, k: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle the K parts of each clip (a random permutation per sample) and encode each on its own.
    Returns ``(perm, parts)``: ``perm`` ``[B, K]`` (shuffled part i is part ``perm[b, i]`` of the clip, the
    label of the ordering tasks) and the shuffled parts' [CLS] features ``[B, K, W]``."""
    b = frames.shape[0]
    perm = random_orders(b, k, frames.device)
    parts = model.encode_parts(shuffle_parts(frames, perm), None if keep is None else shuffle_parts(keep, perm), k)
    return perm, parts.cls.reshape(b, k, -1)


def _token_width(model: nn.Module) -> int:
    """Width of the video encoder's output tokens (TVTSv2's divided ViT projects them to embed_dim)."""
    cfg = model.config
    return video_width(cfg) if cfg.family == "video_bert" else cfg.embed_dim


# ---------------------------------------------------------------------------------------- L_base
def clip_contrastive(cfg: ObjectiveConfig, model: nn.Module, batch: dict) -> tuple[dict, dict, torch.Tensor]:
    """L_base on the full clip, as ``TVTSObjective`` with ``contrastive: clip``: InfoNCE between the video
    embedding and the mean of the K transcript embeddings. Returns ``(losses, metrics, feats)`` with
    ``feats`` the transcript features ``[B, K, W_t]`` (shuffled order) for the ordering task."""
    feats = model.transcript_features(batch["texts"])
    losses, metrics = {}, {}
    if cfg.contrastive_weight > 0:
        video_embed = model.video_embedding(model.video_model(batch["frames"], batch.get("keep")))
        nce = info_nce(video_embed, model.text_embedding(feats).mean(1), cfg.temperature)
        losses["contrastive"] = cfg.contrastive_weight * nce["loss"]
        metrics.update(v2t_acc=nce["v2t_acc"], t2v_acc=nce["t2v_acc"])
    return losses, metrics, feats


def _check_clip_contrastive(cfg: ObjectiveConfig) -> None:
    if cfg.contrastive != "clip":
        raise ValueError(f"objective '{cfg.name}' trains the clip-level L_base of TVTS Table 1; "
                         "objective.contrastive=frame is an option of objective 'tvts' (appendix Table 12)")


# ---------------------------------------------------------------------------------------- MERLOT-like
class MerlotLikeHead(nn.Module):
    """Joint attention over ``[K shuffled part features ; K ordered transcript features]``; shuffled part
    i scores position j by ``<W_q h_i, W_k g_j> / sqrt(d)`` with ``g_j`` the state of the j-th transcript
    in time. Parts get a type embedding only (they carry no position); transcripts a position embedding
    and a type embedding.

    ``forward(parts [B, K, W_v], transcripts [B, K, W_t])`` → logits ``[B, K, K]``.
    """

    def __init__(self, num_segments: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 video_width: int, text_width: int):
        super().__init__()
        self.part_in = nn.Linear(video_width, width)
        self.text_in = nn.Linear(text_width, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_segments, width))  # transcript positions 1..K
        self.type_embed = nn.Parameter(torch.zeros(1, 2, width))  # part, transcript
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(width)
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_linear)

    def forward(self, parts: torch.Tensor, transcripts: torch.Tensor) -> torch.Tensor:
        k = parts.shape[1]
        p = self.part_in(parts) + self.type_embed[:, 0:1]
        t = self.text_in(transcripts) + self.pos_embed + self.type_embed[:, 1:2]
        x = torch.cat([p, t], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        q, kk = self.query(x[:, :k]), self.key(x[:, k:])
        return q @ kk.transpose(1, 2) / math.sqrt(q.shape[-1])


class MerlotLikeObjective(nn.Module):
    """L = w_c · L_base + λ · L_sort(parts): the K parts of the clip are shuffled, each is encoded on its
    own, and ``head`` classifies each shuffled part into one of the K positions (K-way, as Eq. 2) given
    the transcripts in their true order. The transcript features are detached when ``stop_gradient``
    (as in TVTS). Caption batches (no ``order``) train L_base only."""

    def __init__(self, cfg: ObjectiveConfig, model: nn.Module, num_samples: int = 0):
        super().__init__()
        _check_clip_contrastive(cfg)
        self.cfg = cfg
        m = model.config
        h = m.sort_head
        self.head = MerlotLikeHead(m.num_segments, h.width or _token_width(model), h.depth, h.heads, h.mlp_ratio,
                                   _token_width(model), model.text_model.width)

    def forward(self, model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        c = self.cfg
        losses, metrics, feats = clip_contrastive(c, model, batch)
        if c.sort_weight > 0 and "order" in batch:
            perm, parts = shuffled_part_features(model, batch["frames"], batch.get("keep"), feats.shape[1])
            transcripts = unshuffle(feats, batch["order"])  # [B, K, W_t], in time order
            logits = self.head(parts, transcripts.detach() if c.stop_gradient else transcripts)
            losses["sort"] = c.sort_weight * kway_sort_loss(logits, perm)
            metrics.update({f"sort_{n}": v for n, v in sort_metrics(logits, perm, "kway").items()})
        return losses, metrics


# ---------------------------------------------------------------------------------------- VCOP
class VCOPHead(nn.Module):
    """VCOP's order classifier (Xu et al. 2019, Section 3.3): for every pair (i, j), i < j, of part
    features, ``pair_mlp([f_i ; f_j])`` (one shared Linear + ReLU); the K(K-1)/2 pair features are
    concatenated, dropped out (p = 0.5 as in VCOP) and a linear layer scores the K! permutations
    (``sorting._permutations(K)`` order).

    ``forward(parts [B, K, W_v])`` → logits ``[B, K!]``.
    """

    def __init__(self, num_segments: int, video_width: int, hidden: int, dropout: float = 0.5):
        super().__init__()
        self.register_buffer("pairs", pairs(num_segments).clone(), persistent=False)  # [P, 2]
        self.pair_mlp = nn.Sequential(nn.Linear(2 * video_width, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(len(self.pairs) * hidden, math.factorial(num_segments))
        self.apply(init_linear)

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        both = torch.cat([parts[:, self.pairs[:, 0]], parts[:, self.pairs[:, 1]]], dim=-1)  # [B, P, 2W]
        return self.classifier(self.dropout(self.pair_mlp(both).flatten(1)))


class VCOPObjective(nn.Module):
    """L = w_c · L_base + λ · CE(head(shuffled parts), index of the shuffle): the K parts of the clip are
    shuffled, each is encoded on its own (its [CLS] is the part feature) and ``head`` predicts which of
    the K! permutations was applied. No text enters the ordering task. Caption batches (no ``order``)
    train L_base only."""

    def __init__(self, cfg: ObjectiveConfig, model: nn.Module, num_samples: int = 0):
        super().__init__()
        _check_clip_contrastive(cfg)
        self.cfg = cfg
        m = model.config
        if m.num_segments > 6:
            raise ValueError(f"VCOP classifies the K! orders of the parts: K={m.num_segments} > 6 is too many")
        self.head = VCOPHead(m.num_segments, _token_width(model), m.sort_head.width or _token_width(model))

    def forward(self, model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        c = self.cfg
        losses, metrics, feats = clip_contrastive(c, model, batch)
        if c.sort_weight > 0 and "order" in batch:
            perm, parts = shuffled_part_features(model, batch["frames"], batch.get("keep"), feats.shape[1])
            logits = self.head(parts)  # [B, K!]
            losses["sort"] = c.sort_weight * sort_loss(logits, perm, "factorial")
            metrics.update({f"sort_{n}": v for n, v in sort_metrics(logits, perm, "factorial").items()})
        return losses, metrics
