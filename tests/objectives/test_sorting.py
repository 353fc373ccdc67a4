import itertools
import math

import torch

from tvts.objectives.sorting import best_permutation, kway_sort_loss, sort_metrics


def test_kway_loss_matches_eq2():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(3)])
    direct = 0.0
    for b in range(3):
        for i in range(4):
            p = logits[b, i]
            direct += -(p[order[b, i]] - torch.logsumexp(p, 0)).item()
    assert math.isclose(kway_sort_loss(logits, order).item(), direct / 12, rel_tol=1e-6)


def test_best_permutation_is_the_brute_force_argmax():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(20, 4, 4, generator=g)
    best = best_permutation(logits)
    logp = logits.log_softmax(-1)
    for b in range(20):
        scores = {p: sum(logp[b, i, p[i]].item() for i in range(4)) for p in itertools.permutations(range(4))}
        assert tuple(best[b].tolist()) == max(scores, key=scores.get)


def test_sort_metrics_counts_segments_and_whole_orders():
    order = torch.tensor([[2, 0, 1, 3], [0, 1, 2, 3]])
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, torch.arange(4), order[0]] = 5.0  # sample 0 perfectly sorted
    logits[1, torch.arange(4), torch.tensor([0, 1, 3, 2])] = 5.0  # sample 1: two transcripts swapped
    m = sort_metrics(logits, order)
    assert m["segment_acc"].item() == 6 / 8
    assert m["order_acc"].item() == 0.5
