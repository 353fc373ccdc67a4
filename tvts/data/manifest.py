"""A generic JSONL manifest of (video, timed transcript | caption) samples, its converters and its Dataset.

Format: UTF-8 JSON Lines, one sample per line (blank lines are ignored)::

    {"video": "clips/a.mp4", "words": [["hello", 0.32], ["world", 0.71], ...], "duration": 61.2, "id": "a"}
    {"video": "/abs/b.mp4", "caption": "a dog runs on the beach", "duration": 11.0}

- ``video`` (required): a path relative to the manifest's folder, or absolute;
- exactly one of ``words`` (a transcript: ``[word, start time in seconds]`` pairs, any order) or ``caption``
  (one string);
- ``duration`` (optional, seconds > 0): the video length; a transcript record without it is probed when used;
- ``id`` (optional): a name for reports; defaults to ``video``.

Words are cleaned as YT-Temporal annotations are (:func:`tvts.data.transcripts.clean_word`). A line that
breaks the format is not an error when the manifest is loaded: it is kept as an *invalid* record whose
reason (``bad_annotation``, ``transcript_too_long``, ``word_too_long``, ``caption_too_long``, ``empty_caption``,
``zero_duration``) is raised as a :class:`SampleError` when the record is used, so the dataset counts and
replaces it like any other bad sample, and ``tvts data check`` lists it.

In memory (:class:`ManifestRecords`) all records live in a fixed number of numpy arrays (UTF-8 buffers plus
offsets), however many records there are, so forked DataLoader workers share the pages instead of copying
them as reference counts of millions of Python objects are touched.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from array import array
from collections.abc import Iterable

import numpy as np

from tvts.data.segments import GAP, NUM_SEGMENTS, SEGMENT_SECONDS
from tvts.data.datasets import read_split_list, yt_paths
from tvts.data.samples import Item, SampleBuilder, SampleDataset
from tvts.data.sampling import tsn_timestamps
from tvts.data.strings import PackedStrings
from tvts.data.watchdog import Watchdog
from tvts.data.transcripts import (Transcript, check_word_length, clean_word, load_yt_annotation, sample_segments,
                                   span_seconds)
from tvts.errors import ConfigError, SampleError

__all__ = [
    "TRANSCRIPT",
    "CAPTION",
    "INVALID",
    "parse_record",
    "ManifestRecords",
    "load_manifest",
    "write_manifest",
    "manifest_from_yt",
    "manifest_from_webvid",
    "ManifestSource",
    "ManifestDataset",
    "check_manifest",
]

TRANSCRIPT, CAPTION, INVALID = 0, 1, 2
MAX_WORDS = 100_000
MAX_CAPTION_CHARS = 10_000


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_record(
    line: bytes | str, where: str = "", *, max_words: int = MAX_WORDS, max_caption_chars: int = MAX_CAPTION_CHARS
) -> dict:
    """Validate one manifest line. Returns ``{"video", "id", "duration" (float or None), "words" (list of
    str) and "times" (float64 ``[N]``, sorted) | "caption"}``; raises :class:`SampleError` with path
    ``where`` (e.g. ``"manifest.jsonl:12"``) and one of the reasons listed in the module docstring."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SampleError("bad_annotation", where, f"not UTF-8: {e}") from e
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        raise SampleError("bad_annotation", where, f"not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise SampleError("bad_annotation", where, f"a line must be an object, got a {type(doc).__name__}")
    video = doc.get("video")
    if not isinstance(video, str) or not video:
        raise SampleError("bad_annotation", where, "'video' is missing or not a non-empty string")
    rid = doc.get("id", video)
    if not isinstance(rid, str):
        raise SampleError("bad_annotation", where, "'id' is not a string")
    duration = doc.get("duration")
    if duration is not None:
        if not _number(duration):
            raise SampleError("bad_annotation", where, "'duration' is not a finite number")
        if duration <= 0:
            raise SampleError("zero_duration", where, f"'duration' is {duration}")
        duration = float(duration)
    out = {"video": video, "id": rid, "duration": duration}
    if ("words" in doc) == ("caption" in doc):
        raise SampleError("bad_annotation", where, "a record needs exactly one of 'words' and 'caption'")
    if "caption" in doc:
        caption = doc["caption"]
        if not isinstance(caption, str):
            raise SampleError("bad_annotation", where, "'caption' is not a string")
        caption = caption.strip()
        if not caption:
            raise SampleError("empty_caption", where, "'caption' is empty")
        if len(caption) > max_caption_chars:
            raise SampleError("caption_too_long", where, f"{len(caption)} characters > {max_caption_chars}")
        out["caption"] = caption
        return out
    items = doc["words"]
    if not isinstance(items, list):
        raise SampleError("bad_annotation", where, "'words' is not a list")
    if len(items) > max_words:
        raise SampleError("transcript_too_long", where, f"{len(items)} words > max_words={max_words}")
    words, times = [], []
    for i, item in enumerate(items):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _number(item[1])):
            raise SampleError("bad_annotation", where, f"words[{i}] is not a [word, time] pair")
        check_word_length(item[0], where, f"words[{i}]")
        w = clean_word(item[0])
        if w:
            words.append(w)
            times.append(float(item[1]))
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    out["words"] = [words[j] for j in order]
    out["times"] = t[order]
    return out


