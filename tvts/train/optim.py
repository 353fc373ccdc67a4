"""AdamW parameter groups, and linear warmup + cosine decay.

Groups: parameters inherited from a pretrained model (``model.inherited(name)``; TVTSv2: everything
that came from CLIP) learn at ``train.pretrained_lr``, the others at ``train.lr`` (TVTSv2 appendix B:
1e-4 for new modules, 1e-7 for CLIP's). Each is split into weight decay and no weight decay. Frozen
parameters are not in the optimiser at all.

Where TVTSv2's genuinely new parameters go: ``temporal_embedding`` has no CLIP counterpart, so it is a
new parameter (lr 1e-4), like the temporal attention and the sort head. The published code put it in
the CLIP group (1e-7), which left it frozen at its random initialisation; we start it at zero (see
tvts.models.divided_vit) and let it learn.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from tvts.config import TrainConfig

# TVTS (family video_bert): no weight decay for biases, norms, and learned embeddings/tokens.
NO_DECAY_NAMES = ("bias", "norm", "ln_", "LayerNorm", "embed", "cls_token", "class_embedding", "positional_embedding")
# TVTSv2 (family video_clip; appendix B, and the published rule): no weight decay for norms and biases only.
NO_DECAY_NAMES_V2 = ("bias", "norm", "ln_", "LayerNorm")


def skips_weight_decay(family: str, name: str, p: torch.Tensor) -> bool:
    """Whether parameter ``name`` of a ``family`` model is left out of weight decay (norms, biases, ...)."""
    if family == "video_clip":
        return any(k in name for k in NO_DECAY_NAMES_V2)
    return p.ndim < 2 or any(k in name for k in NO_DECAY_NAMES)


def param_groups(model: nn.Module, weight_decay: float, lr: float, pretrained_lr: float = 0.0) -> list[dict]:
    """Trainable parameters in up to four groups, each named (``name``: new/inherited x decay/no_decay)
    and with its own ``lr``; new-parameter groups come first. Empty groups are left out."""
    family = model.config.family
    groups: dict[tuple[bool, bool], list[torch.Tensor]] = {(i, nd): [] for i in (False, True) for nd in (False, True)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            inherited = pretrained_lr > 0 and model.inherited(name)
            groups[(inherited, skips_weight_decay(family, name, p))].append(p)
    return [
        {"name": f"{'inherited' if i else 'new'}_{'no_decay' if nd else 'decay'}", "params": ps,
         "lr": pretrained_lr if i else lr, "weight_decay": 0.0 if nd else weight_decay}
        for (i, nd), ps in groups.items() if ps
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, extra: nn.Module | None = None) -> torch.optim.Optimizer:
    """AdamW over ``model``'s groups, plus the trainable parameters of ``extra`` (an objective's own heads)
    at ``train.lr``, with weight decay on matrices only."""
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.pretrained_lr)
    if extra is not None:
        own = [(n, p) for n, p in extra.named_parameters() if p.requires_grad]
        for nd in (False, True):
            ps = [p for n, p in own if (p.ndim < 2) == nd]
            if ps:
                groups.append({"name": f"objective_{'no_decay' if nd else 'decay'}", "params": ps, "lr": cfg.lr,
                               "weight_decay": 0.0 if nd else cfg.weight_decay})
    # The fused kernel (one pass over all tensors) is ~4x faster than the per-tensor loop on CPU; other devices
    # (or dtypes) it does not support keep the default implementation.
    params = [p for g in groups for p in g["params"]]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
    """lr multiplier: linear from 1/warmup to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))
