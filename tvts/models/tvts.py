"""The TVTS model: video encoder, text encoder, projections to the common space, sort head.

Module names follow the published TVTS checkpoint (``video_model``, ``text_model``, ``vid_proj``,
``txt_proj``, ``pred_model``) so that converters stay simple renames.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from tvts.config import ModelConfig
from tvts.models.base import CONFIG_NAME, WEIGHTS_NAME, VideoTextModel, load_state_strict, replace_dir
from tvts.models.heads import SORT_HEADS
from tvts.models.text import HFTextEncoder
from tvts.models.vit import JointSpaceTimeViT, VideoTokens

__all__ = ["TVTS", "CONFIG_NAME", "WEIGHTS_NAME", "TEXT_DIR", "load_state_strict", "replace_dir"]

TEXT_DIR = "text"  # tokenizer + text-architecture config, so a saved model needs nothing else


class TVTS(VideoTextModel):
    def __init__(self, cfg: ModelConfig, pretrained_text: bool = True):
        super().__init__()
        self.config = cfg
        self.video_model = JointSpaceTimeViT(cfg.video)
        self.text_model = HFTextEncoder(cfg.text, pretrained=pretrained_text)
        w, wt, d = cfg.video.width, self.text_model.width, cfg.embed_dim
        # 'minimal' projections of the published model: ReLU before the text linear layer.
        self.txt_proj = nn.Sequential(nn.ReLU(), nn.Linear(wt, d))
        self.vid_proj = nn.Sequential(nn.Linear(w, d))
        h = cfg.sort_head
        self.pred_model = SORT_HEADS[h.kind](cfg.num_segments, h.width or w, h.depth, h.heads, h.mlp_ratio, w, wt)

    def video_embedding(self, video: VideoTokens) -> torch.Tensor:
        """Projected [CLS] ``[B, D]``."""
        return self.vid_proj(video.cls)

    def text_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """Projected text features ``[..., D]``."""
        return self.txt_proj(feats)

    def _save_assets(self, directory: Path) -> None:
        self.text_model.save_tokenizer(directory / TEXT_DIR)
        self.text_model.model.config.save_pretrained(str(directory / TEXT_DIR))

    @classmethod
    def _config_for_folder(cls, cfg: ModelConfig, directory: Path) -> ModelConfig:
        if (directory / TEXT_DIR).is_dir():
            cfg.text.name = str(directory / TEXT_DIR)
        return cfg