class _StringsBuilder:
    """Appends strings to one UTF-8 bytearray and their end offsets to an int64 array; :meth:`build` wraps
    both, without copying, as a :class:`~tvts.data.datasets.PackedStrings`."""

    def __init__(self):
        self.blob, self.offsets = bytearray(), array("q", [0])

    def add(self, text: str) -> None:
        self.blob += text.encode("utf-8")
        self.offsets.append(len(self.blob))

    def build(self) -> PackedStrings:
        return PackedStrings.from_buffers(np.frombuffer(self.blob, np.uint8), np.frombuffer(self.offsets, np.int64))


class ManifestRecords:
    """All records of a manifest in a fixed number of arrays (no per-record Python objects).

    ``kind``: uint8 ``[N]`` (TRANSCRIPT / CAPTION / INVALID); ``duration``: float64 ``[N]`` (NaN = unknown);
    ``videos``, ``ids``, ``texts`` (caption, or ``"reason\\tdetail"`` of an invalid record): one UTF-8
    buffer + offsets each; ``words`` (every transcript word, record after record) with ``times`` float64
    ``[W]`` and ``word_start`` int64 ``[N + 1]`` (record i owns words ``word_start[i]:word_start[i+1]``).
    ``base`` is the folder relative video paths are resolved against.
    """

    def __init__(self, records: Iterable[dict], base: str):
        """``records``: dicts as :func:`parse_record` returns them, or ``{"reason", "detail", "id"}`` for an
        invalid line; consumed one by one into growing byte buffers (no list of all records is built)."""
        self.base = os.fspath(base)
        kind, duration, times, word_start = array("B"), array("d"), array("d"), array("q", [0])
        videos, ids, texts, words = _StringsBuilder(), _StringsBuilder(), _StringsBuilder(), _StringsBuilder()
        for r in records:
            if "reason" in r:
                kind.append(INVALID)
                texts.add(f"{r['reason']}\t{r.get('detail', '')}")
            elif "caption" in r:
                kind.append(CAPTION)
                texts.add(r["caption"])
            else:
                kind.append(TRANSCRIPT)
                texts.add("")
            duration.append(np.nan if r.get("duration") is None else r["duration"])
            videos.add(r.get("video", ""))
            ids.add(r.get("id", r.get("video", "")))
            for w in r.get("words", ()):
                words.add(w)
            times.extend(r.get("times", ()))
            word_start.append(len(times))
        self.kind = np.frombuffer(kind, np.uint8)
        self.duration = np.frombuffer(duration, np.float64)
        self.times = np.frombuffer(times, np.float64)
        self.word_start = np.frombuffer(word_start, np.int64)
        self.videos, self.ids, self.texts, self.words = videos.build(), ids.build(), texts.build(), words.build()

    def __len__(self) -> int:
        return len(self.kind)

    def arrays(self) -> list[np.ndarray]:
        """Every array holding the records (for memory accounting: their count does not grow with N)."""
        out = [self.kind, self.duration, self.word_start, self.times]
        for names in (self.videos, self.ids, self.texts, self.words):
            out += list(names.buffers())
        return out

    def video_path(self, i: int) -> str:
        """The video of record i, resolved against the manifest's folder."""
        return os.path.join(self.base, self.videos[i])

    def transcript(self, i: int, duration: float) -> Transcript:
        a, b = int(self.word_start[i]), int(self.word_start[i + 1])
        return Transcript([self.words[j] for j in range(a, b)], self.times[a:b], duration, path=self.video_path(i))

    def invalid_reason(self, i: int) -> tuple[str, str]:
        reason, _, detail = self.texts[i].partition("\t")
        return reason, detail


