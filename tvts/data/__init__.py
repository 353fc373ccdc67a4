"""Data: transcripts, decoding, frame sampling, transforms, masking, datasets, the synthetic generator."""

from __future__ import annotations


def video_clip(path, model, *, resize_ratio: float = 1.2, num_frames: int | None = None, timeout: float = 0.0):
    """A video file as ``model.encode_video`` takes it: ``num_frames`` (default: the model's) frames at the
    midpoints of equal parts of the whole video, short side resized to ``img_size * resize_ratio``, centre
    crop ``img_size``, ImageNet mean/std: float32 ``[1, T, 3, S, S]``. Raises ``SampleError`` for a file
    that cannot be decoded (``timeout`` > 0: stopped after that many seconds)."""
    from tvts.data.datasets import ClipDataset
    from tvts.data.transforms import VideoTransform

    v = model.config.video
    ds = ClipDataset([path], num_frames or v.num_frames, VideoTransform(v.img_size, resize_ratio, train=False),
                     timeout=timeout)
    return ds[0]["frames"].unsqueeze(0)
