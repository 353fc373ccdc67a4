"""A frame store: every frame of a corpus decoded once, resized to the training resolution, in one file.

For a corpus that fits on disk at training resolution (the embedded dataset: 2,400 videos, 1.1 GB at
36x36), decoding each sample's span again in every epoch costs more than the model's step. The store
decodes every video once (:func:`~tvts.data.decode.decode_all`, in parallel processes), applies the
transform's deterministic resize (:meth:`~tvts.data.transforms.VideoTransform.resize`) and writes the
uint8 frames into one flat file read through ``numpy.memmap``, so every DataLoader worker shares the
page cache instead of a copy. A sample then reads the frames shown at its times exactly as
:func:`~tvts.data.decode.decode_frames` picks them (the last frame whose time is <= t; before the first
frame the first, past the end the last): same pixels, same crop, same tensor.

A video that cannot be decoded is recorded with its error and raises the same
:class:`~tvts.errors.SampleError` at training time, so bad samples are counted and replaced as usual.

Files in ``folder``: ``frames_<key>.u8`` (``[N, h, w, 3]`` uint8, all videos one after another) and
``frames_<key>.npz`` (per video: first frame, frame count, duration, error; per frame: its time). The key
hashes the video paths, their sizes and modification times and the resize, so a changed corpus or
resolution builds a new store. Both files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

from tvts.data.watchdog import POOL_START
from tvts.data.decode import VideoInfo, decode_all, probe
from tvts.data.transforms import VideoTransform
from tvts.errors import SampleError

__all__ = ["FrameStore"]

_EPS = 1e-6  # as in decode_frames: a frame at time <= t + _EPS is "at or before t"


def _key(paths: list[str], transform: VideoTransform) -> str:
    h = hashlib.sha256(json.dumps(transform.describe()["resize"], sort_keys=True).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{p}\0missing\0".encode())
    return h.hexdigest()[:20]


def _decode_one(args: tuple[str, VideoTransform]):
    """``(frames uint8 [n, h, w, 3] resized, times [n], duration, "")`` or ``(None, None, nan, "reason\\tdetail")``."""
    path, transform = args
    try:
        info: VideoInfo = probe(path)
        frames, times = decode_all(path, threads=1, return_times=True)
        return transform.resize(frames), times, info.duration, ""
    except SampleError as e:
        return None, None, float("nan"), f"{e.reason}\t{e.detail}"


class FrameStore:
    """Read side of a built store: :meth:`frames` and :meth:`duration` of video ``i`` (the i-th path)."""

    def __init__(self, frames_file: str | os.PathLike, index_file: str | os.PathLike, paths: list[str]):
        index = np.load(index_file)
        self.first, self.count = index["first"], index["count"]
        self.durations, self.times = index["duration"], index["times"]
        self.errors = [str(e) for e in index["errors"]]
        h, w = (int(x) for x in index["frame_size"])
        total = int(self.count.sum())
        self.frames_all = np.memmap(frames_file, dtype=np.uint8, mode="r", shape=(total, h, w, 3)) if total else \
            np.zeros((0, h, w, 3), dtype=np.uint8)
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.count)

    def _check(self, i: int) -> None:
        if self.errors[i]:
            reason, _, detail = self.errors[i].partition("\t")
            raise SampleError(reason, self.paths[i], detail)

    def duration(self, i: int) -> float:
        """What :func:`~tvts.data.decode.probe` read of video ``i``'s duration (raises its error if it had one)."""
        self._check(i)
        return float(self.durations[i])

    def frames(self, i: int, timestamps) -> np.ndarray:
        """uint8 ``[T, h, w, 3]``: the frames of video ``i`` shown at ``timestamps`` (seconds), already resized."""
        self._check(i)
        a, n = int(self.first[i]), int(self.count[i])
        times = self.times[a:a + n]
        pick = np.searchsorted(times, np.asarray(timestamps, dtype=np.float64) + _EPS, side="right") - 1
        return np.asarray(self.frames_all[a + np.clip(pick, 0, n - 1)])

    @classmethod
    def open_or_build(cls, folder: str | os.PathLike, paths: list[str], transform: VideoTransform,
                      workers: int = 2, progress: bool = False) -> tuple["FrameStore", Path, bool]:
        """The store of ``paths`` at ``transform``'s resize: read from ``folder`` when built before, else
        decoded with ``workers`` processes and written there. Returns ``(store, frames file, reused)``."""
        paths = [os.fspath(p) for p in paths]
        folder = Path(folder)
        key = _key(paths, transform)
        frames_file, index_file = folder / f"frames_{key}.u8", folder / f"frames_{key}.npz"
        if frames_file.is_file() and index_file.is_file():
            return cls(frames_file, index_file, paths), frames_file, True
        folder.mkdir(parents=True, exist_ok=True)
        tmp_frames = folder / f".frames_{key}.u8.tmp{os.getpid()}"
        tmp_index = folder / f".frames_{key}.tmp{os.getpid()}.npz"
        first, count, durations, errors, times = [], [], [], [], []
        size = None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), desc="frame store", unit="video", dynamic_ncols=True)
        tasks = [(p, transform) for p in paths]
        pool = mp.get_context(POOL_START).Pool(workers) if workers > 1 else None
        done = False
        try:
            results = pool.imap(_decode_one, tasks, chunksize=8) if pool else map(_decode_one, tasks)
            total = 0
            with open(tmp_frames, "wb") as f:
                for frames, ts, duration, error in results:
                    if frames is not None and size is None:
                        size = frames.shape[1:3]
                    if frames is not None and frames.shape[1:3] != size:
                        frames, ts, error = None, None, f"decode\tframe size {frames.shape[1:3]} differs from the store's {size}"
                    first.append(total)
                    count.append(0 if frames is None else len(frames))
                    durations.append(duration)
                    errors.append(error)
                    if frames is not None:
                        f.write(np.ascontiguousarray(frames).tobytes())
                        times.append(ts)
                        total += len(frames)
                    if bar is not None:
                        bar.update()
            np.savez(tmp_index, first=np.asarray(first, np.int64), count=np.asarray(count, np.int64),
                     duration=np.asarray(durations, np.float64), errors=np.asarray(errors, dtype=str),
                     times=np.concatenate(times) if times else np.zeros(0), frame_size=np.asarray(size or (0, 0)))
            os.replace(tmp_frames, frames_file)
            os.replace(tmp_index, index_file)
            done = True
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            if bar is not None:
                bar.close()
            if not done:
                tmp_frames.unlink(missing_ok=True)
                tmp_index.unlink(missing_ok=True)
        return cls(frames_file, index_file, paths), frames_file, False
