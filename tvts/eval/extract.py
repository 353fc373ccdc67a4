"""Video feature extraction: batched, resumable, with test-time views (clips x crops).

Output of :func:`extract_features` for ``out = feats.safetensors``:

- ``feats.safetensors``: one tensor ``features``, float32 ``[N, D]`` (views averaged, ``reduce="mean"``)
  or ``[N, V, D]`` (``reduce="none"``, V = clips x crops, clip-major), the model's video embedding, not
  normalised; its metadata ``ids`` (JSON) names the rows, so features and ids are written in one file,
  atomically (written beside, then renamed), and a row count that does not match is an error;
- ``feats.index.json``: ``{"ids": [...]}``, row ``i`` of ``features`` is video ``ids[i]`` (a copy for readers);
- ``feats.preprocessing.json``: the model folder and a hash of its weights, the video processor (frames,
  their sampling, the exact frame transform) and the views (a rerun resumes only with the same record: new weights in the same folder are refused,
  never served from the old features);
- ``feats.failed.json``: ``[{"video_id", "path", "reason", "detail"}]`` of videos that could not be
  decoded (they have no row: there are no black-frame features);
- while running, ``feats.parts/``: finished chunks; a rerun with the same preprocessing skips every video
  already in ``feats.safetensors`` or in a chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from tvts.data.processor import VideoProcessor
from tvts.data.watchdog import Watchdog
from tvts.errors import ConfigError, SampleError


def crop_windows(frames: np.ndarray, crops: int) -> list[np.ndarray]:
    """``crops`` = 1: ``[frames]``; 3: three square windows of side min(H, W) at the start, centre and end
    of the long side, each ``[T, s, s, 3]`` (each then gets the full transform, as the single view does)."""
    if crops == 1:
        return [frames]
    h, w = frames.shape[1:3]
    s = min(h, w)
    starts = [0, (max(h, w) - s) // 2, max(h, w) - s]
    return [frames[:, o : o + s] if h > w else frames[:, :, o : o + s] for o in starts]


class ViewsDataset(Dataset):
    """Items: ``frames`` float32 ``[V, T, 3, S, S]`` (V = clips x crops, clip-major), ``video_id``,
    ``index``; a video that cannot be decoded gives ``frames=None`` and ``error`` (reason, path, detail).
    Each clip's frames are sampled by ``processor`` in its own of ``clips`` equal windows of the video."""

    def __init__(self, paths: list[str], ids: list[str], processor: VideoProcessor, clips: int = 1, crops: int = 1,
                 timeout: float = 0.0):
        if crops not in (1, 3) or clips < 1:
            raise ConfigError(f"need clips >= 1 and crops in (1, 3), got {clips}, {crops}", field="views")
        self.paths, self.ids = list(paths), list(ids)
        self.processor, self.clips, self.crops = processor, clips, crops
        self.transform = processor.transform(train=False)
        self.watchdog = Watchdog(timeout)  # > 0: a probe or decode that takes longer is stopped ("timeout")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        try:
            frames = self.processor.read(path, self.clips, watchdog=self.watchdog)  # [clips, T, H, W, 3]
            views = [self.transform(w, None) for clip in frames for w in crop_windows(clip, self.crops)]
        except SampleError as e:
            return {"frames": None, "video_id": self.ids[i], "index": i,
                    "error": {"reason": e.reason, "path": e.path or path, "detail": e.detail}}
        return {"frames": torch.stack(views), "video_id": self.ids[i], "index": i}


def collate_views(samples: list[dict]) -> dict:
    """Batch :class:`ViewsDataset` items: ``frames`` ``[B, V, T, 3, S, S]`` (None when no video of the batch
    could be decoded), ``video_id`` of those, ``failed``: ``{"video_id", "reason", "path", "detail"}`` of the others."""
    good = [s for s in samples if s["frames"] is not None]
    return {"frames": torch.stack([s["frames"] for s in good]) if good else None,
            "video_id": [s["video_id"] for s in good],
            "failed": [{"video_id": s["video_id"], **s["error"]} for s in samples if s["frames"] is None]}


