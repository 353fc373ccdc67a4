"""Ranking an index's windows against a query, and merging nearby windows into moments.

A query is one L2-normalised embedding ``[D]``: a text (``model.encode_text``), a window of an indexed video
or a whole indexed video. Scores are cosine similarities. ``backend="exact"`` ranks every window with one
matrix product (a few ms for 100k windows); ``backend="faiss"`` uses a FAISS inner-product index (exact too,
``IndexFlatIP``: the same ranking, for users who already run FAISS; ``pip install 'tvts[faiss]'``).

Moments: the candidates are read best first; a window that overlaps or touches a moment of its video joins it
(the moment's span grows to cover it); any other window starts a new moment while fewer than ``k`` exist;
the scan ends at the first window that would start moment ``k + 1``. So a moment is the run of touching
windows of one video that all score above every window left out, and its score is its best window's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tvts.files import CONFIG_NAME
from tvts.errors import ConfigError
from tvts.search.index import IndexData, read_index

BACKENDS = ("exact", "faiss")


@dataclass
class Moment:
    video: str
    start: float
    end: float
    score: float
    window: int  # the best window's row
    window_start: float
    window_end: float
    windows: int  # how many windows were merged
    thumb: str  # path of the best window's thumbnail, relative to the index folder

    def to_dict(self) -> dict:
        return {"video": self.video, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 6), "window": self.window, "window_start": round(self.window_start, 3),
                "window_end": round(self.window_end, 3), "windows": self.windows, "thumb": self.thumb}


class SearchIndex:
    """A loaded index: ``windows`` ``[N, D]``, ``clips`` ``[V, D]`` (both L2-normalised), ``window_video``,
    ``window_span``, ``videos`` (records), ``settings``; rank with :meth:`search`."""

    def __init__(self, folder: str | os.PathLike, data: IndexData | None = None):
        self.folder = Path(folder)
        d = data or read_index(folder)
        self.settings, self.videos, self.failed = d.settings, d.videos, d.failed
        self.windows, self.clips = d.windows.float().contiguous(), d.clips.float().contiguous()
        self.window_video, self.window_span = d.window_video, d.window_span
        self.by_name = {r["video"]: i for i, r in enumerate(self.videos)}
        first = torch.zeros(len(self.videos) + 1, dtype=torch.long)
        if len(self.videos):
            first[1:] = torch.cumsum(torch.tensor([r["windows"] for r in self.videos]), 0)
        self.first_window = first  # rows of video v: first[v] .. first[v + 1]
        self._faiss = None

    def __len__(self) -> int:
        return self.windows.shape[0]

    @property
    def root(self) -> Path:
        return Path(self.settings["root"])

    def video_number(self, name: str) -> int:
        if name not in self.by_name:
            raise ConfigError(f"video {name!r} is not in the index", field="video", source=str(self.folder))
        return self.by_name[name]

    def thumb(self, row: int) -> str:
        v = int(self.window_video[row])
        return f"thumbs/{self.videos[v]['key']}/{row - int(self.first_window[v])}.jpg"

    def window_at(self, video: int, seconds: float) -> int:
        """The row of the window of ``video`` whose centre is nearest ``seconds``."""
        a, b = int(self.first_window[video]), int(self.first_window[video + 1])
        centres = self.window_span[a:b].mean(1)
        return a + int((centres - seconds).abs().argmin())

    # ------------------------------------------------------------------------------------ scoring
    def _top(self, q: torch.Tensor, m: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``m`` best rows (scores, rows), best first; ties broken by the lower row."""
        if backend == "exact":
            scores = self.windows @ q
            top = torch.topk(scores, m, sorted=True)
            return top.values, top.indices
        if backend == "faiss":
            if self._faiss is None:
                from tvts.deps import require

                faiss = require("faiss", "search with backend faiss", field="backend")
                self._faiss = faiss.IndexFlatIP(self.windows.shape[1])
                self._faiss.add(self.windows.numpy())
            s, i = self._faiss.search(q[None].numpy().astype("float32"), m)
            return torch.from_numpy(s[0]), torch.from_numpy(i[0]).long()
        raise ConfigError(f"unknown search backend {backend!r} (known: {', '.join(BACKENDS)})", field="backend")

    def search(self, query: torch.Tensor, k: int = 10, backend: str = "exact", exclude_video: int | None = None,
               exclude_span: tuple[float, float] | None = None) -> list[Moment]:
        """The ``k`` best moments for ``query`` ``[D]`` (normalised here). ``exclude_video``: leave that video's
        windows out (all of them, or with ``exclude_span`` those overlapping it: "more like this" should not
        answer with the example itself)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}", field="k")
        n = len(self)
        if n == 0:
            return []
        q = F.normalize(query.detach().float().reshape(-1).cpu(), dim=0)
        if q.shape[0] != self.windows.shape[1]:
            raise ConfigError(f"the query has {q.shape[0]} dimensions, the index {self.windows.shape[1]}",
                              field="query", source=str(self.folder))
        per_video = max(1, round(self.settings["window"] / self.settings["stride"]))
        m = min(n, max(64, 4 * k * per_video))
        while True:
            scores, rows = self._top(q, m, backend)
            moments, complete = self._merge(scores.tolist(), rows.tolist(), k, exclude_video, exclude_span)
            if complete or m >= n:
                return moments
            m = min(n, 4 * m)

    def _merge(self, scores, rows, k, exclude_video, exclude_span) -> tuple[list[Moment], bool]:
        """(moments, whether the scan ended before running out of candidates)."""
        order = sorted(range(len(rows)), key=lambda i: (-scores[i], rows[i]))  # deterministic ties
        moments: list[Moment] = []
        spans = self.window_span
        for i in order:
            r, s = rows[i], scores[i]
            v = int(self.window_video[r])
            a, b = float(spans[r, 0]), float(spans[r, 1])
            if v == exclude_video and (exclude_span is None or (a < exclude_span[1] and b > exclude_span[0])):
                continue
            touching = [mo for mo in moments if mo.video == self.videos[v]["video"] and a <= mo.end and b >= mo.start]
            if touching:
                keep = touching[0]
                for other in touching[1:]:  # the window bridges two moments: one moment now
                    keep.start, keep.end = min(keep.start, other.start), max(keep.end, other.end)
                    keep.windows += other.windows
                    moments.remove(other)
                keep.start, keep.end, keep.windows = min(keep.start, a), max(keep.end, b), keep.windows + 1
                continue
            if len(moments) == k:
                return moments, True
            moments.append(Moment(self.videos[v]["video"], a, b, float(s), r, a, b, 1, self.thumb(r)))
        return moments, False


# ---------------------------------------------------------------------------------------- queries
_LIKE = re.compile(r"^(?P<video>.+?)(?:@(?P<t>[0-9]+(?:\.[0-9]*)?))?$")


def parse_like(spec: str) -> tuple[str, float | None]:
    """``VIDEO`` or ``VIDEO@SECONDS`` -> (video, seconds or None)."""
    m = _LIKE.match(spec.strip())
    if not m:
        raise ConfigError(f"--like needs VIDEO or VIDEO@SECONDS, got {spec!r}", field="like")
    return m["video"], float(m["t"]) if m["t"] is not None else None


def like_query(index: SearchIndex, video: str, seconds: float | None, model_loader=None) -> tuple[torch.Tensor, dict]:
    """(query embedding, what to leave out) for "more like" ``video`` (an indexed name, or a path inside the
    indexed folder), or its window nearest ``seconds``. With ``model_loader`` (a function returning the index's
    model), any other video file is embedded with the index's preprocessing; without it, it is an error (the
    server never reads files its client names)."""
    name = video
    if name not in index.by_name and model_loader is not None and Path(video).is_file():
        real, root = Path(video).resolve(), index.root.resolve()
        if real.is_relative_to(root) and real.relative_to(root).as_posix() in index.by_name:
            name = real.relative_to(root).as_posix()
        else:
            return file_query(model_loader(), index, video, seconds), {}
    v = index.video_number(name)
    if seconds is None:
        return index.clips[v], {"exclude_video": v}
    row = index.window_at(v, seconds)
    span = tuple(float(x) for x in index.window_span[row])
    return index.windows[row], {"exclude_video": v, "exclude_span": span}


def processor_from_record(rec: dict, source: str = "index.json"):
    """The :class:`~tvts.data.processor.VideoProcessor` an index recorded (refused when this version of tvts
    would not preprocess exactly as recorded)."""
    from tvts.data.processor import VideoProcessor

    proc = VideoProcessor.from_dict({k: v for k, v in rec.items() if k != "transform"}, source)

    def same(r: dict) -> dict:  # a newer torchvision alone does not stop a query
        return {**r, "transform": {k: v for k, v in r["transform"].items() if k != "library"}}

    if same(proc.describe()) != same(rec):
        raise ConfigError(f"cannot rebuild the index's preprocessing {rec} (this tvts gives {proc.describe()})",
                          field="preprocessing", source=source)
    return proc


@torch.no_grad()
def file_query(model, index: SearchIndex, path: str, seconds: float | None) -> torch.Tensor:
    """The embedding of a video file outside the index: its whole clip, or its window nearest ``seconds``,
    preprocessed as the index was."""
    from tvts.data.decode import decode_frames, probe
    from tvts.search.index import window_spans

    proc = processor_from_record(index.settings["preprocessing"], str(index.folder / "index.json"))
    info = probe(path)
    if seconds is None:  # the whole clip, sampled as the index's whole-clip rows (and extract) sample it
        times = proc.frame_times(info.duration, info.fps, info.num_frames)[0]
    else:
        spans = window_spans(info.duration, index.settings["window"], index.settings["stride"])
        times = proc.times(*min(spans, key=lambda s: abs((s[0] + s[1]) / 2 - seconds)), info.fps)
    model.eval()
    return F.normalize(model.encode_video(proc(decode_frames(path, times))).float().cpu()[0], dim=0)


def load_query_model(index: SearchIndex, model_dir: str | None = None, device="cpu"):
    """The index's model (its recorded folder, or ``model_dir``), refused when its weights are not the ones
    that built the index."""
    from tvts.eval.extract import weights_fingerprint
    from tvts.models import load_model

    rec = index.settings["model"]
    path = model_dir or rec["dir"]
    if not (Path(path) / CONFIG_NAME).is_file():
        raise ConfigError(f"the index's model folder {path} is not there: pass --model", field="model",
                          source=str(index.folder / "index.json"))
    model = load_model(path).to(device).eval()
    got = weights_fingerprint(model)
    if got != rec["weights_sha256"]:
        raise ConfigError(f"the model in {path} (weights {got}) is not the one that built the index "
                          f"({rec['name']!r}, weights {rec['weights_sha256']})", field="model",
                          source=str(index.folder / "index.json"))
    return model


@torch.no_grad()
def text_query(model, text: str) -> torch.Tensor:
    model.eval()
    return F.normalize(model.encode_text([text]).float().cpu()[0], dim=0)
