"""The TVTS model: video encoder, text encoder, projections to the common space, sort head.

Module names follow the published TVTS checkpoint (``video_model``, ``text_model``, ``vid_proj``,
``txt_proj``, ``pred_model``) so that converters stay simple renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from tvts.config import ModelConfig, model_config_from_dict, to_dict
from tvts.errors import CheckpointError
from tvts.models.heads import SORT_HEADS
from tvts.models.text import HFTextEncoder
from tvts.models.vit import JointSpaceTimeViT, VideoTokens

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TEXT_DIR = "text"  # tokenizer + text-architecture config, so a saved model needs nothing else


class TVTS(nn.Module):
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

    # ------------------------------------------------------------------ encoding
    def encode_video(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, 3, H, W]`` → video embedding ``[B, D]`` (projected [CLS], not normalised)."""
        return self.vid_proj(self.video_model(frames, keep).cls)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """n strings → text embeddings ``[n, D]`` (projected [CLS], not normalised)."""
        return self.txt_proj(self.text_model(texts))

    def forward(self, frames: torch.Tensor, texts: list[list[str]], keep: torch.Tensor | None = None,
                stop_gradient: bool = True, sort: bool = True, sort_with_video: bool = True) -> dict[str, torch.Tensor]:
        """One pretraining forward.

        ``frames`` ``[B, T, 3, H, W]``; ``texts``: B lists of K shuffled transcripts; ``keep``: kept cube
        indices ``[B, S, N]``. Returns ``video_embed`` ``[B, D]``, ``text_embed`` ``[B, D]`` (mean of the
        K transcript embeddings), ``segment_embed`` ``[B, K, D]`` and, when ``sort``, ``sort_logits``
        ``[B, K, K]``. With ``stop_gradient`` the sort head gets detached text features, so L_sort
        sends no gradient into the text encoder.
        """
        b, k = len(texts), len(texts[0])
        video = self.video_model(frames, keep)
        feats = self.text_model([t for sample in texts for t in sample]).reshape(b, k, -1)  # [B, K, W_t]
        segment_embed = self.txt_proj(feats)
        out = {"video_embed": self.vid_proj(video.cls), "segment_embed": segment_embed, "text_embed": segment_embed.mean(1)}
        if sort:
            out["sort_logits"] = self.sort_logits(video if sort_with_video else None, feats.detach() if stop_gradient else feats)
        return out

    def sort_logits(self, video: VideoTokens | None, text_feats: torch.Tensor) -> torch.Tensor:
        """``text_feats`` ``[B, K, W_t]`` → ``[B, K, K]``; ``video=None``: the head sees no video token."""
        return self.pred_model(video, text_feats)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` + ``config.json`` (+ ``text/`` tokenizer), replacing ``directory``
        atomically (written beside it, then renamed)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "tvts_family": self.config.family})
            (tmp / CONFIG_NAME).write_text(json.dumps(to_dict(self.config), indent=2))
            self.text_model.save_tokenizer(tmp / TEXT_DIR)
            self.text_model.model.config.save_pretrained(str(tmp / TEXT_DIR))
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> "TVTS":
        """Rebuild from ``config.json`` and load ``model.safetensors`` strictly."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(str(directory), missing=[CONFIG_NAME])
        cfg = model_config_from_dict(json.loads((directory / CONFIG_NAME).read_text()), str(directory / CONFIG_NAME))
        if (directory / TEXT_DIR).is_dir():
            cfg.text.name = str(directory / TEXT_DIR)
        model = cls(cfg, pretrained_text=False)
        load_state_strict(model, load_file(str(directory / WEIGHTS_NAME), device=str(map_location)), str(directory / WEIGHTS_NAME))
        return model


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place: the old one is renamed away first, so a crash leaves either
    the old or the new folder, never a half-written one."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that reports every missing, unexpected or mis-shaped key in one error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
                  if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(source, missing, unexpected, mismatched)
    model.load_state_dict(state, strict=True)
