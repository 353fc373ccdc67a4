"""The ``video_clip`` family (TVTSv2): a CLIP ViT with divided space-time attention, the CLIP text transformer (its
first blocks frozen) and the transcript-sort head, all meeting at the shared width ``embed_dim``.

Both CLIP towers project to the shared space themselves (``proj``, ``text_projection``), so the
embeddings are the encoder outputs: the video [CLS] token and the end-of-text token. The sort head sees
the projected video tokens and the (detached) projected transcript embeddings.
"""

from __future__ import annotations

import torch

from tvts.config import ModelConfig
from tvts.models.base import VideoTextModel
from tvts.models.clip_text import ClipTextEncoder
from tvts.models.divided_vit import DividedSpaceTimeViT
from tvts.models.heads import SORT_HEADS
from tvts.models.vit import VideoTokens

# Parameters that are new in TVTSv2 (no CLIP counterpart): the temporal attention with its norm, the
# temporal embedding and the sort head. Everything else is inherited from CLIP.
NEW_PARAMETERS = (".timeattn.", ".ln_3.", "video_model.temporal_embedding", "pred_model.")


def is_new_parameter(name: str) -> bool:
    """Whether TVTSv2 parameter ``name`` has no CLIP counterpart."""
    return any(k in name for k in NEW_PARAMETERS)


class VideoClip(VideoTextModel):
    """``pretrained_text`` exists for the registry's common signature; the CLIP text tower is built from
    its config with random weights either way, and pretrained ones come from ``tvts convert``."""

    def __init__(self, cfg: ModelConfig, pretrained_text: bool = True):
        super().__init__()
        self.config = cfg
        d = cfg.embed_dim
        self.video_model = DividedSpaceTimeViT(cfg.video, d)
        self.text_model = ClipTextEncoder(cfg.text, d)
        h = cfg.sort_head
        self.pred_model = None if h.kind == "none" else SORT_HEADS[h.kind](
            cfg.num_segments, h.width or d, h.depth, h.heads, h.mlp_ratio, d, d, output=h.output)

    def video_embedding(self, video: VideoTokens) -> torch.Tensor:
        """The projected video [CLS] ``[B, D]``."""
        return video.cls

    def text_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """The projected end-of-text features are the embeddings ``[..., D]``."""
        return feats

    def inherited(self, name: str) -> bool:
        return not is_new_parameter(name)
