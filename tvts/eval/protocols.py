"""Evaluation protocols of the four papers, written against the model interface only
(``encode_video(frames [B, T, 3, H, W]) -> [B, D]``, ``encode_text(list[str]) -> [n, D]``;
transcript sorting also needs ``text_model`` and ``sort_logits``).

The functions taking features (:func:`retrieval_from_features`, :func:`linear_probe`,
:func:`frozen_feature_protocols`) are pure; :class:`Encoder` turns videos and texts into L2-normalised
features, caching the video features (see :mod:`tvts.eval.extract`). Every result is a flat dict of numbers plus counts and settings; result
names (keys in a report) are ``"<dataset version>/<protocol>"``, e.g. ``"msrvtt-1ka/zs-retrieval"``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from tvts.data.datasets import TranscriptVideoDataset
from tvts.data.samples import collate
from tvts.data.processor import VideoProcessor
from tvts.data.transforms import VideoTransform
from tvts.eval.annotations import LabelledSet, RetrievalSet, SvoProbeSet, readable_class_name
from tvts.eval.extract import Features, extract_features, progress_bar
from tvts.eval.metrics import (confusion_matrix, dual_softmax_retrieval_metrics, knn_predict, retrieval_metrics,
                               svo_probe_metrics, topk_accuracy, v2v_retrieval_metrics)
from tvts.errors import ConfigError, SampleError
from tvts.objectives.sorting import sort_metrics

DEFAULT_TEMPLATES = ("a person {}",)
"""TVTSv2's zero-shot recognition prompt."""


