"""Fine-tuning for action recognition (TVTS appendix Table 2): the whole video encoder plus a linear head,
AdamW (lr 1e-3), 16 frames, centre crop; tested with clips x crops views whose logits are averaged.

Training clips: TSN with a random time in each of the ``num_frames`` parts of the whole video (seeded by
(seed, epoch, index)), then the evaluation transform (the table's augmentation is CenterCrop). A video that
cannot be decoded is left out of its batch and counted by reason, never replaced by black frames.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from tvts.data.samples import sample_rng
from tvts.data.processor import VideoProcessor
from tvts.errors import SampleError
from tvts.eval.extract import ViewsDataset, collate_views


class TrainClips(Dataset):
    """Items: ``frames`` float32 ``[T, 3, S, S]`` (or None and ``reason``), ``label``: the whole video through
    ``processor``, with a random time in each of its parts (seeded by (seed, epoch, index))."""

    def __init__(self, paths: list[str], labels: list[int], processor: VideoProcessor, seed: int = 0):
        self.paths, self.labels, self.processor, self.seed = paths, labels, processor, seed
        self.transform = processor.transform(train=False)  # the table's augmentation is CenterCrop
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        rng = sample_rng(self.seed, self.epoch, i, 0)
        try:
            frames = self.transform(self.processor.read(self.paths[i], rng=rng)[0], None)
        except SampleError as e:
            return {"frames": None, "label": self.labels[i], "reason": e.reason}
        return {"frames": frames, "label": self.labels[i]}


def _collate(samples: list[dict]) -> dict:
    good = [s for s in samples if s["frames"] is not None]
    return {"frames": torch.stack([s["frames"] for s in good]) if good else None,
            "label": torch.tensor([s["label"] for s in good], dtype=torch.long),
            "skipped": Counter(s["reason"] for s in samples if s["frames"] is None)}


class VideoClassifier(torch.nn.Module):
    """``model.encode_video`` followed by ``Linear(D, num_classes)``: ``[B, T, 3, H, W]`` → ``[B, C]``."""

    def __init__(self, model: torch.nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.model = model
        self.head = torch.nn.Linear(embed_dim, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.encode_video(frames))


def _train(clf: VideoClassifier, data: TrainClips, epochs: int, lr: float, weight_decay: float, batch_size: int,
           workers: int, device, progress: bool) -> tuple[list[float], Counter]:
    """AdamW with a cosine decay over all steps; returns the mean loss per epoch and the skipped videos."""
    from tvts.eval.extract import progress_bar

    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(data) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    losses, skipped = [], Counter()
    for epoch in range(epochs):
        data.epoch = epoch
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(data.seed * 1009 + epoch))
        loader = DataLoader(torch.utils.data.Subset(data, order.tolist()), batch_size=batch_size, num_workers=workers,
                            collate_fn=_collate)
        clf.train()
        total, n = 0.0, 0
        for batch in progress_bar(loader, f"fine-tune epoch {epoch + 1}/{epochs}", progress, len(loader)):
            skipped.update(batch["skipped"])
            if batch["frames"] is None:
                continue
            loss = F.cross_entropy(clf(batch["frames"].to(device)), batch["label"].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(batch["label"]), n + len(batch["label"])
        losses.append(total / max(n, 1))
    return losses, skipped


@torch.no_grad()
def _test(clf: VideoClassifier, views: ViewsDataset, batch_size: int, workers: int, device, progress: bool):
    """Logits ``[n, C]`` averaged over the views, the dataset positions of the decoded videos, the failures."""
    from tvts.eval.extract import progress_bar

    clf.eval()
    loader = DataLoader(views, batch_size=batch_size, num_workers=workers, collate_fn=collate_views)
    where = {v: i for i, v in enumerate(views.ids)}
    logits, keep, failed = [], [], []
    for batch in progress_bar(loader, "fine-tune test", progress, len(loader)):
        failed += batch["failed"]
        if batch["frames"] is not None:
            b, v = batch["frames"].shape[:2]
            logits.append(clf(batch["frames"].flatten(0, 1).to(device)).float().cpu().reshape(b, v, -1).mean(1))
            keep += [where[i] for i in batch["video_id"]]
    return torch.cat(logits), keep, failed


def finetune(model, train, test, *, processor: VideoProcessor, epochs: int = 100, lr: float = 1e-3,
             weight_decay: float = 0.05, batch_size: int = 8, clips: int = 2, crops: int = 3, workers: int = 0,
             device="cpu", seed: int = 0, save_to: str | Path | None = None, progress: bool = True) -> dict:
    """Fine-tune ``model`` (changed in place) on the :class:`~tvts.eval.annotations.LabelledSet` ``train``
    and test on ``test``. Returns a :class:`~tvts.eval.protocols.Classified` (its metrics hold the loss per
    epoch and the skipped videos); ``save_to``: also write the classifier's weights there."""
    from tvts.eval.protocols import Classified, classification_result

    torch.manual_seed(seed)
    num_frames, transform = processor.num_frames, processor.transform(train=False)
    with torch.no_grad():
        dim = model.encode_video(torch.zeros(1, num_frames, 3, transform.size, transform.size, device=device)).shape[-1]
    clf = VideoClassifier(model, dim, len(test.class_names)).to(device)
    losses, skipped = _train(clf, TrainClips(train.paths, train.labels, processor, seed), epochs, lr,
                             weight_decay, batch_size, workers, device, progress)
    logits, keep, failed = _test(clf, ViewsDataset(test.paths, test.video_ids, processor, clips, crops),
                                 batch_size, workers, device, progress)
    if save_to is not None:
        save_file({k: v.contiguous().cpu() for k, v in clf.state_dict().items()}, str(save_to))
    labels = torch.tensor([test.labels[j] for j in keep])
    return Classified({**classification_result(logits, labels, len(test.class_names)), "num_train": len(train.labels),
                       "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                       "num_frames": num_frames, "views": f"{clips} clips x {crops} crops", "train_loss": losses,
                       "skipped_train": dict(skipped), "num_failed": len(failed), "failed": failed[:20]}, logits, keep)
