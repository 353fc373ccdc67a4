"""Datasets: YT-Temporal style (video + timed transcript) for pretraining and the sort evaluation (evaluation
clips of whole videos come from :mod:`tvts.eval.extract` through the video processor).

One training sample (TVTS Sec. 3.1): K consecutive transcript segments (Eq. 1) -> M frame times by TSN over
[S_1, E_K] -> decode -> transform -> shuffle the K texts (labels o_i) -> mask indices.

Randomness: each draw uses a numpy Generator seeded from (seed, epoch, index, attempt), so a sample depends
only on those numbers - not on the number of DataLoader workers or on what was drawn before - and a resumed
run replays it exactly. A bad sample (any :class:`SampleError`) is counted by reason and replaced by another
index drawn from that same generator; there are no black frames and no made-up texts.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from tvts.data.segments import GAP, NUM_SEGMENTS, SEGMENT_SECONDS
from tvts.data.masking import MASK_KINDS, full_mask, random_mask, tube_mask
from tvts.data.sampling import tsn_timestamps
from tvts.data.transcripts import (Transcript, load_yt_annotation, reachable_segment_texts, sample_segments,
                                   shuffle_segments, span_seconds)
from tvts.data.transforms import VideoTransform
from tvts.data.watchdog import Watchdog
from tvts.errors import ConfigError, SampleError

__all__ = [
    "MaskSpec",
    "make_mask",
    "read_split_list",
    "yt_paths",
    "sample_rng",
    "TranscriptVideoDataset",
    "collate",
]

_MASK_KINDS = (*MASK_KINDS, "none")
TRANSCRIPT_CACHE = 50_000
"""Parsed annotations a dataset keeps per process (oldest dropped first)."""


@dataclass(frozen=True)
class MaskSpec:
    """How to mask video tokens: ``kind`` "random" (independent per slot, TVTS), "tube" (same positions in
    every slot, TVTSv2) or "none"; ``num_slots`` temporal token positions (M / tubelet size), ``num_patches``
    spatial tokens per slot ((h / patch) * (w / patch)), ``ratio`` fraction masked, 0 <= ratio < 1."""

    kind: str
    num_slots: int
    num_patches: int
    ratio: float = 0.0

    def __post_init__(self):
        if self.kind not in _MASK_KINDS:
            raise ConfigError(f"mask kind must be one of {_MASK_KINDS}, got {self.kind!r}", field="mask.kind")
        for name in ("num_slots", "num_patches"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}", field=f"mask.{name}")
        if not (0.0 <= float(self.ratio) < 1.0):
            raise ConfigError(f"mask ratio must satisfy 0 <= ratio < 1, got {self.ratio!r}", field="mask.ratio")


def make_mask(spec: MaskSpec, rng: np.random.Generator | None) -> torch.Tensor:
    """Kept patch indices, LongTensor ``[num_slots, n_keep]`` (rows sorted). "none" keeps everything and
    needs no rng."""
    if spec.kind == "none":
        return full_mask(spec.num_slots, spec.num_patches)
    if rng is None:
        raise ConfigError(f"mask kind {spec.kind!r} needs an rng", field="mask.kind")
    fn = random_mask if spec.kind == "random" else tube_mask
    return fn(spec.num_slots, spec.num_patches, spec.ratio, rng)


def read_split_list(path: str | os.PathLike) -> list[str]:
    """Names from a YT-Temporal split file (tab-separated, header with a ``Name`` column), e.g.
    ``synth/data/vid_00000.mp4``. Raises :class:`ConfigError` naming the file if it is missing, empty or
    has no ``Name`` column."""
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader, None)
            if header is None:
                raise ConfigError("split list is empty", source=path)
            header = [h.strip() for h in header]
            if "Name" not in header:
                raise ConfigError(f"split list has no 'Name' column (header: {header})", field="Name", source=path)
            col = header.index("Name")
            names = [row[col].strip() for row in reader if len(row) > col and row[col].strip()]
    except FileNotFoundError as e:
        raise ConfigError("split list not found", source=path) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read split list: {e}", source=path) from e
    if not names:
        raise ConfigError("split list has no entries", field="Name", source=path)
    return names


def yt_paths(root: str | os.PathLike, name: str) -> tuple[str, str]:
    """``(video_path, annotation_path)`` for a split-list name, as the published ``get_caption_path``:
    video ``<root>/videos/<name>``, annotation
    ``<root>/videos/<first component of name>/annotations/<basename without extension>.json``."""
    p = PurePosixPath(name)
    if not p.parts:
        raise ConfigError(f"empty video name {name!r}")
    videos = os.path.join(os.fspath(root), "videos")
    video = os.path.join(videos, *p.parts)
    annotation = os.path.join(videos, p.parts[0], "annotations", p.stem + ".json")
    return video, annotation


class PackedStrings:
    """An immutable list of strings stored as one UTF-8 buffer plus offsets.

    Hand-written on purpose: a Python list of millions of ``str`` objects in a Dataset is copied page by page
    into every forked DataLoader worker as reference counts are touched ("copy-on-read"); two numpy arrays
    are not. ``names[i]`` returns a ``str``."""

    def __init__(self, names: list[str]):
        encoded = [n.encode("utf-8") for n in names]
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])

    @classmethod
    def from_buffers(cls, blob: np.ndarray, offsets: np.ndarray) -> "PackedStrings":
        """Wrap an existing uint8 buffer ``[B]`` and int64 offsets ``[N + 1]`` (string i is
        ``blob[offsets[i]:offsets[i + 1]]``) without copying them."""
        names = cls.__new__(cls)
        names._blob, names._offsets = blob, offsets
        return names

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 buffer ``[B]`` and int64 offsets ``[N + 1]`` holding the strings (no copy)."""
        return self._blob, self._offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self._blob[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def sample_rng(seed: int, epoch: int, index: int, attempt: int) -> np.random.Generator:
    """The generator for one draw: seeded from (seed, epoch, index, attempt) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index), int(attempt)]))


class TranscriptVideoDataset(Dataset):
    """YT-Temporal style pretraining data: ``<root>/videos/<Name>`` + its annotation JSON.

    Each item is a dict:

    - ``frames``: float32 ``[M, 3, size, size]`` (M = ``num_frames``), TSN over [S_1, E_K];
    - ``texts``: K shuffled segment texts; ``order``: LongTensor ``[K]``, ``texts[i]`` is segment ``order[i]``;
    - ``caption``: one text for the whole clip (:meth:`Transcript.caption`: the timed event captions inside
      it, else its transcript), for the caption-level objectives (CPD, S-ViLM);
    - ``keep``: LongTensor ``[num_slots, n_keep]`` kept patch indices (only when ``mask`` is given);
    - ``bounds``: float64 tensor ``[K, 2]`` (S_k, E_k) in seconds (temporal order); ``frame_times``: float64
      ``[M]``;
    - ``video_id``: the split-list name used; ``index``: the dataset index really used;
    - ``skipped``: {reason: count} of bad samples replaced in this draw; ``bad_paths``: their paths.

    ``train=True``: random start, random TSN times, random crop (if the transform is a train transform),
    shuffled texts, random mask; each from ``sample_rng(seed, epoch, index, attempt)``. ``train=False``:
    middle start, TSN midpoints, and (if ``shuffle``) a fixed per-index shuffle that ignores the epoch, so an
    evaluation is repeatable. ``set_epoch`` must be called in the process that owns the dataset copy used by
    the workers (i.e. before the DataLoader iterator is created; not with ``persistent_workers=True``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split_list: str | os.PathLike | list[str],
        num_segments: int = NUM_SEGMENTS,
        segment_seconds: float = SEGMENT_SECONDS,
        gap: float = GAP,
        num_frames: int = 8,
        transform: VideoTransform | None = None,
        mask: MaskSpec | None = None,
        train: bool = True,
        seed: int = 0,
        shuffle: bool = True,
        max_retries: int = 10,
        *,
        min_words: int = 1,
        segment_tries: int = 10,
        video_tolerance: float = 0.5,
        decode_threads: int | None = 1,
        decode_backend: str = "pyav",
        timeout: float = 0.0,
    ):
        if transform is None:
            raise ConfigError("TranscriptVideoDataset needs a transform", field="transform")
        if not isinstance(max_retries, (int, np.integer)) or max_retries < 1:
            raise ConfigError(f"max_retries must be an int >= 1, got {max_retries!r}", field="max_retries")
        if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise ConfigError(f"num_frames must be an int >= 1, got {num_frames!r}", field="num_frames")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an int >= 0, got {seed!r}", field="seed")
        span_seconds(num_segments, segment_seconds, gap)  # validates the segment arguments now, not per sample
        self.root = os.fspath(root)
        if isinstance(split_list, (list, tuple)):
            names = [str(n) for n in split_list]
            if not names:
                raise ConfigError("split list has no entries", field="split_list")
        else:
            names = read_split_list(split_list)
        self.names = PackedStrings(names)
        self.num_segments = num_segments
        self.segment_seconds = segment_seconds
        self.gap = gap
        self.num_frames = int(num_frames)
        self.transform = transform
        self.mask = mask
        self.train = bool(train)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.max_retries = int(max_retries)
        self.min_words = min_words
        self.segment_tries = segment_tries
        self.video_tolerance = float(video_tolerance)
        self.decode_threads = decode_threads
        self.decode_backend = decode_backend
        # timeout > 0: every probe and decode runs in a helper process killed after `timeout` seconds (reason
        # "timeout"), so a stalled read or an FFmpeg call that never returns cannot hang a worker
        self.watchdog = Watchdog(timeout)
        self.frame_store = None  # a tvts.data.frame_store.FrameStore of video_path(i) for every i, or None: decode
        self._transcripts: dict[int, Transcript] = {}  # index -> parsed annotation (see transcript())
        self.epoch = 0

    def video_path(self, index: int) -> str:
        """The video file of sample ``index``."""
        return yt_paths(self.root, self.names[index])[0]

    def duration(self, index: int, video_path: str) -> float:
        """The video's duration in seconds (from the frame store when there is one, else the file's headers)."""
        return self.frame_store.duration(index) if self.frame_store is not None else self.watchdog.call("probe", video_path).duration

    def frames(self, index: int, video_path: str, times: np.ndarray, rng) -> torch.Tensor:
        """The transformed frames of sample ``index`` at ``times``: float32 ``[M, 3, size, size]``, decoded from
        ``video_path`` or read from the frame store (the same pixels)."""
        if self.frame_store is not None:
            return self.transform(self.frame_store.frames(index, times), rng, resized=True)
        frames = self.watchdog.call("decode_frames", video_path, times, threads=self.decode_threads, backend=self.decode_backend)
        return self.transform(frames, rng)

    def set_epoch(self, epoch: int) -> None:
        """Change the training randomness (ignored when ``train=False``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.names)

    # What a training stream asks of its dataset (a shard stream answers for the map-style corpus it reads).
    frame_store_ok = True  # its videos can be read from a frame store (tvts.data.frame_store)

    @property
    def corpus(self) -> "TranscriptVideoDataset":
        """The map-style corpus the samples come from (``sample_texts``; ``batch["index"]`` is below its length)."""
        return self

    def sample_texts(self, index: int) -> set[str]:
        """Every text a training draw of ``index`` can carry (Eq. 1's segments at every possible start), for
        precomputing a frozen text tower's features; empty when the annotation cannot be read (the sample
        is then bad at training time and reported there)."""
        try:
            transcript = load_yt_annotation(yt_paths(self.root, self.names[index])[1])  # not cached: read once
        except SampleError:
            return set()
        return reachable_segment_texts(transcript, self.num_segments, self.segment_seconds, self.gap,
                                       min_words=self.min_words)

    def transcript(self, index: int) -> Transcript:
        """The parsed annotation of sample ``index``. Kept for later epochs (up to ``TRANSCRIPT_CACHE`` of
        them per process: with ``workers: 0`` the dataset outlives the epochs, and parsing JSON costs
        more than reading a clip from a frame store); a bad annotation raises every time."""
        cached = self._transcripts.get(index)
        if cached is None:
            cached = load_yt_annotation(yt_paths(self.root, self.names[index])[1])
            if len(self._transcripts) >= TRANSCRIPT_CACHE:
                self._transcripts.pop(next(iter(self._transcripts)))
            self._transcripts[index] = cached
        return cached

    def load(self, index: int, rng: np.random.Generator) -> dict:
        """One attempt at sample ``index`` with the draws of ``rng`` (a bad sample raises :class:`SampleError`;
        ``__getitem__`` counts it and tries a replacement)."""
        return self._transcript_sample(self.transcript(index), self.video_path(index), self.names[index], index, rng)

    def _transcript_sample(self, transcript, video_path: str, video_id: str, index: int, rng) -> dict:
        """The item for one (transcript, video) pair: Eq. 1 segments, TSN times, decode, transform, shuffle,
        mask (the dict described in the class docstring). Shared with :class:`tvts.data.manifest.ManifestDataset`."""
        train_rng = rng if self.train else None
        segs = sample_segments(
            transcript,
            self.num_segments,
            self.segment_seconds,
            self.gap,
            train_rng,
            min_words=self.min_words,
            max_tries=self.segment_tries,
        )
        s1, ek = float(segs.bounds[0, 0]), float(segs.bounds[-1, 1])
        times = tsn_timestamps(s1, ek, self.num_frames, train_rng)
        duration = self.duration(index, video_path)
        if duration < ek - self.video_tolerance:
            raise SampleError(
                "too_short", video_path, f"video is {duration:.3f} s but the segments end at {ek:.3f} s"
            )
        x = self.frames(index, video_path, times, rng)
        texts, order = shuffle_segments(segs.texts, rng if self.shuffle else None)
        sample = {
            "frames": x,
            "texts": texts,
            "order": order,
            "caption": transcript.caption(s1, ek, segs.texts),
            "bounds": torch.from_numpy(segs.bounds),
            "frame_times": torch.from_numpy(times),
            "video_id": video_id,
            "index": index,
        }
        if self.mask is not None:
            sample["keep"] = make_mask(self.mask, rng)
        return sample

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        epoch = self.epoch if self.train else 0
        skipped: Counter = Counter()
        bad_paths: list[str] = []
        failures: list[str] = []
        current = index
        for attempt in range(self.max_retries):
            rng = sample_rng(self.seed, epoch, index, attempt)
            if attempt > 0:  # replacement index, drawn deterministically from this attempt's generator
                current = int(rng.integers(len(self)))
            try:
                sample = self.load(current, rng)
            except SampleError as e:
                path = e.path or self.names[current]
                skipped[e.reason] += 1
                bad_paths.append(path)
                failures.append(str(e))
                continue
            sample["skipped"] = dict(skipped)
            sample["bad_paths"] = bad_paths
            return sample
        raise RuntimeError(
            f"no usable sample for index {index} after {self.max_retries} consecutive failures "
            f"(reasons {dict(skipped)}):\n  " + "\n  ".join(failures)
        )


def collate(samples: list[dict], nouns: tuple[int, str] | None = None) -> dict:
    """Batch dataset items (YT-Temporal, manifest or shard records): ``frames`` ``[B, M, 3, h, w]``, ``texts``
    list of B lists of K strings (one caption for a caption record), ``captions`` list of B strings, ``order``
    ``[B, K]`` (transcript records only: a batch mixing the two kinds is a :class:`ConfigError`), ``keep``
    ``[B, slots, n_keep]`` (if present), ``bounds`` ``[B, K, 2]``, ``frame_times`` ``[B, M]``, ``video_id``
    list, ``index`` LongTensor ``[B]``, ``skipped`` summed over the batch, ``bad_paths`` concatenated.
    ``nouns=(k, spacy model)``: also ``nouns``, B lists of the first k noun phrases of each caption
    (S-ViLM's grounding; spaCy runs here, in the DataLoader workers, not in the training step)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    with_order = sum("order" in s for s in samples)
    if with_order not in (0, len(samples)):
        raise ConfigError("a batch mixes transcript and caption records; use one kind per manifest")
    skipped: Counter = Counter()
    for s in samples:
        skipped.update(s.get("skipped", {}))
    batch = {
        "frames": torch.stack([s["frames"] for s in samples]),
        "texts": [list(s["texts"]) for s in samples],
        "captions": [s["caption"] for s in samples],
        "bounds": torch.stack([s["bounds"] for s in samples]),
        "frame_times": torch.stack([s["frame_times"] for s in samples]),
        "video_id": [s["video_id"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "skipped": dict(skipped),
        "bad_paths": [p for s in samples for p in s.get("bad_paths", [])],
    }
    if with_order:
        batch["order"] = torch.stack([s["order"] for s in samples])
    if "keep" in samples[0]:
        batch["keep"] = torch.stack([s["keep"] for s in samples])
    if nouns is not None:
        from tvts.data.nouns import noun_phrases

        batch["nouns"] = [noun_phrases(c, *nouns) for c in batch["captions"]]
    return batch
