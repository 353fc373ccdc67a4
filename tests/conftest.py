"""Shared test fixtures.

Media fixtures (tvts.data tests):
- ``make_video(path, frames_uint8 [T, H, W, 3], fps, *, gop=None, crf=0) -> str``: write an H.264 (libx264,
  yuv420p) MP4 with PyAV; ``gop`` sets the keyframe interval (to exercise seeking).
- ``make_yt_annotation(path, words, times, duration, **extra) -> str``: write a YT-Temporal annotation JSON.
- ``gray_code``: frames whose gray level encodes their index (``gray_code.frames(n, h, w)``) and the inverse
  (``gray_code.index(uint8 frames)``, ``gray_code.index_normalized(float frames, mean, std)``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest


def write_video(path, frames, fps, *, gop=None, crf=0) -> str:
    """Encode uint8 ``[T, H, W, 3]`` frames (even H, W) at ``fps`` into an H.264 MP4 at ``path``."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        options = {"crf": str(crf)}
        if gop is not None:
            options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        stream.options = options
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_yt_annotation(path, words, times, duration, **extra) -> str:
    """Write ``{"subtitles": [{"word", "time"}], "info": {"duration"}, **extra}`` to ``path``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    doc = {"subtitles": [{"word": w, "time": t} for w, t in zip(words, times)], "info": {"duration": duration}}
    doc.update(extra)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return path


class GrayCode:
    """Frame i is a uniform gray image of level ``base + step * i``; H.264 (crf 0, yuv420p) returns it within
    +-1 level, so rounding recovers i. Up to ``(255 - base) // step + 1`` frames."""

    def __init__(self, base: int = 8, step: int = 4):
        self.base, self.step = base, step
        self.max_frames = (255 - base) // step + 1

    def frames(self, n: int, h: int = 48, w: int = 64) -> np.ndarray:
        assert n <= self.max_frames, f"GrayCode encodes at most {self.max_frames} frames"
        levels = self.base + self.step * np.arange(n)
        return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).astype(np.uint8)

    def index(self, frames_uint8) -> np.ndarray:
        """``[T, H, W, 3]`` uint8 -> int ``[T]``; asserts every frame is close to a code level."""
        levels = np.asarray(frames_uint8, dtype=np.float64).reshape(len(frames_uint8), -1).mean(axis=1)
        return self._to_index(levels)

    def index_normalized(self, frames, mean, std) -> np.ndarray:
        """float ``[T, 3, h, w]`` normalised with ``mean``/``std`` -> int ``[T]``."""
        x = np.asarray(frames, dtype=np.float64)
        x = (x * np.asarray(std)[None, :, None, None] + np.asarray(mean)[None, :, None, None]) * 255.0
        return self._to_index(x.reshape(len(x), -1).mean(axis=1))

    def _to_index(self, levels: np.ndarray) -> np.ndarray:
        idx = np.rint((levels - self.base) / self.step)
        err = np.abs(levels - (self.base + self.step * idx))
        assert np.all(err <= 1.5), f"frames are not code levels: {levels}"
        return idx.astype(np.int64)


def write_audio_only(path) -> str:
    """An MP4 with one AAC audio stream and no video stream."""
    import av

    with av.open(os.fspath(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return os.fspath(path)


@pytest.fixture(scope="session")
def make_audio_only():
    return write_audio_only


@pytest.fixture(scope="session")
def make_video():
    return write_video


@pytest.fixture(scope="session")
def make_yt_annotation():
    return write_yt_annotation


@pytest.fixture(scope="session")
def gray_code():
    return GrayCode()
