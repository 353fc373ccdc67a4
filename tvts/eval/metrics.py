"""Retrieval metrics from a similarity matrix. Ranks are 1-based; ties are broken in the query's
favour (rank = 1 + number of candidates scoring strictly higher), as the published TVTS code does
for text-to-video."""

from __future__ import annotations

import torch


def _summary(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    r = ranks.double()
    return {
        f"{prefix}R@1": (r <= 1).double().mean().item() * 100,
        f"{prefix}R@5": (r <= 5).double().mean().item() * 100,
        f"{prefix}R@10": (r <= 10).double().mean().item() * 100,
        f"{prefix}MedR": r.quantile(0.5).item(),  # the mean of the two middle ranks when their count is even
        f"{prefix}MeanR": r.mean().item(),
    }


def retrieval_metrics(sim: torch.Tensor, text_to_video: torch.Tensor) -> dict[str, float]:
    """``sim`` ``[n_text, n_video]``; ``text_to_video`` ``[n_text]``: the video of each caption (a video
    may have many captions). Text→video: every caption is a query. Video→text: a video's rank is the
    best rank of any of its captions. R@k in percent."""
    sim = sim.float()
    n_text, n_video = sim.shape
    gt = sim[torch.arange(n_text), text_to_video]  # [n_text]
    t2v_ranks = 1 + (sim > gt[:, None]).sum(1)
    # video → text: rank of caption c among all captions for video v = 1 + #(captions scoring higher)
    v2t_caption_rank = 1 + (sim.T[text_to_video] > gt[:, None]).sum(1)  # [n_text], for (v(c), c)
    best = torch.full((n_video,), n_text + 1, dtype=torch.long)
    best = best.scatter_reduce(0, text_to_video, v2t_caption_rank, reduce="amin")
    has_caption = torch.zeros(n_video, dtype=torch.bool)
    has_caption[text_to_video] = True
    return {**_summary(t2v_ranks, "t2v_"), **_summary(best[has_caption], "v2t_")}
