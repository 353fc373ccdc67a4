"""The two ways to get a model: ``build_model(name_or_config)`` and ``load_model(checkpoint_dir)``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tvts.config import ModelConfig, canonical_family, load_model_config
from tvts.errors import ConfigError
from tvts.models.base import CONFIG_NAME, VideoTextModel
from tvts.models.video_bert import VideoBert
from tvts.models.video_clip import VideoClip

FAMILIES: dict[str, type[VideoTextModel]] = {"video_bert": VideoBert, "video_clip": VideoClip}


def build_model(name_or_config: str | ModelConfig, overrides: list[str] = (), pretrained_text: bool = True) -> VideoTextModel:
    """A fresh model from a named config (``tvts/configs/models/<name>.yaml``), a YAML path or a ModelConfig."""
    cfg = name_or_config if isinstance(name_or_config, ModelConfig) else load_model_config(name_or_config, overrides)
    family = canonical_family(cfg.family)
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{cfg.family}' (known: {', '.join(FAMILIES)})", field="model.family")
    cfg.family = family
    return FAMILIES[family](cfg, pretrained_text=pretrained_text)


def load_model(directory: str | os.PathLike, map_location: str = "cpu") -> VideoTextModel:
    """A saved model (``model.safetensors`` + ``config.json``), loaded strictly, in evaluation mode (call
    ``.train()`` to fine-tune it)."""
    path = Path(directory) / CONFIG_NAME
    family = canonical_family(json.loads(path.read_text()).get("family", "video_bert") if path.is_file() else "video_bert")
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{family}' (known: {', '.join(FAMILIES)})", field="family", source=str(path))
    return FAMILIES[family].from_pretrained(directory, map_location=map_location).eval()