def load_manifest(path: str | os.PathLike, **limits) -> ManifestRecords:
    """Read a JSONL manifest into :class:`ManifestRecords`. A line that fails :func:`parse_record` (``limits``
    are its ``max_words``/``max_caption_chars``) becomes an INVALID record with id ``"<path>:<line>"``.
    Raises :class:`ConfigError` if the file is missing or has no records."""
    path = os.fspath(path)

    def records():
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    yield parse_record(line, where, **limits)
                except SampleError as e:
                    yield {"reason": e.reason, "detail": e.detail, "id": where}

    try:
        out = ManifestRecords(records(), os.path.dirname(os.path.abspath(path)))
    except FileNotFoundError as e:
        raise ConfigError("manifest not found", source=path) from e
    if not len(out):
        raise ConfigError("manifest has no records", source=path)
    return out


def write_manifest(records, out: str | os.PathLike, progress: bool = False, total: int | None = None) -> int:
    """Write an iterable of record dicts (the format above) as JSONL, atomically (beside ``out``, then
    renamed: an interrupted run leaves no half manifest); returns the number written. ``progress``: a
    progress bar (over ``total`` records when known)."""
    from tqdm.auto import tqdm

    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in tqdm(records, desc="manifest", unit="record", total=total, disable=not progress):
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n


def _relative(video: str, out: str) -> str:
    return os.path.relpath(os.path.abspath(video), os.path.dirname(os.path.abspath(out)))


def manifest_from_yt(root: str | os.PathLike, split_list: str | os.PathLike, out: str | os.PathLike,
                     progress: bool = False) -> dict:
    """Convert a YT-Temporal-layout split (:func:`~tvts.data.datasets.read_split_list`,
    :func:`~tvts.data.datasets.yt_paths`) into a transcript manifest at ``out``. An annotation that cannot be
    read is left out and counted. Returns ``{"written": n, "skipped": {reason: count}, "skipped_files": [...]}``."""
    out = os.fspath(out)
    skipped: dict[str, int] = {}
    skipped_files: list[str] = []

    names = read_split_list(split_list)

    def records():
        for name in names:
            video, annotation = yt_paths(root, name)
            try:
                t = load_yt_annotation(annotation)
            except SampleError as e:
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                skipped_files.append(annotation)
                continue
            words = [[w, float(s)] for w, s in zip(t.words, t.times.tolist())]
            yield {"id": name, "video": _relative(video, out), "duration": t.duration, "words": words}

    return {"written": write_manifest(records(), out, progress, len(names)), "skipped": skipped,
            "skipped_files": skipped_files}


_ISO_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


def _webvid_duration(text: str) -> float | None:
    """WebVid durations are ISO 8601 (``PT00H00M11S``); returns seconds, or None if not parseable or 0."""
    m = _ISO_DURATION.match(text.strip())
    if not m or not any(m.groups()):
        return None
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = 3600 * h + 60 * mi + s
    return seconds if seconds > 0 else None


def manifest_from_webvid(csv_path: str | os.PathLike, video_root: str | os.PathLike, out: str | os.PathLike,
                         progress: bool = False) -> dict:
    """Convert a WebVid CSV (header ``videoid,contentUrl,duration,page_dir,name``, as WebVid-2M/10M publish
    it) into a caption manifest: video ``<video_root>/<page_dir>/<videoid>.mp4``, caption ``name``,
    ``duration`` from the ISO 8601 column. Files are not opened (``tvts data check`` does that). Returns
    ``{"written": n}``; a CSV without the needed columns raises :class:`ConfigError`."""
    csv_path, out = os.fspath(csv_path), os.fspath(out)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("videoid", "page_dir", "name") if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"WebVid CSV lacks columns {missing} (header: {reader.fieldnames})", source=csv_path)

        def records():
            for row in reader:
                video = os.path.join(os.fspath(video_root), row["page_dir"], row["videoid"] + ".mp4")
                r = {"id": row["videoid"], "video": _relative(video, out), "caption": row["name"]}
                d = _webvid_duration(row.get("duration") or "")
                if d is not None:
                    r["duration"] = d
                yield r

        return {"written": write_manifest(records(), out, progress)}


