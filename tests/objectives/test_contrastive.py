import math

import torch

from tvts.objectives.contrastive import info_nce


def _direct(v, t, tau):
    """NCE(t, v) + NCE(v, t) of Eq. 3, written out with loops."""
    v = [x / x.norm() for x in v]
    t = [x / x.norm() for x in t]
    b = len(v)
    total = 0.0
    for i in range(b):
        num = math.exp(float(v[i] @ t[i]) / tau)
        total += -math.log(num / sum(math.exp(float(v[i] @ t[j]) / tau) for j in range(b)))
        num = math.exp(float(t[i] @ v[i]) / tau)
        total += -math.log(num / sum(math.exp(float(t[i] @ v[j]) / tau) for j in range(b)))
    return total / b


def test_info_nce_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    out = info_nce(v, t, temperature=0.05)
    assert math.isclose(out["loss"].item(), _direct(v, t, 0.05), rel_tol=1e-9)


def test_info_nce_rewards_aligned_pairs():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(8, 16, generator=g)
    aligned = info_nce(v, v + 0.01 * torch.randn(8, 16, generator=g))
    shuffled = info_nce(v, v.roll(1, 0))
    assert aligned["loss"] < shuffled["loss"]
    assert aligned["v2t_acc"] == 1.0 and shuffled["v2t_acc"] == 0.0
