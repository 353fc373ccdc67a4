"""Evaluation metrics on similarity matrices and logits.

Ranks are 1-based; ties are broken in the query's favour (rank = 1 + number of candidates scoring
strictly higher), as the published TVTS code does for text-to-video. R@k and accuracies are percentages.
"""

from __future__ import annotations

import torch

from tvts.errors import ConfigError

KNN_TEMPERATURE = 0.07
"""Temperature of the weighted kNN vote (each neighbour votes ``exp(cos / 0.07)``)."""


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


def dual_softmax(sim: torch.Tensor, dim: int, temperature: float = 0.01) -> torch.Tensor:
    """Dual-softmax re-ranking: ``sim * softmax(sim / temperature, dim)``, ``[n_text, n_video]`` →
    same shape. ``dim=0`` (a prior over the captions competing for each video) re-ranks text→video,
    ``dim=1`` re-ranks video→text. It uses every query of the test set at once, so it is transductive and
    reported under its own name."""
    return sim * torch.softmax(sim / temperature, dim=dim)


def dual_softmax_retrieval_metrics(sim: torch.Tensor, text_to_video: torch.Tensor,
                                   temperature: float = 0.01) -> dict[str, float]:
    """:func:`retrieval_metrics` of the dual-softmax re-ranked matrices (t2v from ``dim=0``, v2t from
    ``dim=1``)."""
    sim = sim.float()
    t2v = retrieval_metrics(dual_softmax(sim, 0, temperature), text_to_video)
    v2t = retrieval_metrics(dual_softmax(sim, 1, temperature), text_to_video)
    return {**{k: v for k, v in t2v.items() if k.startswith("t2v_")},
            **{k: v for k, v in v2t.items() if k.startswith("v2t_")}}


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``logits`` ``[N, C]``, ``labels`` ``[N]`` → ``{"top1": %, "top5": %}``. Ties count against the
    sample: it is a hit at k when fewer than k classes score at least as high as the true class, other
    than the true class itself (a constant model gets 0, not 100). ``k`` larger than C is clipped to C."""
    logits = logits.float()
    true = logits.gather(1, labels[:, None])  # [N, 1]
    rank = (logits >= true).sum(1)  # 1 + others scoring >= true
    return {f"top{k}": (rank <= min(k, logits.shape[1])).double().mean().item() * 100 for k in ks}


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 25, vote: str = "weighted",
                temperature: float = KNN_TEMPERATURE) -> torch.Tensor:
    """Class scores ``[n_test, num_classes]`` of a cosine kNN classifier (CPD Section 4.2: cosine, k = 25).

    ``train_feats`` ``[n_train, D]``, ``test_feats`` ``[n_test, D]`` (normalised here). Each test video
    takes its ``k`` most similar training videos (ties: the lower training index first); ``vote="weighted"``
    adds ``exp(cos / temperature)`` per neighbour to its class, ``vote="majority"`` adds 1.
    CPD names cosine and k but not the vote; the default is the weighted vote of the instance-discrimination
    protocol CPD cites for frozen-feature evaluation."""
    if vote not in ("weighted", "majority"):
        raise ValueError(f"vote must be 'weighted' or 'majority', got {vote!r}")
    a = torch.nn.functional.normalize(test_feats.float(), dim=-1)
    b = torch.nn.functional.normalize(train_feats.float(), dim=-1)
    sim = a @ b.T  # [n_test, n_train]
    k = min(k, sim.shape[1])
    # stable descending order: among equal similarities the lower training index comes first
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]
    top_sim = sim.gather(1, order)
    weights = torch.exp(top_sim / temperature) if vote == "weighted" else torch.ones_like(top_sim)
    scores = torch.zeros(sim.shape[0], num_classes, dtype=weights.dtype)
    return scores.scatter_add_(1, train_labels[order], weights)


def v2v_retrieval_metrics(feats: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Zero-shot video-to-video retrieval by class (TVTS Table 4). ``feats`` ``[N, D]``, ``labels``
    ``[N]``. Every video queries all the others (never itself); its rank is that of the best-ranked video
    of the same class (ties in the query's favour); queries whose class has no other video are left out.
    Returns R@1/5/10, MedR, MeanR and ``num_queries``."""
    f = torch.nn.functional.normalize(feats.float(), dim=-1)
    sim = f @ f.T
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool)
    same = (labels[:, None] == labels[None, :]) & ~eye
    sim = sim.masked_fill(eye, float("-inf"))
    best = sim.masked_fill(~same, float("-inf")).max(1).values  # [N]
    has_pos = same.any(1)
    if not has_pos.any():
        raise ConfigError("video-to-video retrieval needs at least two videos of some class")
    ranks = 1 + (sim > best[:, None]).sum(1)
    return {**_summary(ranks[has_pos], ""), "num_queries": int(has_pos.sum())}


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[num_classes, num_classes]`` counts, row = true class, column = predicted class."""
    flat = labels.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def svo_probe_metrics(pos: torch.Tensor, neg: torch.Tensor, concept: torch.Tensor, concepts: list[str],
                      thresholds=(0.2, 0.25, 0.3)) -> dict[str, dict]:
    """SVO-Probes scores from the cosine similarities of each row's sentence with its positive image, ``pos``
    ``[N]``, and with its negative image, ``neg`` ``[N]``; ``concept`` ``[N]`` indexes ``concepts`` (what the
    negative changes). Returns ``{"all": m, <concept>: m, ...}`` (every concept, in order, even without rows):

    - ``pairwise_acc``: % of rows whose positive scores strictly above the negative (the SVO-Probes authors'
      threshold-free accuracy; a tie is wrong), with ``num_correct`` of ``num_pairs``; chance 50;
    - for each threshold rho (TVTS appendix C.2: an image is called positive when its cosine similarity passes
      rho): ``P@<rho>`` = % of the images called positive that are positive, ``None`` when none is called
      positive; ``pos_above@<rho>`` / ``neg_above@<rho>`` count them. Each row counts one positive and one
      negative image, so precision at chance is 50."""
    # compared in their own precision (a threshold becomes a weak scalar of that dtype: 0.2 is not above 0.2)
    pos, neg, concept = pos.flatten(), neg.flatten(), concept.long().flatten()
    if not (len(pos) == len(neg) == len(concept)):
        raise ConfigError(f"pos, neg and concept need one value per row, got {len(pos)}, {len(neg)}, {len(concept)}")

    def one(mask: torch.Tensor) -> dict:
        p, n = pos[mask], neg[mask]
        correct = int((p > n).sum())
        m = {"num_pairs": len(p), "num_correct": correct, "pairwise_acc": 100.0 * correct / len(p) if len(p) else None}
        for rho in thresholds:
            tp, fp = int((p > rho).sum()), int((n > rho).sum())
            m[f"P@{rho:g}"] = 100.0 * tp / (tp + fp) if tp + fp else None
            m[f"pos_above@{rho:g}"], m[f"neg_above@{rho:g}"] = tp, fp
        return m

    out = {"all": one(torch.ones_like(concept, dtype=torch.bool))}
    out.update({c: one(concept == k) for k, c in enumerate(concepts)})
    return out
