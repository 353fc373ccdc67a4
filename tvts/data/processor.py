"""The video processor: a video file or decoded frames -> the exact tensor a model takes.

One object holds every preprocessing choice, frame sampling included, so that training's evaluation,
``tvts extract``, every ``tvts eval`` protocol and the Python API cannot disagree. It is saved beside the
weights (``preprocessor.json`` in the model folder) and read back with :meth:`VideoProcessor.from_pretrained`
(or ``tvts.load_model_and_processor``). In the spirit of an HF processor / open_clip's preprocess, but for
clips:

- frame sampling (``frame_sampling``): ``segments`` = the midpoint of each of ``num_frames`` equal parts of
  the clip (TSN at test time, the papers' evaluation); ``linspace`` = frame indices
  ``int(linspace(0, n - 1, num_frames))`` (the released TVTSv2 feature-extraction script);
- resizing (``resize_mode``, ``resize_ratio``, ``interpolation``), crop and normalisation: a
  :class:`~tvts.data.transforms.VideoTransform`.

:data:`PRESETS` reproduce the published models' own pipelines; ``num_frames`` and ``size`` always come from
the model (a preset fixes how, not how many).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvts.data.choices import (FRAME_SAMPLINGS, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, PRESETS, RESIZE_MODES,
                               TIME_ORDERS)
from tvts.files import CONFIG_NAME, PREPROCESSOR_NAME
from tvts.errors import ConfigError

__all__ = ["FRAME_SAMPLINGS", "PRESETS", "VideoProcessor"]


@dataclass(frozen=True)
class VideoProcessor:
    """A file path or uint8 frames ``[T, H, W, 3]`` -> float32 ``[1, T, 3, S, S]``; an image ``[H, W, 3]`` ->
    ``[1, 3, S, S]`` (see :meth:`__call__`). Saved in a model folder as ``preprocessor.json``."""

    num_frames: int
    size: int
    frame_sampling: str = "segments"
    resize_mode: str = "short_side"
    resize_ratio: float = 1.2
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    time_order: str = "keep"  # "shuffle": the appearance-only control of training experiments

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not isinstance(self.num_frames, (int, np.integer)) or self.num_frames < 1:
            raise ConfigError(f"num_frames must be an int >= 1, got {self.num_frames!r}", field="num_frames")
        for name, value, choices in (("frame_sampling", self.frame_sampling, FRAME_SAMPLINGS),
                                     ("resize_mode", self.resize_mode, RESIZE_MODES),
                                     ("interpolation", self.interpolation, INTERPOLATIONS),
                                     ("time_order", self.time_order, TIME_ORDERS)):
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}", field=name)
        if not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ConfigError(f"size must be an int >= 1, got {self.size!r}", field="size")
        if not (isinstance(self.resize_ratio, (int, float)) and self.resize_ratio >= 1.0):
            raise ConfigError(f"resize_ratio must be >= 1, got {self.resize_ratio!r}", field="resize_ratio")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std need 3 values with std > 0, got {self.mean}, {self.std}", field="mean/std")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_preset(cls, name: str, num_frames: int, size: int) -> "VideoProcessor":
        """A preset of :data:`PRESETS` for a model taking ``num_frames`` frames of ``size`` x ``size``."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preprocessing preset '{name}' (known: {', '.join(PRESETS)})", field="preset")
        return cls(num_frames=num_frames, size=size, **PRESETS[name])

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> "VideoProcessor":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown preprocessing field(s) {unknown} (known: {sorted(known)})", source=source)
        try:
            return cls(**d)
        except TypeError as e:  # a required field missing
            raise ConfigError(f"incomplete preprocessing record: {e}", source=source) from None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "VideoProcessor":
        """The processor saved in a model folder; a folder written before processors were saved (no
        ``preprocessor.json``) gets the default pipeline at the model's frames and size."""
        directory = Path(directory)
        path = directory / PREPROCESSOR_NAME
        if path.is_file():
            try:
                d = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError(f"not valid JSON: {e}", source=str(path)) from None
            return cls.from_dict(d, str(path))
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise ConfigError(f"{directory} is not a model folder (no {PREPROCESSOR_NAME}, no {CONFIG_NAME})", source=str(directory))
        video = json.loads(cfg_path.read_text()).get("video", {})
        return cls(num_frames=int(video.get("num_frames", 16)), size=int(video.get("img_size", 224)))

    def replace(self, **changes) -> "VideoProcessor":
        """A copy with some fields changed; ``None`` values are ignored (handy for optional CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``preprocessor.json`` into ``directory`` (beside, then renamed)."""
        path = Path(directory) / PREPROCESSOR_NAME
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ using
    def transform(self, train: bool = False):
        """The per-frame part, a :class:`~tvts.data.transforms.VideoTransform`: uint8 ``[T, H, W, 3]`` ->
        float32 ``[T, 3, S, S]``."""
        from tvts.data.transforms import VideoTransform

        return VideoTransform(self.size, self.resize_ratio, train=train, mean=self.mean, std=self.std,
                              interpolation=self.interpolation, time_order=self.time_order,
                              resize_mode=self.resize_mode)

    def times(self, start: float, end: float, fps: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """``[num_frames]`` seconds to decode for the part ``[start, end]`` of a video (a search window):
        ``segments``: the midpoints of equal parts (with ``rng``: a random time in each, TSN's training
        sampling); ``linspace``: the frames shown in it (``fps`` needed)."""
        if self.frame_sampling == "segments":
            from tvts.data.sampling import tsn_timestamps

            return tsn_timestamps(start, end, self.num_frames, rng)
        if fps <= 0:
            raise ConfigError("linspace frame sampling needs the video's frame rate", field="frame_sampling")
        first = int(np.floor(start * fps + 1e-6))
        last = max(first, int(np.ceil(end * fps - 1e-6)) - 1)
        return (np.linspace(first, last, self.num_frames).astype(np.int64) + 0.5) / fps

    def frame_times(self, duration: float, fps: float, frame_count: int, clips: int = 1) -> np.ndarray:
        """``[clips, num_frames]`` seconds to decode: the video cut into ``clips`` equal windows, sampled in
        each as ``frame_sampling`` says. ``linspace`` picks frame indices and asks for the middle of each
        frame's display time, ``(i + 0.5) / fps`` (exact for a constant frame rate)."""
        if clips < 1:
            raise ConfigError(f"clips must be >= 1, got {clips}", field="clips")
        t = self.num_frames
        if self.frame_sampling == "segments":
            w = duration / clips
            return np.stack([self.times(j * w, (j + 1) * w) for j in range(clips)])
        n = frame_count if frame_count > 0 else int(round(duration * fps))
        rate = fps if fps > 0 else (n / duration if duration > 0 else 1.0)
        edges = np.linspace(0, n, clips + 1)
        rows = []
        for j in range(clips):
            first, last = int(edges[j]), max(int(edges[j]), int(np.ceil(edges[j + 1])) - 1)
            rows.append((np.linspace(first, last, t).astype(np.int64) + 0.5) / rate)
        return np.stack(rows)

    def read(self, path: str | os.PathLike, clips: int = 1, rng: np.random.Generator | None = None,
             watchdog=None, threads: int | None = 1) -> np.ndarray:
        """uint8 ``[clips, num_frames, H, W, 3]``: the frames this processor samples from the video file (probe,
        :meth:`frame_times`, decode). ``rng`` (one clip only): a random time in each part of the video, TSN's
        training sampling (``segments``; ``linspace`` has nothing random). ``watchdog``: a
        :class:`~tvts.data.watchdog.Watchdog` that bounds each probe and decode (default: none). A file that
        cannot be read raises :class:`~tvts.errors.SampleError`."""
        from tvts.data.watchdog import Watchdog

        path, dog = os.fspath(path), watchdog if watchdog is not None else Watchdog(0.0)
        info = dog.call("probe", path)
        if rng is not None:
            if clips != 1:
                raise ConfigError(f"random frame times are drawn for one clip, not {clips}", field="clips")
            times = self.times(0.0, info.duration, info.fps, rng)[None]
        else:
            times = self.frame_times(info.duration, info.fps, info.num_frames, clips)
        frames = dog.call("decode_frames", path, times.reshape(-1), threads=threads)  # [clips * T, H, W, 3]
        return frames.reshape(clips, self.num_frames, *frames.shape[1:])

    def __call__(self, video, *, timeout: float = 0.0):
        """``video``: a file path -> float32 ``[1, T, 3, S, S]`` (``T = num_frames``, sampled as
        ``frame_sampling`` says); uint8 frames ``[T, H, W, 3]`` (numpy or torch, taken as they are) ->
        ``[1, T, 3, S, S]``; one uint8 image ``[H, W, 3]`` -> ``[1, 3, S, S]``, which ``encode_video`` takes as
        one frame. A file that cannot be decoded raises :class:`~tvts.errors.SampleError` (``timeout`` > 0:
        stopped after that many seconds)."""
        if isinstance(video, (str, os.PathLike)):
            from tvts.data.watchdog import Watchdog

            return self.transform()(self.read(video, watchdog=Watchdog(timeout), threads=None)[0], None).unsqueeze(0)
        shape = tuple(getattr(video, "shape", ()))
        if len(shape) == 3:
            return self.transform()(video[None], None)
        if len(shape) == 4:
            return self.transform()(video, None).unsqueeze(0)
        raise ConfigError(f"expected a path, uint8 frames [T, H, W, 3] or an image [H, W, 3], got "
                          f"{type(video).__name__} of shape {shape}", field="video")

    def describe(self) -> dict:
        """Everything that decides the tensor, for records beside extracted features."""
        return {**self.to_dict(), "transform": self.transform().describe()}
