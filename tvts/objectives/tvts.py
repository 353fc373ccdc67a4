"""The TVTS objective: L = w_c · L_base + λ · L_sort (TVTS Section 3.2)."""

from __future__ import annotations

import torch
import torch.nn as nn

from tvts.config import ObjectiveConfig
from tvts.objectives.contrastive import info_nce
from tvts.objectives.sorting import kway_sort_loss, sort_metrics


class TVTSObjective(nn.Module):
    """Runs the model on a batch and returns ``(losses, metrics)``; ``losses`` are already weighted,
    the trainer sums them. Ablations of Table 2: ``sort_weight=0`` is M_base, ``stop_gradient=False``
    is M_ours\\sg, ``contrastive_weight=0`` is M_sort."""

    def __init__(self, cfg: ObjectiveConfig, model: nn.Module | None = None, num_samples: int = 0):
        super().__init__()
        self.cfg = cfg

    def forward(self, model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        c = self.cfg
        # Caption batches (one text per video, no "order") train the contrastive loss only, as in the paper.
        use_sort = c.sort_weight > 0 and "order" in batch
        out = model(batch["frames"], batch["texts"], batch.get("keep"), stop_gradient=c.stop_gradient, sort=use_sort)
        losses, metrics = {}, {}
        if c.contrastive_weight > 0:
            nce = info_nce(out["video_embed"], out["text_embed"], c.temperature)
            losses["contrastive"] = c.contrastive_weight * nce["loss"]
            metrics.update(v2t_acc=nce["v2t_acc"], t2v_acc=nce["t2v_acc"])
        if use_sort:
            losses["sort"] = c.sort_weight * kway_sort_loss(out["sort_logits"], batch["order"])
            metrics.update({f"sort_{k}": v for k, v in sort_metrics(out["sort_logits"], batch["order"]).items()})
        return losses, metrics

