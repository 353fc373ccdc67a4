"""The YT-Temporal layout: a split list of names, ``<root>/videos/<name>`` and one annotation JSON per video
(:func:`yt_paths`). :class:`YTTemporalSource` says what sample i is made of; :class:`TranscriptVideoDataset`
builds its training samples (TVTS Sec. 3.1) with :class:`~tvts.data.samples.SampleBuilder`. Clips of whole
videos for evaluation come from :mod:`tvts.eval.extract` through the video processor.
"""

from __future__ import annotations

import csv
import os
from pathlib import PurePosixPath

from tvts.data.samples import Item, SampleBuilder, SampleDataset
from tvts.data.strings import PackedStrings
from tvts.data.transcripts import Transcript, load_yt_annotation
from tvts.errors import ConfigError, SampleError

__all__ = ["read_split_list", "yt_paths", "YTTemporalSource", "TranscriptVideoDataset"]

TRANSCRIPT_CACHE = 50_000
"""Parsed annotations a source keeps per process (oldest dropped first)."""


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


class YTTemporalSource:
    """The videos of a split list under ``root``: item i is ``(name, <root>/videos/<name>, its parsed
    annotation)``. ``split_list``: a split file (:func:`read_split_list`) or the names themselves."""

    def __init__(self, root: str | os.PathLike, split_list: str | os.PathLike | list[str]):
        self.root = os.fspath(root)
        if isinstance(split_list, (list, tuple)):
            names = [str(n) for n in split_list]
            if not names:
                raise ConfigError("split list has no entries", field="split_list")
        else:
            names = read_split_list(split_list)
        self.names = PackedStrings(names)
        self._transcripts: dict[int, Transcript] = {}  # index -> parsed annotation (see transcript())

    def __len__(self) -> int:
        return len(self.names)

    def video_path(self, index: int) -> str:
        return yt_paths(self.root, self.names[index])[0]

    def transcript(self, index: int) -> Transcript:
        """The parsed annotation of item ``index``. Kept for later epochs (up to ``TRANSCRIPT_CACHE`` of
        them per process: with ``workers: 0`` the dataset outlives the epochs, and parsing JSON costs
        more than reading a clip from a frame store); a bad annotation raises every time."""
        cached = self._transcripts.get(index)
        if cached is None:
            cached = load_yt_annotation(yt_paths(self.root, self.names[index])[1])
            if len(self._transcripts) >= TRANSCRIPT_CACHE:
                self._transcripts.pop(next(iter(self._transcripts)))
            self._transcripts[index] = cached
        return cached

    def item(self, index: int) -> Item:
        return Item(self.names[index], self.video_path(index), transcript=self.transcript(index))

    def sample_texts(self, index: int, builder: SampleBuilder) -> set[str]:
        """Every segment text a training draw of ``index`` can carry; empty when the annotation cannot be read."""
        try:
            transcript = load_yt_annotation(yt_paths(self.root, self.names[index])[1])  # not cached: read once
        except SampleError:
            return set()
        return builder.reachable_texts(transcript)


class TranscriptVideoDataset(SampleDataset):
    """YT-Temporal style pretraining data: :class:`YTTemporalSource` ``(root, split_list)`` through a
    :class:`~tvts.data.samples.SampleBuilder`; the other arguments and the items are those of
    :class:`~tvts.data.samples.SampleDataset` (``frames`` ``[M, 3, size, size]``, K shuffled ``texts`` and
    their ``order``, ``caption``, ``keep``, ``bounds``, ``frame_times``, ``video_id`` = the split-list name,
    ``index``, ``skipped``, ``bad_paths``)."""

    def __init__(self, root: str | os.PathLike, split_list: str | os.PathLike | list[str], *args, **kwargs):
        super().__init__(YTTemporalSource(root, split_list), *args, **kwargs)

    @property
    def root(self) -> str:
        return self.source.root
