"""The S-ViLM objective: L = w1 L_t + w2 L_g + w3 L_contrast (S-ViLM Section 3).

Read top to bottom: cut-and-paste (Section 3.2) → the positive weights W of a blended batch (Eq. 5) →
temporal grouping (Eq. 1-2) → spatial grounding (Eq. 3-6) → the weighted global contrastive loss
(Eq. 7) → the objective, which runs one video forward and combines the three.

Decisions where the paper is silent:

- cut-and-paste pairs the batch by a random cyclic permutation (a single cycle through all B videos):
  no video is its own background (p_i != i) and every video is the background of exactly one other;
  clips are the encoder's time slots (t = tubelet), so the foreground mask aligns with the slot tokens;
  the duration d is an integer in [ceil(N_t/2), N_t - 1] and the start s in [0, N_t - d] (both ends
  inclusive, so the foreground may sit at either end); the mask marks the d slots s .. s+d-1, so
  beta = d / N_t. With N_t = 1 or B = 1 nothing can be pasted: mask all ones, beta = 1, p_i = i;
- the kept-patch mask ``keep`` of the blended video i is that of sample i: masks are drawn independently
  of the content, so any sample's draw is as good as another's, and taking it whole keeps its
  structure (a tube mask stays a tube);
- Eq. 2's MSE is the mean over the N_t x 2 entries of a_i, then the mean over the samples that have both
  a foreground and a background clip (without cut-and-paste there are none and L_t = 0);
- the noun tokens and group tokens enter Eq. 3 as projected into the common space (not normalised: the
  sum over groups weights the raw projected group tokens, the outer <.,.> is a cosine); one temperature
  ``svilm.temperature`` serves the softmax over groups, the grounding softmaxes and the contrastive
  softmaxes, ``svilm.grouping_temperature`` the softmax of Eq. 1;
- in a distributed run every loss is batch-local: the partners are inside the local batch, so the
  weights W are local too (the paper's batch of 1024 is over all its devices; here the negatives of
  L_g and L_contrast are the local batch only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tvts.config import ObjectiveConfig
from tvts.errors import ConfigError
from tvts.objectives.contrastive import clip_text_embedding


# ------------------------------------------------------------------------------------------ cut-and-paste
@dataclass
class CutPaste:
    """A blended batch. ``frames`` ``[B, T, ...]``: video i's clips where ``mask[i]`` is 1, video
    ``partner[i]``'s elsewhere; ``mask`` ``[B, N_t]`` float (1 = foreground = video i);
    ``partner`` ``[B]`` long (p_i); ``beta`` ``[B]`` float (foreground fraction d / N_t)."""

    frames: torch.Tensor
    mask: torch.Tensor
    partner: torch.Tensor
    beta: torch.Tensor


def no_cut(frames: torch.Tensor, clip_frames: int) -> CutPaste:
    """The identity blend: every clip is foreground, ``p_i = i``, ``beta = 1``."""
    b, n = frames.shape[0], frames.shape[1] // clip_frames
    return CutPaste(frames, frames.new_ones(b, n, dtype=torch.float32), torch.arange(b, device=frames.device),
                    frames.new_ones(b, dtype=torch.float32))


def cut_and_paste(frames: torch.Tensor, clip_frames: int, generator: torch.Generator | None = None) -> CutPaste:
    """S-ViLM's cut-and-paste: paste ``d`` consecutive clips of video i onto its background video ``p_i``.

    ``frames``: ``[B, T, ...]`` with ``T = N_t * clip_frames``. Randomness from ``generator`` (on any
    device), else the global RNG of ``frames``' device (the trainer reseeds it at checkpoints, so a
    resumed run replays the same draws). See the module docstring for the sampling ranges.
    """
    b, t = frames.shape[:2]
    if t % clip_frames:
        raise ValueError(f"{t} frames do not split into clips of {clip_frames}")
    n = t // clip_frames
    if n < 2 or b < 2:
        return no_cut(frames, clip_frames)
    dev = generator.device if generator is not None else frames.device
    order = torch.randperm(b, generator=generator, device=dev)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)  # a single cycle: order[0] -> order[1] -> ... -> order[0]
    d_min, d_max = math.ceil(n / 2), n - 1
    u = torch.rand(2, b, generator=generator, device=dev)
    d = (d_min + (u[0] * (d_max - d_min + 1)).long()).clamp(max=d_max)
    s = (u[1] * (n - d + 1)).long().clamp(max=n - d)
    j = torch.arange(n, device=dev)
    mask = (j >= s[:, None]) & (j < (s + d)[:, None])  # [B, N_t]
    partner, mask, d = partner.to(frames.device), mask.to(frames.device), d.to(frames.device)
    per_frame = mask.repeat_interleave(clip_frames, dim=1).reshape(b, t, *([1] * (frames.dim() - 2)))
    blended = torch.where(per_frame, frames, frames[partner])
    return CutPaste(blended, mask.float(), partner, d.float() / n)


def positive_weights(partner: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """W^v ``[B, B]`` of Eq. 5: ``w_ii = beta_i``, ``w_i,p_i = 1 - beta_i``, 0 elsewhere (``w_ii = 1``
    when ``p_i = i``). The caption-side weights are ``W^c = (W^v)^T``."""
    b = beta.shape[0]
    rows = torch.arange(b, device=beta.device)
    w = torch.zeros(b, b, device=beta.device, dtype=beta.dtype)
    w.index_put_((rows, rows), beta, accumulate=True)
    w.index_put_((rows, partner), 1 - beta, accumulate=True)
    return w


def weighted_nce(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 6/7 for a ``[B, B]`` score matrix (row i = video i against every caption, already divided by
    tau) and W^v ``[B, B]``: ``-1/B sum_ij w^v_ij log softmax_j(logits_i.)`` (video → caption) plus
    ``-1/B sum_ij w^c_ij log softmax_j(logits^T_i.)`` with ``W^c = (W^v)^T`` (caption → video)."""
    logits = logits.float()
    v2c = -(weights * logits.log_softmax(1)).sum(1).mean()
    c2v = -(weights.T * logits.T.log_softmax(1)).sum(1).mean()
    return v2c + c2v


