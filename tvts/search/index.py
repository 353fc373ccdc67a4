"""``tvts index``: every video of a folder embedded as overlapping windows, into an index folder.

Layout of an index folder ``INDEX``:

- ``index.safetensors``: the index itself, one file written beside and renamed into place (a crash
  mid-update leaves the previous index whole). Tensors: ``windows`` float32 ``[N, D]`` (L2-normalised window
  embeddings), ``clips`` float32 ``[V, D]`` (one whole-clip embedding per video, sampled exactly as
  ``tvts extract`` with one clip samples it), ``window_video`` int64 ``[N]`` (row of ``videos``),
  ``window_span`` float64 ``[N, 2]`` (start, end in seconds). Metadata: ``format``, ``settings`` (JSON: the
  model's folder, name and weights hash, the preprocessing, window and stride, the video folder) and
  ``videos`` (JSON list: relative path, size, mtime, duration, key, number of windows);
- ``index.json``: a readable copy of the settings, the counts and the videos that could not be read;
- ``windows.csv``: ``video,start,end`` per row of ``windows`` (a readable copy);
- ``thumbs/<key>/<j>.jpg``: a small JPEG of the middle frame of window ``j`` of the video with that key
  (a key is a hash of the relative path, size and mtime, so a changed file gets new thumbnails);
- while running, ``parts/<key>.safetensors``: finished videos; a rerun skips them.

A rerun over the same folder is incremental: new files are embedded, changed files (size or mtime)
re-embedded, removed files dropped, the others reused as they are. An index is built by one model with one
preprocessing: a rerun with other weights or settings is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from tvts.data.processor import VideoProcessor
from tvts.data.watchdog import Watchdog
from tvts.errors import ConfigError, SampleError

FORMAT = "tvts-search-index/1"
INDEX_FILE = "index.safetensors"
DEFAULT_WINDOW = 4.0
DEFAULT_THUMB = 160


# ---------------------------------------------------------------------------------------- windows
def window_spans(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Windows ``[start, start + window]`` every ``stride`` seconds from 0; the last one ends at ``duration``
    (moved back so that it is whole); a video shorter than ``window`` is one window ``[0, duration]``."""
    if not (window > 0 and stride > 0):
        raise ConfigError(f"window and stride must be > 0 seconds, got {window}, {stride}", field="window")
    if duration <= window:
        return [(0.0, float(duration))]
    spans, start = [], 0.0
    while start + window < duration - 1e-6:
        spans.append((round(start, 6), round(start + window, 6)))
        start += stride
    spans.append((round(duration - window, 6), round(float(duration), 6)))
    return spans


def _thumbnail(frame: np.ndarray, size: int) -> bytes:
    from PIL import Image

    img = Image.fromarray(frame)
    img.thumbnail((size, size))  # keeps the aspect ratio, never enlarges
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- the files
@dataclass
class VideoFile:
    rel: str  # relative POSIX path under the video folder (the video's name in the index)
    path: str
    size: int
    mtime_ns: int
    duration: float = 0.0
    fps: float = 0.0
    frame_count: int = 0

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{self.rel}\0{self.size}\0{self.mtime_ns}".encode()).hexdigest()[:16]


def scan_videos(root: str | os.PathLike) -> tuple[list[VideoFile], list[dict]]:
    """The video files under ``root`` (sorted by relative path) and the ones refused: a link that leads
    outside ``root`` (the server would not serve it)."""
    from tvts.eval.annotations import VideoIndex

    root_real = Path(root).resolve()
    found, refused = [], []
    for rel, path in sorted(VideoIndex(root).by_rel.items()):
        real = Path(path).resolve()
        if not real.is_relative_to(root_real):
            refused.append({"video": rel, "path": path, "reason": "outside_root", "detail": f"links to {real}"})
            continue
        st = real.stat()
        found.append(VideoFile(rel, path, st.st_size, st.st_mtime_ns))
    return found, refused


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class IndexData:
    """What ``index.safetensors`` holds (see the module docstring)."""

    settings: dict
    videos: list[dict]
    windows: torch.Tensor
    clips: torch.Tensor
    window_video: torch.Tensor
    window_span: torch.Tensor
    failed: list[dict] = field(default_factory=list)