@dataclass
class Features:
    """Extracted features: ``features`` ``[N, D]`` or ``[N, V, D]`` (not normalised), ``ids`` (N), the
    ``failed`` videos, and ``preprocessing``."""

    features: torch.Tensor
    ids: list[str]
    failed: list[dict]
    preprocessing: dict

    def pooled(self) -> torch.Tensor:
        """``[N, D]``, L2-normalised after averaging the views."""
        f = self.features.mean(1) if self.features.ndim == 3 else self.features
        return torch.nn.functional.normalize(f.float(), dim=-1)

    def rows(self, ids: list[str]) -> tuple[torch.Tensor, list[int]]:
        """(pooled features of those of ``ids`` that were extracted, their positions in ``ids``)."""
        where = {v: i for i, v in enumerate(self.ids)}
        keep = [j for j, v in enumerate(ids) if v in where]
        return self.pooled()[[where[ids[j]] for j in keep]], keep


def side_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The files written beside ``out`` (see the module docstring)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".safetensors" else out
    return {"features": out, "index": Path(f"{stem}.index.json"), "preprocessing": Path(f"{stem}.preprocessing.json"),
            "failed": Path(f"{stem}.failed.json"), "parts": Path(f"{stem}.parts")}


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter and buffer of ``model`` (names, shapes, bytes, any dtype)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def preprocessing_record(model_dir: str, processor: VideoProcessor, clips: int, crops: int, reduce: str,
                         weights: str = "") -> dict:
    return {"model": str(model_dir), "weights_sha256": weights, "processor": processor.describe(),
            "clips": clips, "crops": crops, "crop_windows": "1: whole frame; 3: start/centre/end squares of the long side",
            "views_order": "clip-major", "reduce": reduce, "embedding": "model.encode_video, not normalised"}


def _done(paths: dict[str, Path], prep: dict) -> dict[str, torch.Tensor]:
    """Features already extracted with the same preprocessing: {video id: [D] or [V, D]}."""
    if not paths["preprocessing"].exists():
        return {}
    old = json.loads(paths["preprocessing"].read_text())
    if old != prep:
        raise ConfigError(f"{paths['features']} was extracted with other settings; use another --out or delete it "
                          f"(old: {old}, new: {prep})", source=str(paths["preprocessing"]))
    done: dict[str, torch.Tensor] = {}
    if paths["features"].exists():
        ids, feats = _read_rows(paths["features"])
        done.update(zip(ids, feats))
    for part in sorted(paths["parts"].glob("part_*.safetensors")) if paths["parts"].is_dir() else []:
        ids, feats = _read_rows(part)
        done.update(zip(ids, feats))
    return done


def _write_rows(path: Path, ids: list[str], feats: torch.Tensor) -> None:
    """``features`` with its row ids in the metadata, written beside ``path`` and renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"features": feats.contiguous()}, str(tmp), metadata={"ids": json.dumps(ids)})
    os.replace(tmp, path)


def _read_rows(path: Path) -> tuple[list[str], torch.Tensor]:
    """(ids, features) of a file of :func:`_write_rows`; an error when they do not match row for row."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        feats = f.get_tensor("features")
    if "ids" not in meta:
        raise ConfigError(f"{path} names no rows (written by an older tvts?): delete it and extract again", source=str(path))
    ids = json.loads(meta["ids"])
    if len(ids) != (feats.shape[0] if feats.ndim else 0):
        raise ConfigError(f"{path} has {feats.shape[0] if feats.ndim else 0} rows for {len(ids)} ids: delete it and "
                          "extract again", source=str(path))
    return ids, feats


def _write_part(parts: Path, n: int, ids: list[str], feats: list[torch.Tensor]) -> None:
    parts.mkdir(parents=True, exist_ok=True)
    _write_rows(parts / f"part_{n:05d}.safetensors", ids, torch.stack(feats))


