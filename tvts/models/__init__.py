"""Video encoders, text encoders, heads, and the registry of named model configs."""

from tvts.models.registry import build_model, load_model
from tvts.models.tvts import TVTS
from tvts.models.tvtsv2 import TVTSv2

__all__ = ["TVTS", "TVTSv2", "build_model", "load_model"]
