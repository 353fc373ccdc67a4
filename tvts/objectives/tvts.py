"""The TVTS objective: L = w_c · L_base + λ · L_sort (TVTS Section 3.2)."""

from __future__ import annotations

import torch
import torch.nn as nn

from tvts.config import ObjectiveConfig
from tvts.objectives.contrastive import info_nce
from tvts.objectives.sorting import sort_loss, sort_metrics
from tvts.objectives.video_order import part_embeddings, unshuffle


class TVTSObjective(nn.Module):
    """Runs the model on a batch and returns ``(losses, metrics)``; ``losses`` are already weighted,
    the trainer sums them.

    Ablations: Table 2: ``sort_weight=0`` is M_base, ``stop_gradient=False`` is M_ours\\sg,
    ``contrastive_weight=0`` is M_sort. Table 3: L_sort follows the model's ``sort_head.output``
    (``kway`` Eq. 2, ``pairwise``, ``factorial``; read from the model given at construction, K-way
    without one). Appendix Table 12: ``contrastive: frame`` replaces the clip-level L_base by MERLOT's
    frame-transcript matching: the K temporal parts of the clip (T/K frames each, part k over segment k)
    are encoded on their own and each is matched to its own transcript by a bidirectional InfoNCE over
    all B·K (part, transcript) pairs; L_sort sees the full clip, or, with the model's ``sort_head.video:
    parts``, the same encoded parts joined in time order (one video forward a step). Caption batches (one
    text per video, no ``order``) train the clip-level contrastive loss only.
    """

    def __init__(self, cfg: ObjectiveConfig, model: nn.Module | None = None, num_samples: int = 0):
        super().__init__()
        self.cfg = cfg
        self.output = model.config.sort_head.output if model is not None else "kway"

    def forward(self, model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        c = self.cfg
        use_sort = c.sort_weight > 0 and "order" in batch
        frame = c.contrastive == "frame" and c.contrastive_weight > 0 and "order" in batch
        parts_only = frame and (not use_sort or model.config.sort_head.video == "parts")
        if parts_only:
            # Nothing needs the clip's own forward: the parts are encoded once, for L_base and (joined in time
            # order) for the sort head.
            feats = model.transcript_features(batch["texts"])  # [B, K, W_t], shuffled order
            k = feats.shape[1]
            part_tokens = model.encode_parts(batch["frames"], batch.get("keep"), k)  # B*K parts
            out = {"segment_embed": model.text_embedding(feats),
                   "part_embed": model.video_embedding(part_tokens).reshape(len(feats), k, -1)}  # [B, K, D], time order
            if use_sort:
                out["sort_logits"] = model.sort_logits(part_tokens.join_parts(k), feats.detach() if c.stop_gradient else feats)
        else:
            out = model(batch["frames"], batch["texts"], batch.get("keep"), stop_gradient=c.stop_gradient, sort=use_sort)
        losses, metrics = {}, {}
        if c.contrastive_weight > 0:
            if frame:
                k = out["segment_embed"].shape[1]
                parts = out["part_embed"] if "part_embed" in out else part_embeddings(model, batch["frames"], batch.get("keep"), k)
                segments = unshuffle(out["segment_embed"], batch["order"])  # [B, K, D], in time order
                nce = info_nce(parts.flatten(0, 1), segments.flatten(0, 1), c.temperature)
            else:
                nce = info_nce(out["video_embed"], out["text_embed"], c.temperature)
            losses["contrastive"] = c.contrastive_weight * nce["loss"]
            metrics.update(v2t_acc=nce["v2t_acc"], t2v_acc=nce["t2v_acc"])
        if use_sort:
            losses["sort"] = c.sort_weight * sort_loss(out["sort_logits"], batch["order"], self.output)
            metrics.update({f"sort_{k}": v for k, v in sort_metrics(out["sort_logits"], batch["order"], self.output).items()})
        return losses, metrics
