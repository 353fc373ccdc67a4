"""CPD's two-stage curriculum (CPD Section 3.2), for any objective.

Stage I trains with the text encoder as the model config sets it (CPD: frozen, so the randomly
initialised video model cannot wreck the pretrained language model). At the trigger (a step count, or
the validation text-to-video R@1 no longer improving for ``patience`` validations), stage II unfreezes
``text_trainable_layers`` of the text encoder at ``text_lr`` and scales every other learning rate by
``lr_scale`` (CPD: 0.2 -> 0.02, text 3e-5). The text encoder's parameters go into two new optimiser groups
(weight decay / none, by the rule of ``tvts.train.optim``) whose lr is ``text_lr`` at the switch and then
follows the schedule's shape like every other group (their base lr is ``text_lr`` over the schedule's
multiplier at the switch). With several processes, a plateau validation takes rank 0's value, so every
process switches at the same step. The stage and the plateau bookkeeping are part of the trainer state,
so a resumed run continues in the right stage.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tvts.config import CurriculumConfig
from tvts.data.samples import collate
from tvts.objectives.contrastive import clip_text_embedding
from tvts.train.optim import skips_weight_decay


@torch.no_grad()
def validation_recall(model, dataset, batch_size: int, device, clip_text: str) -> float:
    """Text-to-video R@1 (%) of the clips' texts (``objective.clip_text``: captions, or the mean of the transcript
    segments) over ``dataset`` (evaluation mode, no mask)."""
    was_training = model.training
    model.eval()
    videos, texts = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0, collate_fn=collate):
        videos.append(F.normalize(model.encode_video(batch["frames"].to(device)), dim=-1))
        texts.append(F.normalize(clip_text_embedding(model, batch, clip_text), dim=-1))
    model.train(was_training)
    sim = torch.cat(texts) @ torch.cat(videos).T
    return 100.0 * (sim.argmax(1) == torch.arange(len(sim), device=sim.device)).float().mean().item()


class Curriculum:
    """``advance(step, opt, sched)`` after every optimiser step; True when stage II starts now."""

    def __init__(self, cfg: CurriculumConfig, model, validation=None):
        self.cfg, self.model, self.validation = cfg, model, validation
        self.stage, self.best, self.since_best, self.last_r1 = 1, -math.inf, 0, None

    def _due(self, step: int) -> bool:
        c = self.cfg
        if self.stage != 1 or c.trigger == "none":
            return False
        if c.trigger == "steps":
            return step >= c.at_step
        if step % c.val_every:
            return False
        self.last_r1 = validation_recall(self.model, *self.validation)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Batch-norm statistics are per process, so the processes may measure different values; they
            # must switch at the same step: everyone takes rank 0's.
            r1 = torch.tensor([self.last_r1], dtype=torch.float64, device=self.validation[2])
            dist.broadcast(r1, src=0)
            self.last_r1 = float(r1.item())
        if self.last_r1 > self.best:
            self.best, self.since_best = self.last_r1, 0
        else:
            self.since_best += 1
        return self.since_best >= c.patience

    def advance(self, step: int, opt: torch.optim.Optimizer, sched) -> bool:
        if not self._due(step):
            return False
        self._enter_stage_two(opt, sched)
        return True

    def _enter_stage_two(self, opt: torch.optim.Optimizer, sched) -> None:
        """Unfreeze the text encoder into new parameter groups (decay / no decay, as ``tvts.train.optim``)
        whose lr is ``text_lr`` now, scale every other group's lr by ``lr_scale``, and extend the scheduler
        so that every group keeps following its multiplier: base lr × multiplier = the group's lr now."""
        c = self.cfg
        text = self.model.text_model
        before = {id(p) for p in text.parameters() if p.requires_grad}
        text.set_trainable(c.text_trainable_layers)
        new = [(n, p) for n, p in text.named_parameters() if p.requires_grad and id(p) not in before]
        for group in opt.param_groups:
            group["lr"] *= c.lr_scale
        sched.base_lrs = [lr * c.lr_scale for lr in sched.base_lrs]
        multiplier = sched.lr_lambdas[0](sched.last_epoch)  # the schedule's factor now (LambdaLR)
        text_base = c.text_lr / multiplier if multiplier > 0 else c.text_lr
        family = self.model.config.family
        weight_decay = next((g["weight_decay"] for g in opt.param_groups if g["weight_decay"] > 0), 0.0)
        for no_decay in (False, True):
            params = [p for n, p in new if skips_weight_decay(family, f"text_model.{n}", p) == no_decay]
            if not params:
                continue
            opt.add_param_group({"name": f"text_stage2_{'no_decay' if no_decay else 'decay'}", "params": params,
                                 "lr": c.text_lr,
                                 "weight_decay": 0.0 if no_decay else weight_decay})
            sched.base_lrs.append(text_base)
            sched.lr_lambdas.append(sched.lr_lambdas[0])
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            group["initial_lr"] = base
        sched._last_lr = [group["lr"] for group in opt.param_groups]  # what get_last_lr() reports (the log)
        self.stage = 2

    def state_dict(self) -> dict:
        return {"stage": self.stage, "best": self.best, "since_best": self.since_best, "last_r1": self.last_r1}

    def load_state_dict(self, state: dict, opt: torch.optim.Optimizer, sched) -> None:
        """Restore the stage (re-entering stage II rebuilds its parameter groups, so the optimiser state that
        is loaded next matches)."""
        if state.get("stage", 1) == 2 and self.stage == 1:
            self._enter_stage_two(opt, sched)
        self.best, self.since_best = float(state.get("best", -math.inf)), int(state.get("since_best", 0))
        self.last_r1 = state.get("last_r1")

    def log_fields(self) -> dict:
        out = {"stage": self.stage} if self.cfg.trigger != "none" else {}
        if self.last_r1 is not None:
            out["val_t2v_r1"] = self.last_r1
        return out
