"""Evaluation protocols run by the main job: transcript sort accuracy (TVTS appendix Table 13) and
zero-shot text-to-video retrieval on captions in the MSR-VTT layout."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tvts.data.datasets import ClipDataset, TranscriptVideoDataset, collate, collate_clips
from tvts.data.transforms import VideoTransform
from tvts.eval.metrics import retrieval_metrics
from tvts.objectives.sorting import sort_metrics


def _progress(iterable, desc: str, enabled: bool, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, leave=False)


@torch.no_grad()
def sort_accuracy(model, dataset: TranscriptVideoDataset, batch_size: int = 32, workers: int = 2,
                  device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Per-segment and whole-order accuracy of the sort head with the video (T+V) and without it
    (T only: the head sees no video token). The dataset must be in evaluation mode (centred
    segments, middle frames, no mask) with a fixed shuffle per video."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    logits_tv, logits_t, orders = [], [], []
    for batch in _progress(loader, "sort accuracy", progress, len(loader)):
        frames = batch["frames"].to(device)
        k = len(batch["texts"][0])
        feats = model.text_model([t for s in batch["texts"] for t in s]).reshape(len(batch["texts"]), k, -1)
        logits_tv.append(model.sort_logits(model.video_model(frames), feats).cpu())
        logits_t.append(model.sort_logits(None, feats).cpu())
        orders.append(batch["order"])
    order = torch.cat(orders)
    k = order.shape[1]
    tv = sort_metrics(torch.cat(logits_tv), order)
    t = sort_metrics(torch.cat(logits_t), order)
    fact = 1
    for i in range(2, k + 1):
        fact *= i
    return {
        "num_videos": len(order), "K": k, "chance_segment_acc": 1 / k, "chance_order_acc": 1 / fact,
        "text_video": {n: v.item() for n, v in tv.items()},
        "text_only": {n: v.item() for n, v in t.items()},
    }


def read_msrvtt_test(root: str | Path) -> tuple[list[str], list[str]]:
    """(video ids, captions) from ``<root>/msrvtt/MSRVTT_JSFUSION_test.csv`` (one caption per test
    video, the 1k-A convention). Videos are ``<root>/videos/all/<video_id>.mp4``."""
    path = Path(root) / "msrvtt" / "MSRVTT_JSFUSION_test.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"video_id", "sentence"} <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns key,vid_key,video_id,sentence")
    return [r["video_id"] for r in rows], [r["sentence"] for r in rows]


@torch.no_grad()
def encode_clips(model, dataset: ClipDataset, batch_size: int = 32, workers: int = 2,
                 device: str | torch.device = "cpu", progress: bool = True) -> torch.Tensor:
    """Video embeddings ``[N, D]`` (L2-normalised) of every clip, in dataset order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    out = [model.encode_video(b["frames"].to(device)).float().cpu() for b in _progress(loader, "encode videos", progress, len(loader))]
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def encode_texts(model, texts: list[str], batch_size: int = 128) -> torch.Tensor:
    model.eval()
    out = [model.encode_text(texts[i : i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


def zero_shot_retrieval(model, heldout_root: str | Path, num_frames: int, img_size: int, resize_ratio: float = 1.2,
                        batch_size: int = 32, workers: int = 2, device="cpu", progress: bool = True) -> dict:
    """Zero-shot caption → video retrieval on an MSR-VTT-layout test list (protocol ``msrvtt-1ka-style``)."""
    ids, captions = read_msrvtt_test(heldout_root)
    paths = [str(Path(heldout_root) / "videos" / "all" / f"{v}.mp4") for v in ids]
    ds = ClipDataset(paths, num_frames, VideoTransform(img_size, resize_ratio, train=False), ids=ids)
    v = encode_clips(model, ds, batch_size, workers, device, progress)
    t = encode_texts(model, captions)
    metrics = retrieval_metrics(t @ v.T, torch.arange(len(ids)))
    return {"num_queries": len(captions), "num_videos": len(ids), "chance_R@1": 100.0 / len(ids), **metrics}
