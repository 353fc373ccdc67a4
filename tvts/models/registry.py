"""The two ways to get a model: ``build_model(name_or_config)`` and ``load_model(checkpoint_dir)``."""

from __future__ import annotations

import os
from pathlib import Path

from tvts.config import ModelConfig, load_model_config
from tvts.models.tvts import CONFIG_NAME, TVTS

FAMILIES = {"tvts": TVTS}


def build_model(name_or_config: str | ModelConfig, overrides: list[str] = (), pretrained_text: bool = True) -> TVTS:
    """A fresh model from a named config (``configs/models/<name>.yaml``), a YAML path or a ModelConfig."""
    cfg = name_or_config if isinstance(name_or_config, ModelConfig) else load_model_config(name_or_config, overrides)
    return FAMILIES[cfg.family](cfg, pretrained_text=pretrained_text)


def load_model(directory: str | os.PathLike, map_location: str = "cpu") -> TVTS:
    """A saved model (``model.safetensors`` + ``config.json``), loaded strictly."""
    import json

    family = json.loads((Path(directory) / CONFIG_NAME).read_text()).get("family", "tvts") if (Path(directory) / CONFIG_NAME).is_file() else "tvts"
    return FAMILIES[family].from_pretrained(directory, map_location=map_location)