def read_index(folder: str | os.PathLike) -> IndexData:
    """Read an index folder; an error naming the file and field when it is not one."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        raise ConfigError(f"no search index here (no {INDEX_FILE}): build one with `tvts index`", source=str(folder))
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ConfigError(f"not a {FORMAT} index (format {meta.get('format')!r})", field="format", source=str(path))
            t = {k: f.get_tensor(k) for k in ("windows", "clips", "window_video", "window_span")}
        settings, videos = json.loads(meta["settings"]), json.loads(meta["videos"])
    except ConfigError:
        raise
    except Exception as e:  # cut short, or not written by tvts index
        raise ConfigError(f"cannot read the index ({type(e).__name__}: {str(e)[:120]}): delete it and build it again",
                          source=str(path)) from None
    n = t["windows"].shape[0]
    if (t["window_video"].shape != (n,) or t["window_span"].shape != (n, 2) or t["clips"].shape[0] != len(videos)
            or sum(r["windows"] for r in videos) != n):
        raise ConfigError(f"{n} windows, {t['window_video'].shape[0]} window rows, {t['clips'].shape[0]} clips for "
                          f"{len(videos)} videos: delete the index and build it again", field="windows", source=str(path))
    info = Path(folder) / "index.json"
    failed = json.loads(info.read_text()).get("failed", []) if info.is_file() else []
    return IndexData(settings, videos, t["windows"], t["clips"], t["window_video"], t["window_span"], failed)


def _write_index(folder: Path, data: IndexData) -> None:
    tensors = {"windows": data.windows.float().contiguous(), "clips": data.clips.float().contiguous(),
               "window_video": data.window_video.long().contiguous(), "window_span": data.window_span.double().contiguous()}
    tmp = folder / f".{INDEX_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "settings": json.dumps(data.settings),
                                           "videos": json.dumps(data.videos)})
    os.replace(tmp, folder / INDEX_FILE)  # the commit point
    info = {"format": FORMAT, "settings": data.settings, "num_videos": len(data.videos),
            "num_windows": int(data.windows.shape[0]), "failed": data.failed}
    _atomic_write(folder / "index.json", json.dumps(info, indent=2).encode())
    rows = ["video,start,end"] + [f"{json.dumps(data.videos[v]['video'])},{s:.3f},{e:.3f}"
                                  for v, (s, e) in zip(data.window_video.tolist(), data.window_span.tolist())]
    _atomic_write(folder / "windows.csv", ("\n".join(rows) + "\n").encode())


def _check_settings(folder: Path, old: dict, new: dict) -> None:
    """Refuse to add to an index built by another model, with other preprocessing, or of another folder."""
    src = str(folder / "index.json")
    om, nm = old["model"], new["model"]
    if om["weights_sha256"] != nm["weights_sha256"]:
        raise ConfigError(f"the index was built with model {om['name']!r} from {om['dir']} (weights {om['weights_sha256']}), "
                          f"not {nm['name']!r} from {nm['dir']} (weights {nm['weights_sha256']}): one index holds one model's "
                          "embeddings; use another --out", field="model", source=src)
    for key in ("preprocessing", "window", "stride", "thumb_size"):
        if old[key] != new[key]:
            raise ConfigError(f"the index was built with {key} {old[key]}, not {new[key]}: use the same settings or "
                              "another --out", field=key, source=src)
    if old["root"] != new["root"]:
        raise ConfigError(f"the index is of the videos in {old['root']}, not {new['root']}; use another --out",
                          field="root", source=src)


# ---------------------------------------------------------------------------------------- decoding
class WindowChunks(Dataset):
    """Item ``i``: a run of windows of one video, decoded and preprocessed: ``frames`` float32
    ``[n, T, 3, S, S]`` (the first chunk of a video also carries the whole clip, as its first row),
    ``thumbs`` (JPEG bytes per window), ``video`` (position in ``videos``), ``first`` (window number of the
    first row), ``last`` (the video's last chunk); on a decoding error ``frames`` is None and ``error`` says why."""

    def __init__(self, videos: list[VideoFile], spans: list[list[tuple[float, float]]], processor: VideoProcessor,
                 chunk: int, thumb_size: int, timeout: float = 0.0):
        self.videos, self.spans, self.processor, self.thumb_size = videos, spans, processor, thumb_size
        self.transform = processor.transform()
        self.items = [(v, j, min(j + chunk, len(s))) for v, s in enumerate(spans) for j in range(0, len(s), chunk)]
        self.watchdog = Watchdog(timeout)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        v, a, b = self.items[i]
        video, spans = self.videos[v], self.spans[v][a:b]
        base = {"video": v, "first": a, "last": b == len(self.spans[v])}
        times = [self.processor.times(s, e, video.fps) for s, e in spans]
        if a == 0:  # the whole clip, as extract samples it
            times.insert(0, self.processor.frame_times(video.duration, video.fps, video.frame_count)[0])
        mids = [min((s + e) / 2, max(video.duration - 1e-3, 0.0)) for s, e in spans]
        try:
            frames = self.watchdog.call("decode_frames", video.path, np.concatenate([*times, mids]), threads=1)
        except SampleError as e:
            return {**base, "frames": None, "error": {"reason": e.reason, "detail": e.detail}}
        t = self.processor.num_frames
        clips = frames[: t * len(times)].reshape(len(times), t, *frames.shape[1:])
        return {**base, "frames": torch.stack([self.transform(c, None) for c in clips]),
                "thumbs": [_thumbnail(f, self.thumb_size) for f in frames[t * len(times):]]}


def _probe_all(videos: list[VideoFile], timeout: float) -> tuple[list[VideoFile], list[dict]]:
    wd, ok, failed = Watchdog(timeout), [], []
    try:
        for v in videos:
            try:
                info = wd.call("probe", v.path)
                v.duration, v.fps, v.frame_count = float(info.duration), float(info.fps), int(info.num_frames)
                ok.append(v)
            except SampleError as e:
                failed.append({"video": v.rel, "path": v.path, "reason": e.reason, "detail": e.detail})
    finally:
        wd.close()
    return ok, failed


# ---------------------------------------------------------------------------------------- building
def model_record(model, model_dir: str) -> dict:
    from tvts.eval.extract import weights_fingerprint

    return {"dir": str(Path(model_dir).resolve()), "name": model.config.name, "family": getattr(model.config, "family", "video_bert"),
            "weights_sha256": weights_fingerprint(model), "embed_dim": int(model.config.embed_dim)}


def _read_part(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {})["video"]), {k: f.get_tensor(k) for k in f.keys()}