@torch.no_grad()
def extract_features(model, paths: list[str], ids: list[str], out: str | os.PathLike, *, model_dir: str,
                     processor: VideoProcessor, clips: int = 1, crops: int = 1, reduce: str = "mean",
                     batch_size: int = 8, workers: int = 0, device="cpu", chunk: int = 256,
                     progress: bool = True, timeout: float = 0.0) -> Features:
    """Encode every video (skipping those already done, see the module docstring) and write the files.
    Returns the features of the requested videos that could be decoded, in request order."""
    if reduce not in ("mean", "none"):
        raise ConfigError(f"reduce must be 'mean' or 'none', got {reduce!r}", field="reduce")
    if len(set(ids)) != len(ids):
        seen: dict[str, str] = {}
        clashes = []
        for v, p in zip(ids, paths):
            if v in seen:
                clashes.append(f"'{v}': {seen[v]} and {p}")
            seen.setdefault(v, p)
        raise ConfigError(f"video ids must be unique; the same id for {'; '.join(clashes[:5])}", field="ids")
    files = side_paths(out)
    files["features"].parent.mkdir(parents=True, exist_ok=True)
    prep = preprocessing_record(model_dir, processor, clips, crops, reduce, weights_fingerprint(model))
    done = _done(files, prep)
    files["preprocessing"].write_text(json.dumps(prep, indent=2))
    todo = [i for i, v in enumerate(ids) if v not in done]
    failed = _encode(model, ViewsDataset([paths[i] for i in todo], [ids[i] for i in todo], processor, clips, crops,
                                         timeout), files["parts"], done, reduce, batch_size, workers, device, chunk, progress)
    kept = [v for v in ids if v in done]
    feats = torch.stack([done[v] for v in kept]) if kept else torch.zeros(0)
    _write_rows(files["features"], kept, feats)
    files["index"].write_text(json.dumps({"ids": kept}))
    files["failed"].write_text(json.dumps(failed, indent=2))
    shutil.rmtree(files["parts"], ignore_errors=True)  # merged into the final file
    return Features(feats, kept, failed, prep)


def _encode(model, ds: ViewsDataset, parts: Path, done: dict, reduce: str, batch_size: int, workers: int, device,
            chunk: int, progress: bool) -> list[dict]:
    """Encode ``ds`` into ``done`` (in place), saving a part every ``chunk`` videos; returns the failures."""
    model.eval()
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_views)
    failed, pending_ids, pending = [], [], []
    first_part = len(list(parts.glob("part_*.safetensors"))) if parts.is_dir() else 0
    for batch in progress_bar(loader, "extract features", progress, len(loader)):
        failed += batch["failed"]
        if batch["frames"] is not None:
            b, v = batch["frames"].shape[:2]
            emb = model.encode_video(batch["frames"].flatten(0, 1).to(device)).float().cpu().reshape(b, v, -1)
            emb = emb.mean(1) if reduce == "mean" else emb
            pending_ids += batch["video_id"]
            pending += list(emb)
        if len(pending_ids) >= chunk:
            _write_part(parts, first_part, pending_ids, pending)
            first_part += 1
            done.update(zip(pending_ids, pending))
            pending_ids, pending = [], []
    done.update(zip(pending_ids, pending))
    return failed


def progress_bar(iterable, desc: str, enabled: bool, total: int | None = None):
    """``iterable`` with a tqdm bar when ``enabled`` (the evaluation's one progress display)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, leave=False)


def load_features(path: str | os.PathLike) -> Features:
    """Read what :func:`extract_features` wrote."""
    files = side_paths(path)
    ids, feats = _read_rows(files["features"])
    failed = json.loads(files["failed"].read_text()) if files["failed"].exists() else []
    return Features(feats, ids, failed, json.loads(files["preprocessing"].read_text()))