class ManifestSource:
    """The records of a manifest: item i is ``(id, video, transcript | caption)`` of record i. An invalid record
    raises its :class:`SampleError` when asked for; so does a record of the other kind than ``kind``
    (``"transcript"``, ``"caption"``, ``"auto"``: the kind most records have, or ``"any"``), with reason
    ``"wrong_kind"`` naming file and line, so that a batch holds one kind."""

    def __init__(self, manifest: str | os.PathLike | ManifestRecords, kind: str = "any"):
        if kind not in RECORD_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(RECORD_KINDS)}, not {kind!r}")
        self.manifest_path = None if isinstance(manifest, ManifestRecords) else os.fspath(manifest)
        self.records = manifest if isinstance(manifest, ManifestRecords) else load_manifest(manifest)
        self.kind = resolve_kind(self.records, kind)

    @property
    def names(self) -> PackedStrings:
        return self.records.ids

    def __len__(self) -> int:
        return len(self.records)

    def video_path(self, index: int) -> str:
        return self.records.video_path(index)

    def item(self, index: int) -> Item:
        r = self.records
        kind = int(r.kind[index])
        if kind == INVALID:
            reason, detail = r.invalid_reason(index)
            raise SampleError(reason, r.ids[index], detail)
        wrong = wrong_kind(kind, self.kind)
        if wrong:
            where = f"{self.manifest_path}:{record_line(self.manifest_path, index)}" if self.manifest_path else r.ids[index]
            raise SampleError("wrong_kind", where, f"record '{r.ids[index]}': {wrong}")
        if kind == CAPTION:
            return Item(r.ids[index], r.video_path(index), caption=r.texts[index])
        return Item(r.ids[index], r.video_path(index), transcript=r.transcript(index, float(r.duration[index])))

    def sample_texts(self, index: int, builder: SampleBuilder) -> set[str]:
        """A caption record's caption; a transcript record's reachable segments (without a ``duration``,
        every start up to its last word, a superset)."""
        r = self.records
        kind = int(r.kind[index])
        if kind == CAPTION:
            return {r.texts[index]}
        if kind != TRANSCRIPT:
            return set()
        duration = float(r.duration[index])
        if math.isnan(duration):
            a, b = int(r.word_start[index]), int(r.word_start[index + 1])
            duration = (float(r.times[b - 1]) if b > a else 0.0) + span_seconds(builder.num_segments, builder.segment_seconds, builder.gap)
        return builder.reachable_texts(r.transcript(index, duration))


class ManifestDataset(SampleDataset):
    """A torch Dataset over a JSONL manifest: :class:`ManifestSource` ``(manifest, kind)`` through a
    :class:`~tvts.data.samples.SampleBuilder`, with the options, randomness and bad-sample replacement of
    :class:`~tvts.data.samples.SampleDataset` (``timeout`` > 0 bounds the seconds of each probe and decode).

    A transcript record gives exactly the item of a YT-Temporal dataset (``video_id`` = the record id); a
    caption record gives ``frames`` (TSN over the whole video), ``texts`` = [caption], ``caption``, ``bounds``
    ``[1, 2]`` = (0, duration), ``frame_times``, ``keep``, ``video_id``, ``index`` and no ``order``.
    """

    def __init__(self, manifest: str | os.PathLike | ManifestRecords, *args, kind: str = "any", **kwargs):
        super().__init__(ManifestSource(manifest, kind), *args, **kwargs)

    records = property(lambda self: self.source.records)
    kind = property(lambda self: self.source.kind)
    manifest_path = property(lambda self: self.source.manifest_path)


RECORD_KINDS = ("transcript", "caption", "auto", "any")


def resolve_kind(records: ManifestRecords, kind: str) -> str:
    """``"auto"``: the kind most of the valid records have (transcript on a tie); other kinds as given."""
    if kind != "auto":
        return kind
    return "caption" if int(np.sum(records.kind == CAPTION)) > int(np.sum(records.kind == TRANSCRIPT)) else "transcript"



def wrong_kind(kind: int, expected: str) -> str:
    """Why a record of ``kind`` (TRANSCRIPT / CAPTION) does not belong in a corpus of ``expected`` records
    (:data:`RECORD_KINDS`); empty when it does."""
    if expected == "transcript" and kind == CAPTION:
        return "a caption record in a corpus of transcripts; captioned videos go in their own manifest (data.caption_manifest)"
    if expected == "caption" and kind == TRANSCRIPT:
        return "a transcript record in a corpus of captions; transcripts go in their own manifest (data.manifest)"
    return ""


def record_line(path: str, index: int) -> int:
    """The 1-based line of record ``index`` of the manifest at ``path`` (records are its non-blank lines)."""
    for i, line in enumerate(_line_numbers(path)):
        if i == index:
            return line
    return 0


