"""Timed ASR transcripts: load, clean, cut into K consecutive segments (TVTS Eq. 1), shuffle.

Eq. 1 of the TVTS paper, with segment length ``l`` and a gap between segments (1 s in the paper)::

    S_k = s_begin + (k - 1) * (l + gap),   E_k = S_k + l,   T_k = {w_i | S_k <= s_i <= E_k},  k = 1..K

The published code keeps words strictly inside (S_k, E_k) and aligns them to a denoised ASR; here the
boundaries are inclusive as in the paper and the raw (cleaned) ASR words are used.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from tvts.data.segments import GAP
from tvts.errors import ConfigError, SampleError

try:  # ftfy repairs mojibake in YouTube ASR, as the published cleaning does; optional.
    import ftfy as _ftfy
except ImportError:  # pragma: no cover - depends on the environment
    _ftfy = None

__all__ = [
    "Transcript",
    "Segments",
    "load_yt_annotation",
    "clean_word",
    "segment_bounds",
    "span_seconds",
    "segment_texts",
    "sample_segments",
    "reachable_segment_texts",
    "shuffle_segments",
]


@dataclass
class Transcript:
    """Words with their start times.

    ``words``: N cleaned words; ``times``: float64 ``[N]`` seconds, sorted ascending;
    ``duration``: length of the video in seconds (> 0); ``path``: the annotation file, if any;
    ``captions``: optional timed captions ``(start, end, text)`` of the video's events (the embedded dataset
    has them), used by :meth:`caption`.
    """

    words: list[str]
    times: np.ndarray
    duration: float
    path: str | None = None
    captions: list[tuple[float, float, str]] | None = None

    def caption(self, start: float, end: float, segment_texts: list[str]) -> str:
        """One caption for the clip ``[start, end]``: the timed captions of the events that lie mostly
        inside it, in time order, joined by ", then "; without timed captions (or none inside), the
        segment texts (in temporal order) joined by spaces, i.e. the clip's transcript."""
        inside = [c for s, e, c in (self.captions or []) if min(e, end) - max(s, start) > 0.5 * (e - s)]
        return ", then ".join(inside) if inside else " ".join(t for t in segment_texts if t)

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        if len(self.words) != len(self.times):
            raise ConfigError(f"Transcript has {len(self.words)} words but {len(self.times)} times")
        if self.times.size > 1 and np.any(np.diff(self.times) < 0):
            raise ConfigError("Transcript.times must be sorted ascending")


@dataclass
class Segments:
    """K consecutive transcript segments: ``texts`` (K strings, in temporal order), ``bounds`` float64
    ``[K, 2]`` holding (S_k, E_k) in seconds, and ``start`` = S_1."""

    texts: list[str]
    bounds: np.ndarray
    start: float


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# The longest word kept (characters). ASR words are short; a "word" of megabytes (a corrupt or hostile
# annotation) would cost seconds and gigabytes each time a segment holding it is tokenised. A longer word
# makes the record bad (reason "word_too_long"), in manifests and in YT-Temporal annotations alike.
MAX_WORD_CHARS = 100


def check_word_length(word: str, where: str, field: str) -> None:
    if len(word) > MAX_WORD_CHARS:
        raise SampleError("word_too_long", where, f"{field} has {len(word)} characters > {MAX_WORD_CHARS}: "
                                                  f"{word[:40]!r}...")


def clean_word(word: str) -> str:
    """Clean one ASR word as the published ``clean_subtitles`` does: words that start with ``&`` or end
    with ``;`` (HTML entities) become '', text is repaired with ftfy when it is installed, and stripped.
    A word cleaned to '' is dropped by :func:`load_yt_annotation`."""
    w = word.strip()
    if w.startswith("&") or w.endswith(";"):
        return ""
    # ftfy costs ~25 us a word; printable ASCII without '&' (most words) has nothing for it to fix.
    if _ftfy is not None and not (w.isascii() and w.isprintable() and "&" not in w):
        w = _ftfy.fix_text(w)
    return w.strip()


