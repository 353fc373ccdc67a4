"""Metrics against direct brute-force computations on random (seeded) matrices, with ties and with many
captions per video."""

import math

import pytest
import torch

from tvts.eval.metrics import (confusion_matrix, dual_softmax, dual_softmax_retrieval_metrics, knn_predict,
                               retrieval_metrics, topk_accuracy, v2v_retrieval_metrics)


def _rank_of(scores: list[float], target: float) -> int:
    """1 + number of scores strictly above the target (ties in the query's favour)."""
    return 1 + sum(1 for s in scores if s > target)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _brute_retrieval(sim: torch.Tensor, t2v: list[int]) -> dict:
    n_text, n_video = sim.shape
    s = sim.tolist()
    t_ranks = [_rank_of(s[t], s[t][t2v[t]]) for t in range(n_text)]
    v_ranks = []
    for v in range(n_video):
        column = [s[t][v] for t in range(n_text)]
        own = [t for t in range(n_text) if t2v[t] == v]
        if own:
            v_ranks.append(min(_rank_of(column, s[t][v]) for t in own))
    out = {}
    for prefix, ranks in (("t2v_", t_ranks), ("v2t_", v_ranks)):
        for k in (1, 5, 10):
            out[f"{prefix}R@{k}"] = 100 * sum(r <= k for r in ranks) / len(ranks)
        out[f"{prefix}MedR"] = _median(ranks)
        out[f"{prefix}MeanR"] = sum(ranks) / len(ranks)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_retrieval_matches_brute_force_with_ties_and_many_captions(seed):
    g = torch.Generator().manual_seed(seed)
    n_video = 12
    t2v = torch.cat([torch.arange(n_video), torch.randint(0, n_video - 2, (20,), generator=g)])  # 2 videos: 1 caption
    sim = torch.randint(0, 4, (len(t2v), n_video), generator=g).float()  # many ties
    got = retrieval_metrics(sim, t2v)
    want = _brute_retrieval(sim, t2v.tolist())
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


def test_retrieval_video_without_caption_is_left_out_of_v2t():
    sim = torch.eye(3)
    got = retrieval_metrics(sim[:2], torch.tensor([0, 1]))  # video 2 has no caption
    assert got["v2t_R@1"] == 100.0 and got["t2v_MeanR"] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_dual_softmax_matches_formula_and_keeps_name_apart(seed):
    g = torch.Generator().manual_seed(seed)
    sim = torch.randn(9, 7, generator=g)
    t2v = torch.randint(0, 7, (9,), generator=g)
    t2v[:7] = torch.arange(7)
    col = [[math.exp(sim[t, v] / 0.05) for t in range(9)] for v in range(7)]
    brute = torch.tensor([[sim[t, v].item() * col[v][t] / sum(col[v]) for v in range(7)] for t in range(9)])
    assert torch.allclose(dual_softmax(sim, 0, 0.05), brute, atol=1e-5)
    got = dual_softmax_retrieval_metrics(sim, t2v, 0.05)
    assert got["t2v_R@1"] == pytest.approx(retrieval_metrics(brute, t2v)["t2v_R@1"])
    assert got["v2t_R@1"] == pytest.approx(retrieval_metrics(dual_softmax(sim, 1, 0.05), t2v)["v2t_R@1"])


def test_dual_softmax_fixes_a_hub_video():
    # video 1 scores highest for every caption (a "hub"); the prior over captions moves caption 0 back to video 0
    sim = torch.tensor([[0.80, 0.85], [0.10, 0.90]])
    t2v = torch.tensor([0, 1])
    assert retrieval_metrics(sim, t2v)["t2v_R@1"] == 50.0
    assert dual_softmax_retrieval_metrics(sim, t2v, 0.05)["t2v_R@1"] == 100.0


@pytest.mark.parametrize("seed", range(4))
def test_topk_accuracy_brute_force_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 5, (40, 8), generator=g).float()
    labels = torch.randint(0, 8, (40,), generator=g)
    got = topk_accuracy(logits, labels, (1, 3, 5, 20))
    for k in (1, 3, 5, 20):
        hits = 0
        for row, y in zip(logits.tolist(), labels.tolist()):
            others_at_least = sum(1 for c, s in enumerate(row) if c != y and s >= row[y])
            hits += others_at_least < min(k, 8)
        assert got[f"top{k}"] == pytest.approx(100 * hits / 40)
    assert topk_accuracy(torch.zeros(5, 4), torch.zeros(5, dtype=torch.long), (1,))["top1"] == 0.0


@pytest.mark.parametrize("vote", ["weighted", "majority"])
def test_knn_brute_force(vote):
    g = torch.Generator().manual_seed(1)
    train = torch.randn(60, 6, generator=g)
    labels = torch.randint(0, 5, (60,), generator=g)
    test = torch.randn(10, 6, generator=g)
    got = knn_predict(train, labels, test, 5, k=7, vote=vote)
    tn = train / train.norm(dim=1, keepdim=True)
    for i, q in enumerate(test / test.norm(dim=1, keepdim=True)):
        sims = [(float(q @ tn[j]), j) for j in range(60)]
        top = sorted(sims, key=lambda s: (-s[0], s[1]))[:7]
        want = [0.0] * 5
        for s, j in top:
            want[labels[j]] += math.exp(s / 0.07) if vote == "weighted" else 1.0
        assert torch.allclose(got[i], torch.tensor(want, dtype=got.dtype), rtol=1e-4)


def test_knn_k_larger_than_train_set_and_bad_vote():
    train, labels = torch.eye(3), torch.tensor([0, 1, 1])
    scores = knn_predict(train, labels, torch.tensor([[1.0, 0, 0]]), 2, k=25, vote="majority")
    assert scores.tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError):
        knn_predict(train, labels, train, 2, vote="median")


@pytest.mark.parametrize("seed", range(4))
def test_v2v_brute_force_never_retrieves_itself(seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(25, 4, generator=g)
    labels = torch.randint(0, 5, (25,), generator=g)
    labels[-1] = 7  # a class with one video: not a query
    got = v2v_retrieval_metrics(feats, labels)
    f = feats / feats.norm(dim=1, keepdim=True)
    sim = (f @ f.T).tolist()
    ranks = []
    for q in range(25):
        others = [j for j in range(25) if j != q]
        positives = [j for j in others if labels[j] == labels[q]]
        if positives:
            best = max(sim[q][j] for j in positives)
            ranks.append(_rank_of([sim[q][j] for j in others], best))
    assert got["num_queries"] == len(ranks) == 24
    for k in (1, 5, 10):
        assert got[f"R@{k}"] == pytest.approx(100 * sum(r <= k for r in ranks) / len(ranks))
    assert got["MedR"] == pytest.approx(_median(ranks)) and got["MeanR"] == pytest.approx(sum(ranks) / len(ranks))


def test_v2v_identical_videos_of_other_classes_do_not_count():
    feats = torch.tensor([[1.0, 0], [1.0, 0], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 0])
    got = v2v_retrieval_metrics(feats, labels)  # video 0's twin is of another class: its own class comes 2nd
    assert got["R@1"] == 50.0 and got["num_queries"] == 2  # video 2 ties with both and wins the tie


def test_confusion_matrix_counts():
    m = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