@torch.no_grad()
def build_index(model, videos_root: str | os.PathLike, out: str | os.PathLike, *, model_dir: str,
                processor: VideoProcessor, window: float = DEFAULT_WINDOW, stride: float | None = None,
                batch_size: int = 16, workers: int = 0, device="cpu", progress: bool = True, timeout: float = 0.0,
                thumb_size: int = DEFAULT_THUMB, on_video=None) -> dict:
    """Build or update the index ``out`` of every video under ``videos_root`` (see the module docstring).
    ``on_video(rel)`` is called after each newly embedded video is saved (tests use it to stop a run).
    Returns counts: ``videos``, ``windows``, ``embedded`` (now), ``reused``, ``changed`` (files embedded again),
    ``removed`` (files gone), and ``failed`` (list of ``{"video", "path", "reason", "detail"}``)."""
    from tvts.eval.extract import progress_bar

    stride = window / 2 if stride is None else stride
    out, root = Path(out), Path(videos_root)
    if not root.is_dir():
        raise ConfigError("video folder not found", source=str(root))
    settings = {"model": model_record(model, model_dir), "preprocessing": processor.describe(), "window": float(window),
                "stride": float(stride), "thumb_size": int(thumb_size), "root": str(root.resolve())}
    window_spans(1.0, window, stride)  # validates window and stride
    out.mkdir(parents=True, exist_ok=True)
    old = read_index(out) if (out / INDEX_FILE).exists() else None
    if old is not None:
        _check_settings(out, old.settings, settings)
    parts = out / "parts"
    parts_record = parts / "settings.json"
    if parts.is_dir() and parts_record.is_file() and json.loads(parts_record.read_text()) != settings:
        shutil.rmtree(parts)  # left by an interrupted run with other settings (refused above if an index exists)
    parts.mkdir(exist_ok=True)
    parts_record.write_text(json.dumps(settings))

    # What is already embedded: {key: (video record, window rows, clip row, spans)}
    done: dict[str, tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    if old is not None:
        a = 0
        for i, rec in enumerate(old.videos):  # a video's windows are consecutive rows
            b = a + rec["windows"]
            done[rec["key"]] = (rec, old.windows[a:b], old.clips[i], old.window_span[a:b])
            a = b
    for p in sorted(parts.glob("*.safetensors")):
        try:
            rec, t = _read_part(p)
        except Exception:  # a part cut short by a crash: embedded again
            p.unlink()
            continue
        done[rec["key"]] = (rec, t["windows"], t["clip"][0], t["spans"])

    videos, failed = scan_videos(root)
    todo, failed_probe = _probe_all([v for v in videos if v.key not in done], timeout)
    failed += failed_probe
    spans = [window_spans(v.duration, window, stride) for v in todo]
    ds = WindowChunks(todo, spans, processor, max(1, batch_size), thumb_size, timeout)
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    model.eval()
    bad: set[int] = set()
    acc: dict[int, list] = {}
    embedded = 0
    for item in progress_bar(loader, "index windows", progress, len(ds)):
        v = item["video"]
        if v in bad:
            continue
        if item["frames"] is None:
            bad.add(v)
            acc.pop(v, None)
            failed.append({"video": todo[v].rel, "path": todo[v].path, **item["error"]})
            continue
        emb = F.normalize(model.encode_video(item["frames"].to(device)).float().cpu(), dim=-1)
        acc.setdefault(v, [[], None, []])
        if item["first"] == 0:
            acc[v][1], emb = emb[0], emb[1:]
        acc[v][0].append(emb)
        acc[v][2] += item["thumbs"]
        if item["last"]:
            windows, clip, thumbs = acc.pop(v)
            vid = todo[v]
            tdir = out / "thumbs" / vid.key
            tdir.mkdir(parents=True, exist_ok=True)
            for j, jpg in enumerate(thumbs):
                _atomic_write(tdir / f"{j}.jpg", jpg)
            rec = {"video": vid.rel, "size": vid.size, "mtime_ns": vid.mtime_ns, "duration": vid.duration,
                   "key": vid.key, "windows": len(spans[v])}
            t = {"windows": torch.cat(windows), "clip": clip[None], "spans": torch.tensor(spans[v], dtype=torch.float64)}
            tmp = parts / f".{vid.key}.tmp"
            save_file({k: x.contiguous() for k, x in t.items()}, str(tmp), metadata={"video": json.dumps(rec)})
            os.replace(tmp, parts / f"{vid.key}.safetensors")
            done[vid.key] = (rec, t["windows"], clip, t["spans"])
            embedded += 1
            if on_video is not None:
                on_video(vid.rel)

    kept = [v for v in videos if v.key in done]
    recs = [done[v.key][0] for v in kept]
    dim = settings["model"]["embed_dim"]
    data = IndexData(
        settings, recs,
        torch.cat([done[v.key][1] for v in kept]) if kept else torch.zeros(0, dim),
        torch.stack([done[v.key][2] for v in kept]) if kept else torch.zeros(0, dim),
        torch.cat([torch.full((len(done[v.key][3]),), i, dtype=torch.long) for i, v in enumerate(kept)]) if kept
        else torch.zeros(0, dtype=torch.long),
        torch.cat([done[v.key][3] for v in kept]) if kept else torch.zeros(0, 2, dtype=torch.float64),
        failed,
    )
    _write_index(out, data)
    # Only now that the new index is in place: drop the parts and the thumbnails nothing refers to.
    shutil.rmtree(parts, ignore_errors=True)
    keys = {r["key"] for r in recs}
    if (out / "thumbs").is_dir():
        for d in (out / "thumbs").iterdir():
            if d.name not in keys:
                shutil.rmtree(d, ignore_errors=True)
    now = {v.rel: v.key for v in videos}
    before = {r["video"]: r["key"] for r in (old.videos if old else [])}
    return {"videos": len(recs), "windows": int(data.windows.shape[0]), "embedded": embedded,
            "reused": len(recs) - embedded, "changed": sum(1 for r, k in before.items() if r in now and now[r] != k),
            "removed": sum(1 for r in before if r not in now), "failed": failed}


def failed_line(failed: list[dict], limit: int = 10) -> str:
    """One line naming the videos that could not be indexed (the bad-input convention of tvts)."""
    names = ", ".join(f"{f['video']} ({f['reason']})" for f in failed[:limit])
    more = f" and {len(failed) - limit} more" if len(failed) > limit else ""
    return f"{len(failed)} video(s) skipped: {names}{more}"