# ---------------------------------------------------------------------------------------- encoding
@dataclass
class Encoder:
    """A model plus its video processor (test-time preprocessing). ``cache_dir``: where video features are
    kept (``<dataset name>-<hash of the preprocessing>.safetensors``), so a protocol can be re-run without
    re-encoding; ``None``: a temporary folder."""

    model: torch.nn.Module
    model_dir: str
    processor: VideoProcessor
    clips: int = 1
    crops: int = 1
    batch_size: int = 16
    workers: int = 0
    device: str | torch.device = "cpu"
    cache_dir: Path | None = None
    progress: bool = True

    @property
    def num_frames(self) -> int:
        return self.processor.num_frames

    @property
    def transform(self) -> VideoTransform:
        """The per-frame evaluation transform of :attr:`processor`."""
        return self.processor.transform(train=False)

    def videos(self, name: str, paths: list[str], ids: list[str]) -> Features:
        """Features of the videos (views averaged); the undecodable ones are in ``failed``."""
        key = json.dumps([_model_stamp(self.model_dir), self.processor.describe(), self.clips, self.crops], sort_keys=True)
        fname = f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.safetensors"
        kw = dict(model_dir=self.model_dir, processor=self.processor, clips=self.clips, crops=self.crops,
                  batch_size=self.batch_size, workers=self.workers, device=self.device, progress=self.progress)
        if self.cache_dir is not None:
            return extract_features(self.model, paths, ids, Path(self.cache_dir) / fname, **kw)
        with tempfile.TemporaryDirectory() as tmp:
            return extract_features(self.model, paths, ids, Path(tmp) / fname, **kw)

    @torch.no_grad()
    def texts(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """``[n, D]`` L2-normalised text embeddings."""
        self.model.eval()
        out = [self.model.encode_text(texts[i : i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)]
        return F.normalize(torch.cat(out), dim=-1)

    def labelled(self, ds: LabelledSet) -> tuple[torch.Tensor, torch.Tensor, list[int], list[dict]]:
        """(features ``[n, D]``, labels ``[n]``, positions in ``ds`` of the decoded videos, failures)."""
        f = self.videos(ds.name + "-" + _digest(ds.video_ids), ds.paths, ds.video_ids)
        feats, keep = f.rows(ds.video_ids)
        if not keep:
            raise ConfigError(f"{ds.name}: no video could be decoded ({len(f.failed)} failures)")
        return feats, torch.tensor([ds.labels[j] for j in keep]), keep, f.failed


def _model_stamp(model_dir: str) -> list:
    """The model folder and its files' sizes and modification times: a retrained model gets a new cache."""
    d = Path(model_dir).resolve()
    files = sorted(d.glob("*.safetensors")) if d.is_dir() else []
    return [str(d)] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _digest(ids: list[str]) -> str:
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:6]


def _failures(failed: list[dict]) -> dict:
    return {"num_failed": len(failed), "failed": failed[:20]}


# ---------------------------------------------------------------------------------------- retrieval
def retrieval_from_features(text: torch.Tensor, video: torch.Tensor, text_to_video: torch.Tensor,
                            dsl_temperature: float | None = None) -> dict[str, dict]:
    """``text`` ``[n_text, D]``, ``video`` ``[n_video, D]`` (normalised): ``{"zs-retrieval": metrics}`` and,
    with ``dsl_temperature``, ``{"zs-retrieval-dsl": metrics}`` of the dual-softmax re-ranked matrix."""
    sim = text @ video.T
    counts = {"num_queries": len(text), "num_videos": len(video), "chance_R@1": 100.0 / len(video)}
    out = {"zs-retrieval": {**counts, **retrieval_metrics(sim, text_to_video)}}
    if dsl_temperature is not None:
        out["zs-retrieval-dsl"] = {**counts, "dsl_temperature": dsl_temperature,
                                   **dual_softmax_retrieval_metrics(sim, text_to_video, dsl_temperature)}
    return out


def zero_shot_retrieval(enc: Encoder, ds: RetrievalSet, dsl_temperature: float | None = None,
                        examples: int = 0) -> Retrieved:
    """Text→video and video→text retrieval on ``ds`` (every caption a query). Videos that cannot be
    decoded are left out with their captions and listed. ``examples``: also give the top-3 videos of that
    many first queries."""
    f = enc.videos(ds.name + "-" + _digest(ds.video_ids), ds.paths, ds.video_ids)
    video, keep = f.rows(ds.video_ids)
    new_index = {j: i for i, j in enumerate(keep)}
    queries = [(c, new_index[v]) for c, v in zip(ds.captions, ds.text_to_video) if v in new_index]
    text = enc.texts([c for c, _ in queries])
    t2v = torch.tensor([v for _, v in queries])
    out = Retrieved({f"{ds.name}/{k}": {**v, **_failures(f.failed)} for k, v in
                     retrieval_from_features(text, video, t2v, dsl_temperature).items()})
    if examples:
        scores = text[:examples] @ video.T
        top = scores.topk(min(3, len(video)), dim=1).indices
        # the rank of the right video: 1 + the videos scored above it
        rank = (scores > scores.gather(1, t2v[:examples, None])).sum(1) + 1
        out.examples = [{"query": queries[i][0], "truth": ds.paths[keep[queries[i][1]]], "rank": int(rank[i]),
                             "top": [ds.paths[keep[j]] for j in top[i].tolist()]} for i in range(len(top))]
    return out


# ---------------------------------------------------------------------------------------- recognition
def class_embeddings(enc: Encoder, class_names: list[str], templates=DEFAULT_TEMPLATES) -> torch.Tensor:
    """``[C, D]``: for each class, the normalised embeddings of every template filled with its name,
    averaged and re-normalised (a template ensemble when there are several templates)."""
    per_template = [enc.texts([t.format(c) for c in class_names]) for t in templates]  # each [C, D]
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


@dataclass
class Classified:
    """What a classification protocol gives: ``metrics`` (JSON-ready: top-k, counts, the confusion matrix,
    settings) and, for figures, ``logits`` ``[N, C]`` with ``keep``, the dataset positions of the N rows."""

    metrics: dict
    logits: torch.Tensor | None = None
    keep: list[int] = field(default_factory=list)


@dataclass
class Retrieved:
    """What zero-shot retrieval gives: ``metrics`` by result name, and ``examples`` (the top-3 videos of the
    first queries, with the right one and its rank) for :func:`tvts.eval.figures.retrieval_examples_png`."""

    metrics: dict[str, dict]
    examples: list[dict] = field(default_factory=list)


def classification_result(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Top-1/top-5, counts and the confusion matrix (rows: true class) of ``logits`` ``[N, C]``."""
    return {**topk_accuracy(logits, labels), "num_videos": len(labels), "num_classes": num_classes,
            "chance_top1": 100.0 / num_classes,
            "confusion": confusion_matrix(logits.argmax(1), labels, num_classes).tolist()}


def zero_shot_recognition(enc: Encoder, ds: LabelledSet, templates=DEFAULT_TEMPLATES,
                          prompt_names: list[str] | None = None) -> Classified:
    """Zero-shot classification by class-name prompts: logits = cos(video, class embedding).
    ``prompt_names``: the words put in the templates (default :func:`readable_class_name` of each class)."""
    video, labels, keep, failed = enc.labelled(ds)
    names = prompt_names or [readable_class_name(c) for c in ds.class_names]
    logits = video @ class_embeddings(enc, names, templates).T
    return Classified({**classification_result(logits, labels, len(ds.class_names)), "templates": list(templates),
                       "prompt_names": names, **_failures(failed)}, logits, keep)


def ssv2_mc_candidates(ds: LabelledSet, seed: int = 0) -> tuple[list[list[str]], list[int]]:
    """For each video: its own description and one description of a random video of every other class
    present (173 negatives on SSV2), shuffled; returns (candidates per video, index of the true one).
    Drawn from ``numpy.random.default_rng(seed)``, in dataset order."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(ds.labels):
        by_class.setdefault(c, []).append(i)
    classes = sorted(by_class)
    options, answers = [], []
    for i, c in enumerate(ds.labels):
        cand = [ds.descriptions[i]] + [ds.descriptions[by_class[o][rng.integers(len(by_class[o]))]]
                                       for o in classes if o != c]
        perm = rng.permutation(len(cand))
        options.append([cand[p] for p in perm])
        answers.append(int(np.argmin(perm)))  # where the true description (index 0) went
    return options, answers


def ssv2_mc(enc: Encoder, ds: LabelledSet, seed: int = 0) -> dict:
    """SSV2-MC (TVTSv2 appendix): pick the true description among one per class; top-1 (and top-5)."""
    if not ds.descriptions:
        raise ConfigError(f"{ds.name}: SSV2-MC needs per-video descriptions (SSV2 layout)")
    video, _, keep, failed = enc.labelled(ds)
    return {**multiple_choice(enc, ds, video, keep, seed), **_failures(failed)}


def multiple_choice(enc: Encoder, ds: LabelledSet, video: torch.Tensor, keep: list[int], seed: int = 0) -> dict:
    """SSV2-MC scores from already encoded videos: ``video`` ``[n, D]`` (normalised) are the videos
    ``keep`` (indices into ``ds``) in that order."""
    options, answers = ssv2_mc_candidates(ds, seed)
    unique = sorted(set(ds.descriptions))
    text = enc.texts(unique)  # each description is encoded once
    row = {d: i for i, d in enumerate(unique)}
    logits = torch.stack([text[[row[o] for o in options[j]]] @ video[n] for n, j in enumerate(keep)])
    labels = torch.tensor([answers[j] for j in keep])
    return {**topk_accuracy(logits, labels), "num_videos": len(keep), "num_candidates": logits.shape[1],
            "chance_top1": 100.0 / logits.shape[1], "seed": seed}


def caption_vs_foil(video: torch.Tensor, caption: torch.Tensor, foil: torch.Tensor) -> dict:
    """Two-way choice per video between its caption and a foil that differs in one concept: ``video``,
    ``caption``, ``foil`` ``[n, D]`` (normalised). Top-1 in percent (a tie counts as wrong), chance 50."""
    right = (video * caption).sum(-1) > (video * foil).sum(-1)
    return {"top1": 100.0 * int(right.sum()) / len(video), "num_videos": len(video), "chance_top1": 50.0}


# ---------------------------------------------------------------------------------------- images (SVO-Probes)
def decode_image(path: str) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB of an image file (EXIF orientation applied, alpha dropped, first frame of an
    animation), or :class:`SampleError` ``("decode", path, why)``."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.seek(0)
            return np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)  # a writable copy
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise SampleError("decode", path, f"{type(e).__name__}: {e}".strip()) from None


class ImagesDataset(Dataset):
    """Items ``{"frames": float32 [1, 3, S, S] (None when the file cannot be decoded), "index", "error"}``: each
    image as a one-frame video through the model's video processor (the same resize, crop and normalisation as
    every video frame); a batch ``[B, 3, S, S]`` is what ``encode_video`` takes as one frame each."""

    def __init__(self, paths: list[str], processor: VideoProcessor):
        self.paths, self.processor = list(paths), processor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        try:
            return {"frames": self.processor(decode_image(self.paths[i])), "index": i}
        except SampleError as e:
            return {"frames": None, "index": i, "error": {"reason": e.reason, "path": e.path, "detail": e.detail}}


@torch.no_grad()
def encode_images(enc: Encoder, paths: list[str]) -> tuple[torch.Tensor, list[int], list[dict]]:
    """(L2-normalised image embeddings ``[n, D]`` of the files that could be decoded, their positions in
    ``paths``, ``{"index", "reason", "path", "detail"}`` of the others). Each image is one frame, centre crop
    (``enc.clips`` and ``enc.crops`` do not apply); not cached (an image is one frame, cheap to encode)."""
    enc.model.eval()
    loader = DataLoader(ImagesDataset(paths, enc.processor), batch_size=enc.batch_size, num_workers=enc.workers,
                        collate_fn=list)
    feats, keep, failed = [], [], []
    for batch in progress_bar(loader, "encode images", enc.progress, len(loader)):
        failed += [{"index": s["index"], **s["error"]} for s in batch if s["frames"] is None]
        good = [s for s in batch if s["frames"] is not None]
        if good:
            x = torch.cat([s["frames"] for s in good]).to(enc.device)  # [b, 3, S, S]: one frame per image
            feats.append(enc.model.encode_video(x).float().cpu())
            keep += [s["index"] for s in good]
    return (F.normalize(torch.cat(feats), dim=-1) if feats else torch.zeros(0, 0)), keep, failed


def svo_probes(enc: Encoder, ds: SvoProbeSet, thresholds=(0.2, 0.25, 0.3)) -> dict:
    """SVO-Probes zero-shot (TVTS appendix C.2, Table 4): each sentence against its positive and negative
    image by cosine similarity; precision at each threshold and pairwise accuracy
    (:func:`tvts.eval.metrics.svo_probe_metrics`), overall and per concept (``concepts``). Rows whose positive
    or negative image is missing (``missing``) or cannot be decoded (``failed``) are left out and counted
    (``num_rows_skipped``); so are malformed rows (``malformed``). Lists hold the first 20 of each."""
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        raise ConfigError("at least one threshold is needed", field="thresholds")
    ids = list(ds.images)
    image, keep, bad = encode_images(enc, [ds.images[i] for i in ids])
    row_of = {ids[j]: n for n, j in enumerate(keep)}
    failed = []
    for f in bad:
        image_id = ids[f.pop("index")]
        row, col = ds.first_use(image_id)
        failed.append({"image_id": image_id, "row": row, "field": col, **f})
    use = [i for i in range(len(ds.rows)) if ds.pos_ids[i] in row_of and ds.neg_ids[i] in row_of]
    if not use:
        raise ConfigError(f"{ds.name}: no row has both images ({len(ds.missing)} image ids missing, {len(failed)} "
                          f"unreadable)", source=ds.csv_path)
    sentences = sorted({ds.sentences[i] for i in use})
    where = {t: k for k, t in enumerate(sentences)}
    text = enc.texts(sentences)[[where[ds.sentences[i]] for i in use]]  # [N, D]
    pos = (text * image[[row_of[ds.pos_ids[i]] for i in use]]).sum(-1)  # [N] cosine similarities
    neg = (text * image[[row_of[ds.neg_ids[i]] for i in use]]).sum(-1)
    m = svo_probe_metrics(pos, neg, torch.tensor([ds.concept[i] for i in use]), ds.concepts, thresholds)
    return {**m.pop("all"), "concepts": m, "thresholds": thresholds, "chance_pairwise_acc": 50.0,
            "chance_precision": 50.0, "dataset": ds.csv_path, "num_rows": ds.num_rows,
            "num_rows_skipped": len(ds.rows) - len(use), "num_images": len(keep),
            "num_missing": len(ds.missing), "missing": ds.missing[:20], "num_failed": len(failed), "failed": failed[:20],
            "num_malformed": len(ds.malformed), "malformed": ds.malformed[:20],
            "views": "each image one frame, centre crop (the video preprocessing)"}


def svo_problem_lines(result: dict, csv_name: str = "svo_probes.csv") -> list[str]:
    """One line per listed problem of a :func:`svo_probes` result, naming the file, row and field."""
    lines = [f"{csv_name} row {m['row']}, field {m['field']}: malformed ({m['detail']}); row left out"
             for m in result.get("malformed", [])]
    lines += [f"{csv_name} row {m['row']}, field {m['field']}: image {m['image_id']!r} not found in the image folder "
              f"({m['num_rows']} row(s) left out)" for m in result.get("missing", [])]
    lines += [f"{f['path']} ({csv_name} row {f['row']}, field {f['field']}): {f['reason']}: {f['detail']}; its rows left out"
              for f in result.get("failed", [])]
    return lines


# ---------------------------------------------------------------------------------------- frozen features
def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int,
                 epochs: int = 100, lr: float = 0.1, batch_size: int = 512, momentum: float = 0.9,
                 weight_decay: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Train ``Linear(D, C)`` on frozen features ``train_x`` ``[n, D]`` with SGD (TVTSv2 Table 8: lr 0.1,
    100 epochs, batch 512, no weight decay; momentum 0.9) and a cosine learning-rate decay to 0 over the
    epochs; returns the test logits ``[m, C]``. Seeded (init and batch order)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(train_x.shape[1], num_classes)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    for _ in range(epochs):
        for idx in torch.randperm(len(train_x), generator=g).split(batch_size):
            loss = F.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        return head(test_x)


def frozen_feature_protocols(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                             num_classes: int, *, protocols=("linear-probe", "knn", "v2v"), epochs: int = 100,
                             lr: float = 0.1, batch_size: int = 512, k: int = 25, vote: str = "weighted",
                             seed: int = 0) -> dict[str, Classified]:
    """Linear probe, cosine kNN (:func:`tvts.eval.metrics.knn_predict`) and video-to-video retrieval by class
    (:func:`tvts.eval.metrics.v2v_retrieval_metrics`, on the test split) from (features, labels) of a train and
    a test split. Keys: the protocol names (v2v has no logits)."""
    (xtr, ytr), (xte, yte) = train, test
    out = {}
    if "linear-probe" in protocols:
        logits = linear_probe(xtr, ytr, xte, num_classes, epochs, lr, batch_size, seed=seed)
        out["linear-probe"] = Classified({**classification_result(logits, yte, num_classes), "num_train": len(ytr),
                                          "epochs": epochs, "lr": lr, "batch_size": batch_size,
                                          "optimizer": "SGD momentum 0.9, cosine", "seed": seed}, logits)
    if "knn" in protocols:
        scores = knn_predict(xtr, ytr, xte, num_classes, k, vote)
        out["knn"] = Classified({**classification_result(scores, yte, num_classes), "num_train": len(ytr),
                                 "k": min(k, len(ytr)), "vote": vote}, scores)
    if "v2v" in protocols:
        out["v2v"] = Classified({**v2v_retrieval_metrics(xte, yte), "num_videos": len(yte)})
    return out


# ---------------------------------------------------------------------------------------- sorting
@torch.no_grad()
def sort_accuracy(model, dataset: TranscriptVideoDataset, batch_size: int = 32, workers: int = 2,
                  device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Per-segment and whole-order accuracy of the sort head with the video (T+V) and without it
    (T only: the head sees no video token), for any ``sort_head.output`` (``sorting.sort_metrics``).
    The dataset must be in evaluation mode (centred segments, middle frames, no mask) with a fixed
    shuffle per video."""
    if getattr(model, "pred_model", None) is None:
        raise ConfigError(f"{type(model).__name__} '{model.config.name}' has no sort head (model.sort_head.kind: none): "
                          "transcript sorting needs a model trained with a sort head", field="model.sort_head.kind")
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    logits_tv, logits_t, orders = [], [], []
    for batch in progress_bar(loader, "sort accuracy", progress, len(loader)):
        frames = batch["frames"].to(device)
        k = len(batch["texts"][0])
        feats = model.text_model([t for s in batch["texts"] for t in s]).reshape(len(batch["texts"]), k, -1)
        logits_tv.append(model.sort_logits(model.sort_video(frames), feats).cpu())
        logits_t.append(model.sort_logits(None, feats).cpu())
        orders.append(batch["order"])
    order = torch.cat(orders)
    k = order.shape[1]
    output = model.config.sort_head.output  # kway [B, K, K] | pairwise [B, K(K-1)/2] | factorial [B, K!]
    tv = sort_metrics(torch.cat(logits_tv), order, output)
    t = sort_metrics(torch.cat(logits_t), order, output)
    return {
        "num_videos": len(order), "K": k, "chance_segment_acc": 1 / k, "chance_order_acc": 1 / math.factorial(k),
        "text_video": {n: v.item() for n, v in tv.items()},
        "text_only": {n: v.item() for n, v in t.items()},
    }
