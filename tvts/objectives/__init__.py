"""Pretraining objectives, one file per loss family, chosen by ``objective.name``.

An objective is an ``nn.Module`` called as ``objective(model, batch) -> (losses, metrics)``: ``losses``
are already weighted (the trainer sums them), ``metrics`` are detached scalars to log. It may own
pretraining-only parameters (e.g. VCOP's order classifier) and state (CPD's memory bank): they are not
part of the released model, and checkpoints save them beside it (``objective.safetensors``) so that a
killed run resumes exactly. The trainer never branches on which objective is active.
"""

from __future__ import annotations

import importlib

import torch.nn as nn

from tvts.config import ObjectiveConfig

# objective.name -> "module:class"; the class is built as cls(cfg, model, num_samples)
REGISTRY = {
    "tvts": "tvts.objectives.tvts:TVTSObjective",
    "merlot_like": "tvts.objectives.video_order:MerlotLikeObjective",
    "vcop": "tvts.objectives.video_order:VCOPObjective",
    "cpd": "tvts.objectives.cpd:CPDObjective",
    "svilm": "tvts.objectives.svilm:SViLMObjective",
}


def build_objective(cfg: ObjectiveConfig, model: nn.Module, num_samples: int) -> nn.Module:
    """The objective ``cfg.name`` for ``model`` (the bare model, not a DDP wrapper); ``num_samples`` is the
    size of the training corpus's index space (``batch["index"]`` < ``num_samples``; CPD's memory bank)."""
    module, cls = REGISTRY[cfg.name].split(":")
    return getattr(importlib.import_module(module), cls)(cfg, model, num_samples)


class Pretrainer(nn.Module):
    """Model + objective as one module, so that DDP sees every trainable parameter (the objective's
    too) and the objective may call any part of the model inside one DDP forward."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: dict):
        return self.objective(self.model, batch)
