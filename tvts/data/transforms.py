"""Video preprocessing: short-side resize, random (train) or centre (eval) crop, /255, normalise.

Mirrors the published pipeline (``video_transforms``): Resize short side to int(224 * 1.2) = 268,
RandomCrop / CenterCrop 224, ImageNet mean/std (both TVTS and TVTSv2 use ImageNet statistics). The published
v2 code resizes with PIL NEAREST and v1 bilinearly; here the interpolation is a parameter (default bilinear
with antialiasing) and :meth:`VideoTransform.describe` records exactly what was done.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tvts.errors import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD", "VideoTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

TIME_ORDERS = ("keep", "shuffle")
"""``keep``: frames in time order; ``shuffle``: a control that removes the order (see ``VideoTransform``)."""

_INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


class VideoTransform:
    """uint8 frames ``[T, H, W, 3]`` (numpy or torch) -> float32 ``[T, 3, size, size]``.

    Steps: resize the short side to ``floor(size * resize_ratio)`` (268 for 224 and 1.2, as published),
    keeping the aspect ratio (antialiased for bilinear/bicubic); crop ``size x size`` at a position drawn from
    ``rng`` (``train=True``) or in the centre (``train=False``); divide by 255; normalise with ``mean``/``std``.
    All frames of a clip get the same crop. ``time_order="shuffle"`` first puts the frames in a random order
    (an appearance-only control for experiments, not for real use).
    """

    def __init__(
        self,
        size: int,
        resize_ratio: float = 1.2,
        train: bool = False,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation: str = "bilinear",
        time_order: str = "keep",
    ):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"size must be an int >= 1, got {size!r}", field="size")
        if not (isinstance(resize_ratio, (int, float)) and resize_ratio >= 1.0):
            raise ConfigError(f"resize_ratio must be >= 1, got {resize_ratio!r}", field="resize_ratio")
        if time_order not in TIME_ORDERS:
            raise ConfigError(f"time_order must be one of {TIME_ORDERS}, got {time_order!r}", field="data.time_order")
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(
                f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}", field="interpolation"
            )
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ConfigError(f"mean/std need 3 values with std > 0, got {mean}, {std}", field="mean/std")
        self.size = int(size)
        self.resize_ratio = float(resize_ratio)
        # The published code uses int(224 * 1.2) = 268 (truncation); the epsilon keeps e.g. 100 * 1.15 at 115.
        self.short_side = max(self.size, int(math.floor(self.size * self.resize_ratio + 1e-6)))
        self.train = bool(train)
        self.mean, self.std = mean, std
        self.interpolation = interpolation
        self.time_order = time_order
        self._mode = _INTERPOLATIONS[interpolation]
        self._antialias = interpolation != "nearest"

    @staticmethod
    def _as_tensor(frames) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            shape = tuple(getattr(frames, "shape", ()))
            raise ConfigError(f"VideoTransform expects uint8 [T, H, W, 3] frames, got {getattr(frames, 'dtype', type(frames))} {shape}")
        return x

    def resize(self, frames) -> np.ndarray:
        """The resize step alone: uint8 ``[T, H, W, 3]`` -> uint8 ``[T, h, w, 3]`` with short side
        ``short_side`` (what a frame store keeps; ``__call__(..., resized=True)`` does the rest)."""
        x = self._as_tensor(frames).permute(0, 3, 1, 2)
        x = TF.resize(x, [self.short_side], interpolation=self._mode, antialias=self._antialias)
        return x.permute(0, 2, 3, 1).contiguous().numpy()

    def __call__(self, frames, rng: np.random.Generator | None = None, resized: bool = False) -> torch.Tensor:
        """``frames`` uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, size, size]``. ``rng`` picks the crop in
        train mode (required there) and is ignored in eval mode. ``resized``: the frames already went
        through :meth:`resize` (same result as resizing here)."""
        x = self._as_tensor(frames).permute(0, 3, 1, 2)  # [T, 3, H, W]
        if self.time_order == "shuffle":
            # The appearance-only control: every frame kept, their order not (a random order per training
            # sample; in evaluation one fixed order, the same for every clip).
            if self.train and rng is None:
                raise ConfigError("a train VideoTransform needs an rng for the frame order")
            order = (rng if self.train else np.random.default_rng(0)).permutation(len(x))
            x = x[torch.from_numpy(order)]
        if not resized:
            x = TF.resize(x, [self.short_side], interpolation=self._mode, antialias=self._antialias)
        h, w = x.shape[-2:]
        if self.train:
            if rng is None:
                raise ConfigError("a train VideoTransform needs an rng for the crop position")
            top = int(rng.integers(0, h - self.size + 1))
            left = int(rng.integers(0, w - self.size + 1))
            x = TF.crop(x, top, left, self.size, self.size)
        else:
            x = TF.center_crop(x, [self.size, self.size])
        x = x.to(torch.float32).div_(255.0)
        return TF.normalize(x, list(self.mean), list(self.std))

    def describe(self) -> dict:
        """The exact preprocessing, to store beside extracted features."""
        return {
            "input": "uint8 RGB [T, H, W, 3]",
            "resize": {
                "short_side": self.short_side,
                "resize_ratio": self.resize_ratio,
                "interpolation": self.interpolation,
                "antialias": self._antialias,
                "keep_aspect_ratio": True,
            },
            "crop": {"size": self.size, "mode": "random" if self.train else "center"},
            "time_order": self.time_order,
            "scale": "1/255",
            "mean": list(self.mean),
            "std": list(self.std),
            "output": f"float32 [T, 3, {self.size}, {self.size}]",
            "library": f"torchvision {torchvision.__version__} transforms.v2.functional",
        }

    def __repr__(self) -> str:
        return (
            f"VideoTransform(size={self.size}, resize_ratio={self.resize_ratio}, train={self.train}, "
            f"interpolation={self.interpolation!r}, mean={self.mean}, std={self.std}, time_order={self.time_order!r})"
        )
