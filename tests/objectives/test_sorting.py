import itertools
import math

import pytest
import torch

from tvts.objectives.sorting import (best_permutation, factorial_sort_loss, kway_sort_loss, pairs, pairwise_sort_loss,
                                     permutation_index, predicted_order, sort_loss, sort_metrics)


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


# ---------------------------------------------------------------------------------------- Table 3 outputs


def _orders(g, b, k):
    return torch.stack([torch.randperm(k, generator=g) for _ in range(b)])


def test_pairs_are_the_fixed_i_lt_j_order():
    assert pairs(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]


def test_pairwise_loss_is_bce_over_every_pair():
    g = torch.Generator().manual_seed(3)
    b, k = 3, 4
    order = _orders(g, b, k)
    logits = torch.randn(b, k * (k - 1) // 2, generator=g, dtype=torch.float64)
    direct, n = 0.0, 0
    for s in range(b):
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                prob = 1 / (1 + math.exp(-logits[s, p].item()))  # "i comes before j"
                before = order[s, i].item() < order[s, j].item()
                direct += -math.log(prob if before else 1 - prob)
                p, n = p + 1, n + 1
    assert math.isclose(pairwise_sort_loss(logits, order).item(), direct / n, rel_tol=1e-6)  # the loss is computed in float32
    assert torch.equal(sort_loss(logits, order, "pairwise"), pairwise_sort_loss(logits, order))


def test_factorial_loss_is_ce_on_the_permutation_index():
    g = torch.Generator().manual_seed(4)
    b, k = 5, 4
    order = _orders(g, b, k)
    logits = torch.randn(b, 24, generator=g, dtype=torch.float64)
    all_orders = list(itertools.permutations(range(k)))
    direct = 0.0
    for s in range(b):
        idx = all_orders.index(tuple(order[s].tolist()))
        direct += -(logits[s, idx] - torch.logsumexp(logits[s], 0)).item()
    assert math.isclose(factorial_sort_loss(logits, order).item(), direct / b, rel_tol=1e-6)
    assert [all_orders[i] for i in permutation_index(order).tolist()] == [tuple(o) for o in order.tolist()]
    with pytest.raises(ValueError):
        permutation_index(torch.tensor([[0, 0, 1, 2]]))


def test_predicted_order_on_hand_made_logits():
    # kway: transcript i most likely at position [2, 0, 1][i]
    kway = torch.full((1, 3, 3), -4.0)
    kway[0, [0, 1, 2], [2, 0, 1]] = 4.0
    assert predicted_order(kway, "kway").tolist() == [[2, 0, 1]]
    # pairwise over (0,1), (0,2), (1,2): 1 before 0, 2 before 0, 1 before 2  ->  positions [2, 0, 1]
    assert predicted_order(torch.tensor([[-3.0, -3.0, 3.0]]), "pairwise").tolist() == [[2, 0, 1]]
    # A cycle (0<1, 1<2 strongly, but 2<0 weakly): the best order breaks the weak pair only.
    assert predicted_order(torch.tensor([[5.0, -1.0, 5.0]]), "pairwise").tolist() == [[0, 1, 2]]
    # factorial: the argmax index of the lexicographic list of orders
    fac = torch.zeros(2, 6)
    fac[0, 3], fac[1, 0] = 1.0, 1.0
    assert predicted_order(fac, "factorial").tolist() == [[1, 2, 0], [0, 1, 2]]  # (0,1,2) (0,2,1) (1,0,2) (1,2,0) ...


def test_pairwise_decoding_is_the_brute_force_argmax():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(10, 6, generator=g)
    best = predicted_order(logits, "pairwise")
    for b in range(10):
        def score(p):
            total, q = 0.0, 0
            for i in range(4):
                for j in range(i + 1, 4):
                    sign = 1.0 if p[i] < p[j] else -1.0
                    total += torch.nn.functional.logsigmoid(torch.tensor(sign * logits[b, q].item())).item()
                    q += 1
            return total
        assert tuple(best[b].tolist()) == max(itertools.permutations(range(4)), key=score)


def _perfect_and_swapped(output):
    """Logits for two samples with true orders [2,0,1,3] and [0,1,2,3]: sample 0 predicted right,
    sample 1 predicted as [0,1,3,2] (two transcripts swapped)."""
    order = torch.tensor([[2, 0, 1, 3], [0, 1, 2, 3]])
    predicted = torch.tensor([[2, 0, 1, 3], [0, 1, 3, 2]])
    if output == "pairwise":
        ij = pairs(4)
        return order, 5.0 * ((predicted[:, ij[:, 0]] < predicted[:, ij[:, 1]]).float() * 2 - 1)
    logits = torch.full((2, 24), -5.0)
    logits[torch.arange(2), permutation_index(predicted)] = 5.0
    return order, logits


@pytest.mark.parametrize("output", ["pairwise", "factorial"])
def test_sort_metrics_for_pairwise_and_factorial(output):
    order, logits = _perfect_and_swapped(output)
    m = sort_metrics(logits, order, output)
    assert m["segment_acc"].item() == 6 / 8
    assert m["order_acc"].item() == 0.5
    assert sort_loss(logits, order, output) < sort_loss(logits, order.flip(-1), output)
