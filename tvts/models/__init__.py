"""Video encoders, text encoders, heads, and the registry of named model configs."""

from tvts.models.registry import build_model, load_model
from tvts.models.video_bert import VideoBert
from tvts.models.video_clip import VideoClip

__all__ = ["VideoBert", "VideoClip", "build_model", "load_model"]