def load_yt_annotation(path: str | os.PathLike, max_words: int = 100_000) -> Transcript:
    """Read a YT-Temporal annotation JSON: ``{"subtitles": [{"word": str, "time": float}, ...],
    "info": {"duration": float}, ...}`` and return a sorted, cleaned :class:`Transcript`.

    Raises :class:`SampleError` naming the file and the field:
    ``bad_annotation`` (unreadable, not UTF-8, not JSON, missing or ill-typed field),
    ``transcript_too_long`` (more than ``max_words`` subtitles), ``zero_duration`` (duration <= 0).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SampleError("bad_annotation", path, f"not UTF-8: {e}") from e
    except json.JSONDecodeError as e:
        raise SampleError("bad_annotation", path, f"not valid JSON: {e}") from e
    except OSError as e:
        raise SampleError("bad_annotation", path, f"cannot read: {e.strerror or e}") from e
    if not isinstance(doc, dict):
        raise SampleError("bad_annotation", path, f"top level is a {type(doc).__name__}, not an object")

    info = doc.get("info")
    if not isinstance(info, dict):
        raise SampleError("bad_annotation", path, "info is missing or not an object")
    duration = info.get("duration")
    if not _is_number(duration) or not math.isfinite(duration):
        raise SampleError("bad_annotation", path, "info.duration is missing or not a finite number")
    if duration <= 0:
        raise SampleError("zero_duration", path, f"info.duration is {duration}")

    subs = doc.get("subtitles")
    if not isinstance(subs, list):
        raise SampleError("bad_annotation", path, "subtitles is missing or not a list")
    if len(subs) > max_words:
        raise SampleError("transcript_too_long", path, f"subtitles has {len(subs)} entries > max_words={max_words}")

    words: list[str] = []
    times: list[float] = []
    for i, item in enumerate(subs):
        if not isinstance(item, dict):
            raise SampleError("bad_annotation", path, f"subtitles[{i}] is not an object")
        w = item.get("word")
        t = item.get("time")
        if not isinstance(w, str):
            raise SampleError("bad_annotation", path, f"subtitles[{i}].word is not a string")
        if not _is_number(t) or not math.isfinite(t):
            raise SampleError("bad_annotation", path, f"subtitles[{i}].time is not a number")
        check_word_length(w, path, f"subtitles[{i}].word")
        w = clean_word(w)
        if w:
            words.append(w)
            times.append(float(t))

    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")  # stable: words with equal times keep their spoken order
    return Transcript(words=[words[j] for j in order], times=t[order], duration=float(duration), path=path,
                      captions=_timed_captions(doc.get("events"), path))


def _timed_captions(events, path: str) -> list[tuple[float, float, str]] | None:
    """The optional ``events`` list of an annotation: ``[{"start": s, "end": e, "caption": str}, ...]``."""
    if events is None:
        return None
    if not isinstance(events, list):
        raise SampleError("bad_annotation", path, "events is not a list")
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or not isinstance(ev.get("caption"), str) or not all(
                _is_number(ev.get(k)) and math.isfinite(ev.get(k)) for k in ("start", "end")):
            raise SampleError("bad_annotation", path, f"events[{i}] needs numbers start, end and a string caption")
        out.append((float(ev["start"]), float(ev["end"]), ev["caption"].strip()))
    return sorted(out)


def _check_segment_args(num_segments, segment_seconds, gap) -> None:
    if not isinstance(num_segments, (int, np.integer)) or num_segments < 1:
        raise ConfigError(f"num_segments must be an int >= 1, got {num_segments!r}", field="num_segments")
    if not (_is_number(segment_seconds) and math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ConfigError(f"segment_seconds must be > 0, got {segment_seconds!r}", field="segment_seconds")
    if not (_is_number(gap) and math.isfinite(gap) and gap >= 0):
        raise ConfigError(f"gap must be >= 0, got {gap!r}", field="gap")


def span_seconds(num_segments: int, segment_seconds: float, gap: float = GAP) -> float:
    """Total time covered by K segments of length l with gaps: ``K*l + (K-1)*gap`` = E_K - S_1."""
    _check_segment_args(num_segments, segment_seconds, gap)
    return num_segments * segment_seconds + (num_segments - 1) * gap


def segment_bounds(start: float, num_segments: int, segment_seconds: float, gap: float = GAP) -> np.ndarray:
    """Eq. 1: float64 ``[K, 2]`` with row k-1 = (S_k, E_k), S_k = start + (k-1)(l+gap), E_k = S_k + l."""
    _check_segment_args(num_segments, segment_seconds, gap)
    s = start + np.arange(num_segments, dtype=np.float64) * (segment_seconds + gap)
    return np.stack([s, s + segment_seconds], axis=1)


def _segment_slices(times: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Inclusive on both ends (Eq. 1): first index with time >= S_k, one past the last with time <= E_k.
    lo = np.searchsorted(times, bounds[:, 0], side="left")
    hi = np.searchsorted(times, bounds[:, 1], side="right")
    return lo, hi


# The most words one segment's text keeps (its first ones). A segment of 3-5 s of speech holds ~15 words and the
# text towers keep 50-77 tokens; a transcript with thousands of words stamped into one segment (broken ASR
# timestamps) would only cost tokenising time.
MAX_SEGMENT_WORDS = 256


def _join(words, a: int, b: int) -> str:
    return " ".join(words[a:min(b, a + MAX_SEGMENT_WORDS)])


def segment_texts(transcript: Transcript, bounds: np.ndarray) -> list[str]:
    """The words w_i with S_k <= s_i <= E_k for each row (S_k, E_k) of ``bounds`` ``[K, 2]``, joined by
    single spaces (at most the first :data:`MAX_SEGMENT_WORDS`). Returns K strings ('' for a segment without words)."""
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
    lo, hi = _segment_slices(transcript.times, bounds)
    return [_join(transcript.words, a, b) for a, b in zip(lo.tolist(), hi.tolist())]


def sample_segments(
    transcript: Transcript,
    num_segments: int,
    segment_seconds: float,
    gap: float = GAP,
    rng: np.random.Generator | None = None,
    *,
    min_words: int = 1,
    max_tries: int = 10,
) -> Segments:
    """Sample K consecutive segments (Eq. 1) that lie inside [0, transcript.duration].

    ``rng`` given (training): start ~ Uniform[0, duration - span]. ``rng`` None (evaluation): the start is
    the middle of the valid range, (duration - span) / 2; if that start has an under-filled segment, further
    deterministic starts (evenly spaced over the valid range, nearest the middle first) are tried.

    Every segment must hold at least ``min_words`` words; at most ``max_tries`` starts are tried in total.
    Raises ``SampleError("too_short")`` if the transcript is shorter than the span and
    ``SampleError("empty_segment")`` if no tried start gives full segments.
    """
    span = span_seconds(num_segments, segment_seconds, gap)
    if not isinstance(max_tries, (int, np.integer)) or max_tries < 1:
        raise ConfigError(f"max_tries must be an int >= 1, got {max_tries!r}", field="max_tries")
    if not isinstance(min_words, (int, np.integer)) or min_words < 0:
        raise ConfigError(f"min_words must be an int >= 0, got {min_words!r}", field="min_words")
    duration = float(transcript.duration)
    if not duration >= span:  # also catches NaN
        raise SampleError(
            "too_short", transcript.path, f"transcript duration {duration:.3f} s < segment span {span:.3f} s"
        )
    max_start = duration - span

    if rng is None:
        middle = max_start / 2
        grid = np.linspace(0.0, max_start, max_tries - 1) if max_tries > 1 else np.empty(0)
        grid = grid[np.argsort(np.abs(grid - middle), kind="stable")]
        starts = [middle] + [float(s) for s in grid]
    else:
        starts = None

    counts = None
    for attempt in range(max_tries):
        start = starts[attempt] if starts is not None else float(rng.uniform(0.0, max_start))
        bounds = segment_bounds(start, num_segments, segment_seconds, gap)
        lo, hi = _segment_slices(transcript.times, bounds)
        counts = hi - lo
        if np.all(counts >= min_words):
            texts = [_join(transcript.words, a, b) for a, b in zip(lo.tolist(), hi.tolist())]
            return Segments(texts=texts, bounds=bounds, start=float(start))
    raise SampleError(
        "empty_segment",
        transcript.path,
        f"after {max_tries} start(s) a segment still had < {min_words} word(s) (last word counts {counts.tolist()})",
    )


def reachable_segment_texts(
    transcript: Transcript, num_segments: int, segment_seconds: float, gap: float = GAP, *, min_words: int = 1
) -> set[str]:
    """Every segment text that a training draw of :func:`sample_segments` can return for ``transcript``.

    Eq. 1's segments are a function of the start S_1 only, and what segment k holds changes only where one
    of its ends crosses a word time: at S_1 = s_i - (k-1)(l+gap) or s_i - (k-1)(l+gap) - l. Evaluating the
    sampler's own bounds at every such breakpoint and between every two neighbours therefore visits every
    possible set of K texts; starts whose segments hold fewer than ``min_words`` words are left out, as the
    sampler rejects them. Empty when the transcript is shorter than the span.
    """
    span = span_seconds(num_segments, segment_seconds, gap)
    max_start = float(transcript.duration) - span
    if not max_start >= 0:
        return set()
    offsets = np.arange(num_segments, dtype=np.float64) * (segment_seconds + gap)
    edges = (transcript.times[:, None] - offsets[None, :]).ravel()
    cuts = np.concatenate([edges, edges - segment_seconds])
    cuts = np.unique(np.concatenate([[0.0, max_start], cuts[(cuts > 0) & (cuts < max_start)]]))
    starts = np.concatenate([cuts, (cuts[1:] + cuts[:-1]) / 2])
    bounds = starts[:, None, None] + np.stack([offsets, offsets + segment_seconds], axis=1)[None]  # [n, K, 2]
    lo = np.searchsorted(transcript.times, bounds[..., 0], side="left")
    hi = np.searchsorted(transcript.times, bounds[..., 1], side="right")
    ok = np.all(hi - lo >= min_words, axis=1)
    ranges = np.unique(np.stack([lo[ok].ravel(), hi[ok].ravel()], axis=1), axis=0)
    return {_join(transcript.words, a, b) for a, b in ranges.tolist()}


def shuffle_segments(
    texts: list[str], rng: np.random.Generator | None
) -> tuple[list[str], torch.Tensor]:
    """Shuffle K texts. Returns ``(shuffled, order)`` with ``order`` a LongTensor ``[K]`` where
    ``order[i]`` is the 0-based original position of ``shuffled[i]`` (the paper's o_i), i.e.
    ``shuffled[i] == texts[order[i]]``. ``rng`` None keeps the identity order."""
    k = len(texts)
    perm = np.arange(k) if rng is None else rng.permutation(k)
    return [texts[j] for j in perm.tolist()], torch.as_tensor(perm, dtype=torch.long)
