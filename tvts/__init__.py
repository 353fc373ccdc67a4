"""tvts: spatiotemporal video representations learned from narration (TVTS, TVTSv2, CPD, S-ViLM)."""

__version__ = "0.1.0"


def load_model_and_processor(directory, map_location: str = "cpu"):
    """``(model, processor)`` of a model folder (trained, or converted from a release): the model loaded
    strictly in evaluation mode, and the :class:`~tvts.data.processor.VideoProcessor` saved with it, which
    turns a video file (or decoded frames) into the ``[1, T, 3, S, S]`` tensor ``model.encode_video`` takes."""
    from tvts.data.processor import VideoProcessor
    from tvts.models import load_model

    return load_model(directory, map_location=map_location), VideoProcessor.from_pretrained(directory)
