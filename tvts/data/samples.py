"""One way to build a training sample, whatever the corpus.

A corpus is a *source* (:class:`~tvts.data.datasets.YTTemporalSource`, :class:`~tvts.data.manifest.ManifestSource`;
the shard stream reads the latter's records) that only says what sample ``i`` is made of: an :class:`Item`
(id, video file, timed transcript or caption). Everything else happens here, identically for every source:

    Item ──SampleBuilder──▶ K segments (Eq. 1) ─▶ M frame times (TSN over [S_1, E_K]) ─▶ VideoReader
         (decode, or read a frame store) ─▶ VideoTransform ─▶ shuffled texts + order ─▶ mask   = one sample

and :class:`SampleDataset` (source + builder) draws samples with bad-sample replacement: each draw uses a numpy
Generator seeded from (seed, epoch, index, attempt), so a sample depends only on those numbers - not on the
number of DataLoader workers or on what was drawn before - and a resumed run replays it exactly. A bad sample
(any :class:`SampleError`) is counted by reason and replaced by another index drawn from that same generator;
there are no black frames and no made-up texts.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from tvts.data.choices import WINDOWS
from tvts.data.masking import MASK_KINDS, full_mask, random_mask, tube_mask
from tvts.data.sampling import tsn_timestamps
from tvts.data.segments import GAP, NUM_SEGMENTS, SEGMENT_SECONDS
from tvts.data.transcripts import Transcript, reachable_segment_texts, sample_segments, shuffle_segments, span_seconds
from tvts.data.transforms import VideoTransform
from tvts.data.watchdog import Watchdog
from tvts.errors import ConfigError, SampleError

__all__ = [
    "Item",
    "MaskSpec",
    "make_mask",
    "sample_rng",
    "VideoReader",
    "SampleBuilder",
    "SampleDataset",
    "Skips",
    "collate",
]

_MASK_KINDS = (*MASK_KINDS, "none")


@dataclass(frozen=True)
class Item:
    """What a source says sample ``i`` is made of. ``id``: its name in reports; ``video``: the file to read;
    exactly one of ``transcript`` (timed words; its ``duration`` NaN when the source does not know the
    video's length: the builder reads it from the video) or ``caption`` (one text for the whole video)."""

    id: str
    video: str
    transcript: Transcript | None = None
    caption: str | None = None


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


def sample_rng(seed: int, epoch: int, index: int, attempt: int) -> np.random.Generator:
    """The generator for one draw: seeded from (seed, epoch, index, attempt) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index), int(attempt)]))


class VideoReader:
    """The frames of a corpus's videos at given times: decoded from the file, or read from a frame store
    (:mod:`tvts.data.frame_store`, indexed like the corpus) when one is attached (``frame_store``).

    ``timeout`` > 0: every probe and decode runs in a helper process killed after that many seconds (reason
    "timeout"), so a stalled read or an FFmpeg call that never returns cannot hang a worker."""

    def __init__(self, timeout: float = 0.0, threads: int | None = 1, backend: str = "pyav"):
        self.watchdog = Watchdog(timeout)
        self.threads, self.backend = threads, backend
        self.frame_store = None

    def duration(self, index: int, path: str) -> float:
        """Seconds of video ``index`` (file ``path``): the frame store's record, else the file's headers."""
        if self.frame_store is not None:
            return self.frame_store.duration(index)
        return self.watchdog.call("probe", path).duration

    def frames(self, index: int, path: str, times: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(uint8 [M, H, W, 3], resized)``: the frames shown at ``times`` (seconds); ``resized`` is True when
        they come from the frame store, which holds them at the transform's resize already."""
        if self.frame_store is not None:
            return self.frame_store.frames(index, times), True
        return self.watchdog.call("decode_frames", path, times, threads=self.threads, backend=self.backend), False


class SampleBuilder:
    """An :class:`Item` and a generator -> one sample (a dict):

    - ``frames``: float32 ``[M, 3, size, size]`` (M = ``num_frames``): TSN over the K segments [S_1, E_K] of a
      transcript, or over the whole video for a caption;
    - ``texts``: the K segment texts, shuffled (a caption item: ``[caption]``); ``order``: LongTensor ``[K]``,
      ``texts[i]`` is segment ``order[i]`` (transcript items only);
    - ``caption``: one text for the clip (:meth:`Transcript.caption`: the timed event captions inside it, else
      its transcript), for the caption-level objectives (CPD, S-ViLM);
    - ``keep``: LongTensor ``[num_slots, n_keep]`` kept patch indices (only when ``mask`` is given);
    - ``bounds``: float64 ``[K, 2]`` (S_k, E_k) in seconds, temporal order (``[1, 2]`` = (0, duration) for a
      caption); ``frame_times``: float64 ``[M]``; ``video_id``: the item's id; ``index``: the corpus index.

    ``train=True``: random start, random TSN times, random crop (with a train transform), shuffled texts,
    random mask. ``train=False``: middle start, TSN midpoints, and (if ``shuffle``) the generator's shuffle -
    an evaluation passes a generator that ignores the epoch, so it is repeatable. Draws come from the generator
    in one fixed order (segments, times, crop, shuffle, mask), so samples replay exactly. ``windows="fixed"``
    (one of :data:`~tvts.data.choices.WINDOWS`) takes the middle start in training too, so a video is one fixed
    video-text pair; the rest stays random.
    """

    def __init__(self, num_segments: int = NUM_SEGMENTS, segment_seconds: float = SEGMENT_SECONDS, gap: float = GAP,
                 num_frames: int = 8, transform: VideoTransform | None = None, mask: MaskSpec | None = None,
                 train: bool = True, shuffle: bool = True, *, min_words: int = 1, segment_tries: int = 10,
                 video_tolerance: float = 0.5, reader: VideoReader | None = None, windows: str = "random"):
        if transform is None:
            raise ConfigError("a sample builder needs a transform", field="transform")
        if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise ConfigError(f"num_frames must be an int >= 1, got {num_frames!r}", field="num_frames")
        span_seconds(num_segments, segment_seconds, gap)  # validates the segment arguments now, not per sample
        if windows not in WINDOWS:
            raise ConfigError(f"windows must be one of {WINDOWS}, got {windows!r}", field="data.windows")
        self.windows = windows
        self.num_segments, self.segment_seconds, self.gap = num_segments, segment_seconds, gap
        self.num_frames = int(num_frames)
        self.transform, self.mask = transform, mask
        self.train, self.shuffle = bool(train), bool(shuffle)
        self.min_words, self.segment_tries = min_words, segment_tries
        self.video_tolerance = float(video_tolerance)
        self.reader = reader if reader is not None else VideoReader()

    def reachable_texts(self, transcript: Transcript) -> set[str]:
        """Every segment text a training draw from ``transcript`` can carry (for a frozen tower's feature table)."""
        return reachable_segment_texts(transcript, self.num_segments, self.segment_seconds, self.gap,
                                       min_words=self.min_words)

    def __call__(self, item: Item, index: int, rng: np.random.Generator) -> dict:
        if item.transcript is None:
            return self._caption_sample(item, index, rng)
        return self._transcript_sample(item, index, rng)

    def _frames(self, index: int, video: str, times: np.ndarray, rng) -> torch.Tensor:
        frames, resized = self.reader.frames(index, video, times)
        return self.transform(frames, rng, resized=resized)

    def _transcript_sample(self, item: Item, index: int, rng) -> dict:
        train_rng = rng if self.train else None
        transcript, duration = item.transcript, None
        if math.isnan(transcript.duration):  # the source does not know the video's length: read it (once)
            duration = self.reader.duration(index, item.video)
            transcript = replace(transcript, duration=duration)
        segs = sample_segments(transcript, self.num_segments, self.segment_seconds, self.gap,
                               train_rng if self.windows == "random" else None,
                               min_words=self.min_words, max_tries=self.segment_tries)
        s1, ek = float(segs.bounds[0, 0]), float(segs.bounds[-1, 1])
        times = tsn_timestamps(s1, ek, self.num_frames, train_rng)
        if duration is None:
            duration = self.reader.duration(index, item.video)
        if duration < ek - self.video_tolerance:
            raise SampleError("too_short", item.video, f"video is {duration:.3f} s but the segments end at {ek:.3f} s")
        frames = self._frames(index, item.video, times, rng)
        texts, order = shuffle_segments(segs.texts, rng if self.shuffle else None)
        sample = {"frames": frames, "texts": texts, "order": order, "caption": transcript.caption(s1, ek, segs.texts),
                  "bounds": torch.from_numpy(segs.bounds), "frame_times": torch.from_numpy(times),
                  "video_id": item.id, "index": index}
        if self.mask is not None:
            sample["keep"] = make_mask(self.mask, rng)
        return sample

    def _caption_sample(self, item: Item, index: int, rng) -> dict:
        duration = self.reader.duration(index, item.video)
        times = tsn_timestamps(0.0, duration, self.num_frames, rng if self.train else None)
        sample = {"frames": self._frames(index, item.video, times, rng), "texts": [item.caption],
                  "caption": item.caption, "bounds": torch.tensor([[0.0, duration]], dtype=torch.float64),
                  "frame_times": torch.from_numpy(times), "video_id": item.id, "index": index}
        if self.mask is not None:
            sample["keep"] = make_mask(self.mask, rng)
        return sample


class Skips:
    """The bad samples met since the last sample handed out: ``{reason: count}`` and their paths. Both
    :class:`SampleDataset` (which replaces them) and the shard stream (which skips them) report them in the
    next good sample's ``skipped`` and ``bad_paths``."""

    def __init__(self):
        self.reasons: Counter = Counter()
        self.paths: list[str] = []
        self.messages: list[str] = []

    def add(self, error: SampleError, path: str) -> None:
        """Count ``error`` of the sample whose file is ``path``."""
        self.reasons[error.reason] += 1
        self.paths.append(path)
        self.messages.append(str(error))

    def stamp(self, sample: dict) -> dict:
        """``sample`` with ``skipped`` and ``bad_paths`` set from what was met (then forgotten)."""
        sample["skipped"], sample["bad_paths"] = dict(self.reasons), self.paths
        self.reasons, self.paths, self.messages = Counter(), [], []
        return sample


class SampleDataset(Dataset):
    """A map-style dataset: a source's items through one :class:`SampleBuilder`, with bad-sample replacement.

    ``source``: anything with ``__len__``, ``names`` (the item ids), ``item(i) -> Item``, ``video_path(i)`` and
    ``sample_texts(i, builder)`` (:class:`~tvts.data.datasets.YTTemporalSource`, :class:`~tvts.data.manifest.ManifestSource`).
    The other arguments are the builder's (segments, frames, transform, mask, sampling, ``windows``; ``decode_threads``,
    ``decode_backend`` and ``timeout`` its :class:`VideoReader`'s), then ``seed`` and ``max_retries``: a bad
    sample is replaced by an index drawn from the attempt's generator, at most ``max_retries`` attempts.

    Items are the builder's samples plus ``skipped`` ({reason: count} of bad samples replaced in this draw)
    and ``bad_paths`` (their paths); ``index`` is the corpus index really used. ``set_epoch`` changes the
    training randomness; it must be called in the process that owns the copy the workers fork (before the
    DataLoader iterator is created; not with ``persistent_workers=True``). Evaluation (``train=False``) ignores
    the epoch, so it is repeatable.
    """

    def __init__(self, source, num_segments: int = NUM_SEGMENTS, segment_seconds: float = SEGMENT_SECONDS,
                 gap: float = GAP, num_frames: int = 8, transform: VideoTransform | None = None,
                 mask: MaskSpec | None = None, train: bool = True, seed: int = 0, shuffle: bool = True,
                 max_retries: int = 10, *, min_words: int = 1, segment_tries: int = 10, video_tolerance: float = 0.5,
                 decode_threads: int | None = 1, decode_backend: str = "pyav", timeout: float = 0.0,
                 windows: str = "random"):
        if not isinstance(max_retries, (int, np.integer)) or max_retries < 1:
            raise ConfigError(f"max_retries must be an int >= 1, got {max_retries!r}", field="max_retries")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an int >= 0, got {seed!r}", field="seed")
        self.source = source
        self.builder = SampleBuilder(num_segments, segment_seconds, gap, num_frames, transform, mask, train, shuffle,
                                     min_words=min_words, segment_tries=segment_tries, video_tolerance=video_tolerance,
                                     reader=VideoReader(timeout, decode_threads, decode_backend), windows=windows)
        self.seed, self.max_retries = int(seed), int(max_retries)
        self.epoch = 0

    # the builder's choices that callers read (the recipe's data check, the frame store, evaluation)
    train = property(lambda self: self.builder.train)
    transform = property(lambda self: self.builder.transform)
    num_segments = property(lambda self: self.builder.num_segments)
    segment_seconds = property(lambda self: self.builder.segment_seconds)
    gap = property(lambda self: self.builder.gap)
    num_frames = property(lambda self: self.builder.num_frames)
    watchdog = property(lambda self: self.builder.reader.watchdog)

    @property
    def frame_store(self):
        """A :class:`~tvts.data.frame_store.FrameStore` of ``video_path(i)`` for every i, or None (decode)."""
        return self.builder.reader.frame_store

    @frame_store.setter
    def frame_store(self, store) -> None:
        self.builder.reader.frame_store = store

    # What a training stream asks of its dataset (a shard stream answers for the map-style corpus it reads).
    frame_store_ok = True  # its videos can be read from a frame store

    @property
    def corpus(self) -> "SampleDataset":
        """The map-style corpus the samples come from (``sample_texts``; ``batch["index"]`` is below its length)."""
        return self

    def __len__(self) -> int:
        return len(self.source)

    @property
    def names(self):
        """The id of every item (a sequence of str)."""
        return self.source.names

    def video_path(self, index: int) -> str:
        """The video file of sample ``index``."""
        return self.source.video_path(index)

    def sample_texts(self, index: int) -> set[str]:
        """Every text a training draw of ``index`` can carry, for precomputing a frozen text tower's features;
        empty when the record cannot be read (it is then bad at training time and reported there)."""
        return self.source.sample_texts(index, self.builder)

    def set_epoch(self, epoch: int) -> None:
        """Change the training randomness (ignored when ``train=False``)."""
        self.epoch = int(epoch)

    def load(self, index: int, rng: np.random.Generator, video: str | None = None) -> dict:
        """One attempt at sample ``index`` with the draws of ``rng``; ``video`` replaces the item's video file
        (a shard reader's in-memory copy). A bad sample raises :class:`SampleError`."""
        item = self.source.item(index)
        return self.builder(item if video is None else replace(item, video=video), index, rng)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        epoch = self.epoch if self.train else 0
        skips = Skips()
        current = index
        for attempt in range(self.max_retries):
            rng = sample_rng(self.seed, epoch, index, attempt)
            if attempt > 0:  # replacement index, drawn deterministically from this attempt's generator
                current = int(rng.integers(len(self)))
            try:
                return skips.stamp(self.load(current, rng))
            except SampleError as e:
                skips.add(e, e.path or self.source.names[current])
        raise RuntimeError(
            f"no usable sample for index {index} after {self.max_retries} consecutive failures "
            f"(reasons {dict(skips.reasons)}):\n  " + "\n  ".join(skips.messages)
        )


def collate(samples: list[dict], nouns: tuple[int, str] | None = None) -> dict:
    """Batch samples (YT-Temporal, manifest or shard records): ``frames`` ``[B, M, 3, h, w]``, ``texts``
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
