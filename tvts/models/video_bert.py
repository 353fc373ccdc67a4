"""The ``video_bert`` family: a video encoder of this library (the joint space-time ViT of TVTS and S-ViLM, or
CPD's slow 3D ResNet), a BERT-family text encoder through ``transformers``, a projection of each into the
common space, and the optional sort head. TVTS (the published model), CPD and S-ViLM are configs of it.

Module names follow the published TVTS checkpoint (``video_model``, ``text_model``, ``vid_proj``,
``txt_proj``, ``pred_model``) so that converters stay simple renames.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from tvts.config import ModelConfig, VideoEncoderConfig, video_width
from tvts.models.base import CONFIG_NAME, WEIGHTS_NAME, VideoTextModel, load_state_strict, replace_dir
from tvts.models.heads import SORT_HEADS
from tvts.models.text import HFTextEncoder
from tvts.models.vit import JointSpaceTimeViT, VideoTokens

__all__ = ["VideoBert", "CONFIG_NAME", "WEIGHTS_NAME", "TEXT_DIR", "load_state_strict", "replace_dir"]

TEXT_DIR = "text"  # tokenizer + text-architecture config, so a saved model needs nothing else


def build_video_encoder(cfg: VideoEncoderConfig) -> nn.Module:
    """The family's video encoder: the joint ViT, or CPD's slow-pathway 3D ResNet."""
    if cfg.arch == "r3d_slow":
        from tvts.models.r3d import SlowR3D

        return SlowR3D(cfg)
    return JointSpaceTimeViT(cfg)


def text_projection(kind: str, text_width: int, embed_dim: int) -> nn.Sequential:
    """``minimal``: ReLU + linear (the published TVTS model). ``mlp_bn``: CPD's two fully connected layers
    with batch norm, ReLU between them (a ReLU after the last one would confine every text embedding to
    the positive orthant before the l2 normalisation)."""
    if kind == "mlp_bn":
        return nn.Sequential(nn.Linear(text_width, text_width), nn.BatchNorm1d(text_width), nn.ReLU(),
                             nn.Linear(text_width, embed_dim), nn.BatchNorm1d(embed_dim))
    return nn.Sequential(nn.ReLU(), nn.Linear(text_width, embed_dim))


class VideoBert(VideoTextModel):
    """The TVTS model by default; also the shape of the CPD and S-ViLM models: ``video.arch: r3d_slow`` and ``text_proj: mlp_bn`` (CPD),
    group tokens with ``video.pool: groups`` (S-ViLM), ``sort_head.kind: none`` for no sort head."""

    def __init__(self, cfg: ModelConfig, pretrained_text: bool = True):
        super().__init__()
        self.config = cfg
        self.video_model = build_video_encoder(cfg.video)
        self.text_model = HFTextEncoder(cfg.text, pretrained=pretrained_text)
        w, wt, d = video_width(cfg), self.text_model.width, cfg.embed_dim
        self.txt_proj = text_projection(cfg.text_proj, wt, d)
        self.vid_proj = nn.Sequential(nn.Linear(w, d))
        h = cfg.sort_head
        self.pred_model = None if h.kind == "none" else SORT_HEADS[h.kind](
            cfg.num_segments, h.width or w, h.depth, h.heads, h.mlp_ratio, w, wt, output=h.output)

    def video_embedding(self, video: VideoTokens) -> torch.Tensor:
        """``[B, D]``: the projected [CLS] (``video.pool: cls``, TVTS), the projected mean of the other tokens
        (``mean``), or the mean of the projected group tokens (``groups``, S-ViLM)."""
        pool = self.config.video.pool
        if pool == "groups":
            return self.group_embedding(video).mean(1)
        if pool == "mean":
            return self.vid_proj(video.tokens[:, 1:].mean(1))
        return self.vid_proj(video.cls)

    def group_embedding(self, video: VideoTokens) -> torch.Tensor:
        """Projected group tokens ``[B, M, D]`` (S-ViLM)."""
        if video.groups is None:
            raise ValueError("this video encoder has no group tokens (model.video.num_groups)")
        return self.vid_proj(video.groups)

    def text_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """Projected text features ``[..., D]`` (batch norm, if any, over all leading dimensions)."""
        return self.txt_proj(feats.reshape(-1, feats.shape[-1])).reshape(*feats.shape[:-1], -1)

    def _save_assets(self, directory: Path) -> None:
        self.text_model.save_tokenizer(directory / TEXT_DIR)
        self.text_model.model.config.save_pretrained(str(directory / TEXT_DIR))

    @classmethod
    def _config_for_folder(cls, cfg: ModelConfig, directory: Path) -> ModelConfig:
        if (directory / TEXT_DIR).is_dir():
            cfg.text.name = str(directory / TEXT_DIR)
        return cfg