# ------------------------------------------------------------------------------------------ L_t (Eq. 1-2)
def clip_features(tokens_per_slot: torch.Tensor) -> torch.Tensor:
    """z_clip ``[B, N_t, d]``: the spatial mean of the encoder's (kept) output tokens ``[B, N_t, N, d]``."""
    return tokens_per_slot.mean(2)


def temporal_grouping(z_clip: torch.Tensor, mask: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1-2. ``z_clip`` ``[B, N_t, d]``, ``mask`` ``[B, N_t]`` (1 = foreground).

    Centres z_b, z_f ``[B, d]`` = mean clip feature under ``1 - mask`` / ``mask``; ``a`` ``[B, N_t, 2]`` =
    softmax over (background, foreground) of cos(z_clip, centre) / tau; per sample the MSE between ``a``
    and one-hot(mask). Returns (L_t, a, valid ``[B]`` bool: the samples with both kinds of clip, over
    which L_t is the mean; 0 when there are none).
    """
    z_clip, m = z_clip.float(), mask.float()
    fg, bg = m.sum(1), (1 - m).sum(1)  # [B]
    z_f = (z_clip * m[..., None]).sum(1) / fg.clamp(min=1)[:, None]
    z_b = (z_clip * (1 - m)[..., None]).sum(1) / bg.clamp(min=1)[:, None]
    centres = F.normalize(torch.stack([z_b, z_f], 1), dim=-1)  # [B, 2, d]
    a = (F.normalize(z_clip, dim=-1) @ centres.transpose(1, 2) / tau).softmax(-1)  # [B, N_t, 2]
    target = F.one_hot(m.long(), 2).to(a.dtype)
    per_sample = ((a - target) ** 2).mean((1, 2))  # [B]
    valid = (fg > 0) & (bg > 0)
    loss = (per_sample * valid).sum() / valid.sum().clamp(min=1)
    return loss, a, valid


# ------------------------------------------------------------------------------------------ L_g (Eq. 3-6)
def grounding_similarity(groups: torch.Tensor, nouns: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 3 for every (video, caption) pair: ``G[i, j] = G(v_i, c_j)``, ``[B, B]``.

    ``groups`` g ``[B, M, D]``, ``nouns`` n ``[B, K, D]``:
    ``G(v, c) = 1/K sum_k cos(n^k, sum_m softmax_m(cos(g^m, n^k) / tau) g^m)``.
    """
    g, n = groups.float(), nouns.float()
    s = torch.einsum("imd,jkd->ijkm", F.normalize(g, dim=-1), F.normalize(n, dim=-1))  # [B_v, B_c, K, M]
    pooled = torch.einsum("ijkm,imd->ijkd", (s / tau).softmax(-1), g)  # [B_v, B_c, K, D]
    return (F.normalize(pooled, dim=-1) * F.normalize(n, dim=-1)[None]).sum(-1).mean(-1)


def top1(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In-batch top-1 of a ``[B, B]`` video × caption score matrix: (video → own caption, caption → own video)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (logits.argmax(1) == labels).float().mean(), (logits.argmax(0) == labels).float().mean()


# ------------------------------------------------------------------------------------------ the objective
class SViLMObjective(nn.Module):
    """``objective(model, batch) -> (losses, metrics)`` for a TVTS-family model with group tokens.

    ``losses``: ``grouping`` (w1 L_t), ``grounding`` (w2 L_g), ``contrastive`` (w3 L_contrast); a term
    whose weight is 0 is not computed. ``metrics``: ``grouping_acc`` (clips whose argmax of ``a`` matches
    the mask), ``v2t_acc``/``t2v_acc`` (in-batch top-1 of the global contrastive scores, the own
    caption/video as target) and ``ground_v2t_acc``/``ground_t2v_acc`` (the same for G), ``beta``.
    """

    def __init__(self, cfg: ObjectiveConfig, model: nn.Module, num_samples: int = 0):
        super().__init__()
        self.cfg = cfg.svilm
        self.clip_text = cfg.clip_text
        video = model.config.video
        if video.arch != "joint" or video.num_groups <= 0:
            raise ConfigError("S-ViLM needs a joint ViT with group tokens (model.video.num_groups, group_layers)",
                              field="model.video.num_groups")
        self.clip_frames = video.tubelet
        if self.cfg.grounding_weight > 0:
            from tvts.data.nouns import load_pipeline

            load_pipeline(self.cfg.spacy_model)  # fail now, with the field to fix, not at the first step

    def forward(self, model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        c = self.cfg
        frames, captions = batch["frames"], batch["captions"]
        cp = cut_and_paste(frames, self.clip_frames) if c.cut_and_paste else no_cut(frames, self.clip_frames)
        video = model.video_model(cp.frames, batch.get("keep"))
        weights = positive_weights(cp.partner, cp.beta)
        losses, metrics = {}, {"beta": cp.beta.mean()}

        if c.grouping_weight > 0:
            loss, a, valid = temporal_grouping(clip_features(video.per_slot()), cp.mask, c.grouping_temperature)
            losses["grouping"] = c.grouping_weight * loss
            with torch.no_grad():
                hit = (a.argmax(-1) == cp.mask.long()).float().mean(1)
                metrics["grouping_acc"] = (hit * valid).sum() / valid.sum().clamp(min=1)

        if c.grounding_weight > 0:
            from tvts.data.nouns import noun_phrases, noun_prompts

            # the noun phrases come with the batch (recipe_data.noun_spec: spaCy in the workers); a batch built
            # by hand gets them here
            phrases = batch.get("nouns") or [noun_phrases(cap, c.num_nouns, c.spacy_model) for cap in captions]
            prompts = noun_prompts(phrases)  # [B*K] strings
            nouns = model.encode_text(prompts).reshape(len(captions), c.num_nouns, -1)  # [B, K, D]
            g = grounding_similarity(model.group_embedding(video), nouns, c.temperature) / c.temperature
            losses["grounding"] = c.grounding_weight * weighted_nce(g, weights)
            with torch.no_grad():
                metrics["ground_v2t_acc"], metrics["ground_t2v_acc"] = top1(g)

        if c.contrastive_weight > 0:
            f_v = F.normalize(model.video_embedding(video).float(), dim=-1)  # [B, D]
            f_c = F.normalize(clip_text_embedding(model, batch, self.clip_text).float(), dim=-1)  # [B, D]
            s = f_v @ f_c.T / c.temperature
            losses["contrastive"] = c.contrastive_weight * weighted_nce(s, weights)
            with torch.no_grad():
                metrics["v2t_acc"], metrics["t2v_acc"] = top1(s)
        return losses, {k: v.detach() for k, v in metrics.items()}
