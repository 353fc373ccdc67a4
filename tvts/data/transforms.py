"""Video preprocessing: short-side resize, random (train) or centre (eval) crop, /255, normalise.

Mirrors the published pipeline (``video_transforms``): Resize short side to int(224 * 1.2) = 268,
RandomCrop / CenterCrop 224, ImageNet mean/std (both TVTS and TVTSv2 use ImageNet statistics). The published
v2 code resizes with PIL NEAREST and v1 bilinearly; here the interpolation is a parameter (default bilinear
with antialiasing on tensors; ``pil-*`` resizes each frame with Pillow, as the released code does, for exact
reproduction) and :meth:`VideoTransform.describe` records exactly what was done. ``resize_mode="squash"``
resizes every frame to ``size x size`` without keeping the aspect ratio and without a crop (what the released
TVTSv2 feature-extraction script does).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import PIL
import torchvision
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tvts.data.choices import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, RESIZE_MODES,
                               TIME_ORDERS)
from tvts.errors import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD", "INTERPOLATIONS", "RESIZE_MODES", "VideoTransform"]

_INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    # Pillow's own resampling, frame by frame (slower): what the released code's PIL transforms compute
    "pil-nearest": InterpolationMode.NEAREST,
    "pil-bilinear": InterpolationMode.BILINEAR,
    "pil-bicubic": InterpolationMode.BICUBIC,
}
assert tuple(_INTERPOLATIONS) == INTERPOLATIONS


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
        resize_mode: str = "short_side",
    ):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"size must be an int >= 1, got {size!r}", field="size")
        if not (isinstance(resize_ratio, (int, float)) and resize_ratio >= 1.0):
            raise ConfigError(f"resize_ratio must be >= 1, got {resize_ratio!r}", field="resize_ratio")
        if time_order not in TIME_ORDERS:
            raise ConfigError(f"time_order must be one of {TIME_ORDERS}, got {time_order!r}", field="data.time_order")
        if resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}", field="resize_mode")
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
        self.resize_mode = resize_mode
        self._mode = _INTERPOLATIONS[interpolation]
        self._pil = interpolation.startswith("pil-")
        self._antialias = not interpolation.endswith("nearest")

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[T, 3, H, W]`` -> uint8 ``[T, 3, h, w]``: short side to ``short_side`` (aspect kept) or, when
        squashing, ``size x size``."""
        target = [self.size, self.size] if self.resize_mode == "squash" else [self.short_side]
        if not self._pil:
            return TF.resize(x, target, interpolation=self._mode, antialias=self._antialias)
        # torchvision resizes a PIL image with Pillow's own filter: the released code's exact numbers
        return torch.stack([TF.pil_to_tensor(TF.resize(TF.to_pil_image(f), target, interpolation=self._mode))
                            for f in x])

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
        x = self._resize(self._as_tensor(frames).permute(0, 3, 1, 2))
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
            x = self._resize(x)
        if self.resize_mode == "short_side":  # a squashed frame is size x size already
            x = self._crop(x, rng)
        x = x.to(torch.float32).div_(255.0)
        return TF.normalize(x, list(self.mean), list(self.std))

    def _crop(self, x: torch.Tensor, rng: np.random.Generator | None) -> torch.Tensor:
        if not self.train:
            return TF.center_crop(x, [self.size, self.size])
        if rng is None:
            raise ConfigError("a train VideoTransform needs an rng for the crop position")
        h, w = x.shape[-2:]
        top, left = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
        return TF.crop(x, top, left, self.size, self.size)

    def describe(self) -> dict:
        """The exact preprocessing, to store beside extracted features."""
        return {
            "input": "uint8 RGB [T, H, W, 3]",
            "resize": {
                "mode": self.resize_mode,
                "short_side": self.short_side if self.resize_mode == "short_side" else None,
                "resize_ratio": self.resize_ratio if self.resize_mode == "short_side" else None,
                "interpolation": self.interpolation,
                "antialias": self._antialias,
                "keep_aspect_ratio": self.resize_mode == "short_side",
            },
            "crop": {"size": self.size, "mode": "none" if self.resize_mode == "squash" else ("random" if self.train else "center")},
            "time_order": self.time_order,
            "scale": "1/255",
            "mean": list(self.mean),
            "std": list(self.std),
            "output": f"float32 [T, 3, {self.size}, {self.size}]",
            "library": (f"Pillow {PIL.__version__} via torchvision {torchvision.__version__}" if self._pil
                        else f"torchvision {torchvision.__version__} transforms.v2.functional"),
        }

    def __repr__(self) -> str:
        return (
            f"VideoTransform(size={self.size}, resize_ratio={self.resize_ratio}, train={self.train}, "
            f"interpolation={self.interpolation!r}, mean={self.mean}, std={self.std}, time_order={self.time_order!r}, "
            f"resize_mode={self.resize_mode!r})"
        )