def check_manifest(
    path: str | os.PathLike,
    *,
    num_segments: int = NUM_SEGMENTS,
    segment_seconds: float = SEGMENT_SECONDS,
    gap: float = GAP,
    min_words: int = 1,
    video_tolerance: float = 0.5,
    max_words: int = MAX_WORDS,
    max_caption_chars: int = MAX_CAPTION_CHARS,
    decode: bool = True,
    timeout: float = 0.0,
    progress: bool = True,
    kind: str = "any",
) -> dict:
    """Validate every record of a manifest without training.

    Per record: the line parses (UTF-8, JSON, fields, at most ``max_words`` words / ``max_caption_chars``);
    the video exists (``missing``) and :func:`probe` reads it (``unreadable``, ``no_video_stream``,
    ``zero_duration``); a transcript covers the segment span K*l + (K-1)*gap (``too_short``) and the centred
    start has ``min_words`` words in every segment (``empty_segment``); the video lasts until the last
    segment ends, within ``video_tolerance`` s (``too_short``); with ``decode``, the first and last frame the
    centred sample needs decode (``decode``/``unreadable``); with ``timeout`` > 0, a probe or decode that takes
    longer is stopped and the record is ``timeout`` (:mod:`tvts.data.watchdog`).

    ``kind``: the records the manifest is meant for (``"transcript"``, ``"caption"`` for ``data.caption_manifest``,
    ``"auto"`` as training reads ``data.manifest``: its majority kind): a record of the other kind is
    ``wrong_kind``. With ``"any"`` both pass, and ``kinds`` counts them, so a manifest that mixes them is visible.

    Returns ``{"manifest", "total", "ok", "bad": {reason: count}, "kinds": {kind: count}, "examples": {reason: [{"line", "id",
    "video", "detail"}, ...]} (the first 5 per reason), "settings": {...}}``.
    """
    from tqdm import tqdm

    path = os.fspath(path)
    records = load_manifest(path, max_words=max_words, max_caption_chars=max_caption_chars)
    if kind not in RECORD_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(RECORD_KINDS)}, not {kind!r}")
    kind = resolve_kind(records, kind)
    watchdog = Watchdog(timeout)
    bad: dict[str, int] = {}
    kinds: dict[str, int] = {}
    examples: dict[str, list] = {}
    lines = iter(_line_numbers(path))
    for i in tqdm(range(len(records)), desc="check", unit="record", disable=not progress):
        line = next(lines)
        try:
            if int(records.kind[i]) in (TRANSCRIPT, CAPTION):
                name = "transcript" if int(records.kind[i]) == TRANSCRIPT else "caption"
                kinds[name] = kinds.get(name, 0) + 1
                wrong = wrong_kind(int(records.kind[i]), kind)
                if wrong:
                    raise SampleError("wrong_kind", records.ids[i], wrong)
            _check_record(records, i, num_segments, segment_seconds, gap, min_words, video_tolerance, decode, watchdog)
        except SampleError as e:
            bad[e.reason] = bad.get(e.reason, 0) + 1
            ex = examples.setdefault(e.reason, [])
            if len(ex) < 5:
                ex.append({"line": line, "id": records.ids[i], "video": records.videos[i], "detail": e.detail})
    settings = {
        "num_segments": num_segments, "segment_seconds": segment_seconds, "gap": gap, "min_words": min_words,
        "video_tolerance": video_tolerance, "max_words": max_words, "max_caption_chars": max_caption_chars,
        "decode": decode, "timeout": timeout, "kind": kind,
    }
    total = len(records)
    return {"manifest": path, "total": total, "ok": total - sum(bad.values()), "bad": bad, "kinds": kinds,
            "examples": examples, "settings": settings}


def _check_record(records, i, num_segments, segment_seconds, gap, min_words, video_tolerance, decode, watchdog) -> None:
    """The checks of :func:`check_manifest` for record i; raises :class:`SampleError`."""
    kind = int(records.kind[i])
    if kind == INVALID:
        reason, detail = records.invalid_reason(i)
        raise SampleError(reason, records.ids[i], detail)
    video = records.video_path(i)
    if not os.path.exists(video):
        raise SampleError("missing", video, "no such file")
    info = watchdog.call("probe", video)
    if kind == TRANSCRIPT:
        d = float(records.duration[i])
        segs = sample_segments(
            records.transcript(i, info.duration if math.isnan(d) else d),
            num_segments, segment_seconds, gap, None, min_words=min_words, max_tries=1,
        )
        start, end = float(segs.bounds[0, 0]), float(segs.bounds[-1, 1])
        if info.duration < end - video_tolerance:
            raise SampleError("too_short", video, f"video is {info.duration:.3f} s, segments end at {end:.3f} s")
    else:
        start, end = 0.0, info.duration
    if decode:
        watchdog.call("decode_frames", video, tsn_timestamps(start, end, 2, None), threads=1)


def _line_numbers(path: str):
    """1-based numbers of the non-blank lines of a file (the record order of :func:`load_manifest`)."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n
