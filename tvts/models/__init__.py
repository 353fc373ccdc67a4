"""Video encoders, text encoders, heads, and the registry of named model configs."""

from tvts.models.registry import build_model, load_model
from tvts.models.tvts import TVTS

__all__ = ["TVTS", "build_model", "load_model"]
