"""Video-text InfoNCE with negatives from every process (TVTS Eq. 3).

In a distributed run each process gathers the embeddings of all processes *with gradients*
(``all_gather_single_autograd``, whose backward sums the gradients of every process's copy) and scores its own rows against the global batch. Averaging the gradients across
processes (DDP) then gives exactly the gradient of the single-process loss on the global batch.

The text side of a clip-level loss lives here too: :func:`clip_text_embedding` (one text per clip, a caption or the
mean of its segments, for CPD and S-ViLM).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``[b, D]`` on each of W processes → (``[W*b, D]``, offset of this process's rows)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed._functional_collectives import all_gather_single_autograd

    return all_gather_single_autograd(x, gather_dim=0, group=dist.group.WORLD), dist.get_rank() * x.shape[0]


def info_nce(video: torch.Tensor, text: torch.Tensor, temperature: float = 0.05) -> dict[str, torch.Tensor]:
    """Bidirectional InfoNCE over cosine similarities, the sum of both directions as in the paper.

    ``video``, ``text``: local ``[b, D]`` embeddings (paired by row). Returns ``loss`` (scalar,
    mean over local rows of NCE(v, t) + NCE(t, v)), ``v2t_acc`` and ``t2v_acc`` (in-batch top-1).
    """
    v, t = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
    v_all, offset = gather_with_grad(v)
    t_all, _ = gather_with_grad(t)
    labels = torch.arange(v.shape[0], device=v.device) + offset
    logits_v2t = v @ t_all.T / temperature  # [b, W*b]
    logits_t2v = t @ v_all.T / temperature
    loss = F.cross_entropy(logits_v2t, labels) + F.cross_entropy(logits_t2v, labels)
    with torch.no_grad():
        acc_v2t = (logits_v2t.argmax(-1) == labels).float().mean()
        acc_t2v = (logits_t2v.argmax(-1) == labels).float().mean()
    return {"loss": loss, "v2t_acc": acc_v2t, "t2v_acc": acc_t2v}


def clip_text_embedding(model: nn.Module, batch: dict, source: str) -> torch.Tensor:
    """One text embedding per clip, ``[B, D]`` (not normalised), for the caption-level objectives (CPD, S-ViLM).

    ``source`` (``objective.clip_text``): ``caption`` embeds the clip's caption (``batch["captions"]``, B
    strings), as those papers train; ``transcript`` takes the mean of its K transcript segments' embeddings
    (``batch["texts"]``), exactly the text side of TVTS's clip-level L_base (Eq. 3).
    """
    if source == "transcript":
        return model.text_embedding(model.transcript_features(batch["texts"])).mean(1)
    return model.encode_text(list(batch["captions"]))
