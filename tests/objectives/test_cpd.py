"""CPD (its Section 3): each loss against the equations written out with loops, the memory bank and its
normalising constants, where the gradients go, the bank in a 2-process run, and exact resumption."""

import math
import os
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from tvts.config import CPDConfig, ObjectiveConfig, validate_recipe
from tvts.objectives import build_objective
from tvts.objectives import cpd
from tvts.objectives.contrastive import info_nce
from tvts.objectives.cpd import BANK_SEED, CPDObjective, bank_logits, momentum_update, nce_loss, random_unit_rows, ranking_loss
from tvts.testing import assert_same_weights, kill_and_resume, make_tiny_bert, tiny_model_config, tiny_recipe
from tvts.train.checkpoint import latest_checkpoint
from tvts.train.trainer import pretrain

N, D, FEAT = 10, 8, 6  # pairs in the corpus, embedding size, stub feature size


class Stub(nn.Module):
    """The parts of a model CPD uses: ``frames`` are already features ``[B, FEAT]``; caption "i" is row i
    of a learned table; linear maps into the embedding space."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(embed_dim=D)
        self.vid = nn.Linear(FEAT, D)
        self.words = nn.Parameter(torch.randn(N, FEAT))
        self.txt = nn.Linear(FEAT, D)

    def video_model(self, frames, keep=None):
        return frames

    def video_embedding(self, video):
        return self.vid(video)

    def text_model(self, texts):
        return self.words[[int(t) for t in texts]]

    def text_embedding(self, feats):
        return self.txt(feats)

    def encode_video(self, frames, keep=None):  # as VideoTextModel.encode_video
        return self.video_embedding(self.video_model(frames, keep))

    def encode_text(self, texts):  # as VideoTextModel.encode_text
        return self.text_embedding(self.text_model(texts))

    def transcript_features(self, texts):  # as VideoTextModel.transcript_features
        return self.text_model([t for s in texts for t in s]).reshape(len(texts), len(texts[0]), -1)


def _setup(loss="cross_pair", num_noise=4, momentum=0.5, seed=0):
    torch.manual_seed(seed)
    model = Stub()
    cfg = ObjectiveConfig(name="cpd", cpd=CPDConfig(loss=loss, num_noise=num_noise, momentum=momentum, temperature=0.1))
    return model, build_objective(cfg, model, N)


def _batch(index, seed=1):
    g = torch.Generator().manual_seed(seed)
    index = torch.tensor(index)
    return {"frames": torch.randn(len(index), FEAT, generator=g), "captions": [str(int(i)) for i in index], "index": index}


def _embeddings(model, batch):
    """f^v, f^t computed directly (float64)."""
    with torch.no_grad():
        f_v = F.normalize(model.vid(batch["frames"]).double(), dim=-1)
        f_t = F.normalize(model.txt(model.words[batch["index"]]).double(), dim=-1)
    return f_v, f_t


def _fix_noise(monkeypatch, noise):
    monkeypatch.setattr(cpd, "sample_noise", lambda b, m, n, device: noise)


# ------------------------------------------------------------------------------------ direct formulas
def _h(score, tau, z, m, n):
    """h = p / (p + m·P_n) with p = exp(score/τ) / Z and P_n = 1/N."""
    p = math.exp(score / tau) / z
    return p / (p + m / n)


def _direct_nce(score, positive, noise, tau, z, n):
    """Eq. 5 averaged over the batch; ``score(b, j)`` is the (unscaled) score of class j for sample b."""
    total = 0.0
    for b in range(len(positive)):
        m = len(noise[b])
        total -= math.log(_h(score(b, int(positive[b])), tau, z, m, n))
        total -= sum(math.log(1 - _h(score(b, int(j)), tau, z, m, n)) for j in noise[b])
    return total / len(positive)


def _direct_ranking(v, t, margin):
    n = len(t)
    total = 0.0
    for i in range(len(v)):
        s_ii = float(t[i] @ v[i])
        total += sum(max(0.0, margin + float(t[j] @ v[i]) - s_ii) for j in range(n) if j != i) / (n - 1)
    return total / len(v)


# ------------------------------------------------------------------------------------ pure functions
def test_nce_loss_matches_eq5():
    g = torch.Generator().manual_seed(0)
    query = F.normalize(torch.randn(3, D, generator=g, dtype=torch.float64), dim=-1)
    memory = F.normalize(torch.randn(N, D, generator=g, dtype=torch.float64), dim=-1)
    positive, noise = torch.tensor([4, 0, 9]), torch.tensor([[1, 2, 3, 4], [0, 5, 5, 8], [7, 6, 2, 1]])
    tau, z = 0.07, 11.5
    pos, neg = bank_logits(query, memory, positive, noise, tau)
    loss, h = nce_loss(pos, neg, torch.tensor(z, dtype=torch.float64), N)
    expected = _direct_nce(lambda b, j: float(memory[j] @ query[b]), positive, noise.tolist(), tau, z, N)
    assert math.isclose(loss.item(), expected, rel_tol=1e-10)
    assert torch.allclose(h, torch.tensor([_h(float(memory[positive[b]] @ query[b]), tau, z, 4, N) for b in range(3)],
                                          dtype=torch.float64))


@pytest.mark.parametrize("m", [3, 2000])  # a few noise pairs per sample (gathered), and most of the bank (one product)
def test_bank_logits_score_each_query_against_its_rows(m):
    g = torch.Generator().manual_seed(0)
    memory = random_unit_rows(1000, 16, g)
    query = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    positive = torch.tensor([5, 0, 999, 5])
    noise = torch.randint(1000, (4, m), generator=g)
    pos, neg = bank_logits(query, memory, positive, noise, 0.1)
    assert torch.allclose(pos, torch.stack([memory[i] @ q for i, q in zip(positive, query)]) / 0.1, atol=1e-5)
    direct = torch.stack([memory[row] @ q for row, q in zip(noise, query)]) / 0.1
    assert neg.shape == (4, m) and torch.allclose(neg, direct, atol=1e-5)


def test_ranking_loss_matches_eq4():
    g = torch.Generator().manual_seed(1)
    v = F.normalize(torch.randn(5, D, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(v + 0.8 * torch.randn(5, D, generator=g, dtype=torch.float64), dim=-1)
    for margin in (0.0, 0.2, 1.5):
        got = ranking_loss(v, t, torch.arange(5), margin)
        assert math.isclose(got.item(), _direct_ranking(v, t, margin), rel_tol=1e-10, abs_tol=1e-12)
    assert ranking_loss(v, v, torch.arange(5), 0.0).item() == 0.0  # every positive is the best match
    # A slice of the videos against all texts: the positives are columns 2, 3.
    got = ranking_loss(v[2:4], t, torch.tensor([2, 3]), 0.2)
    full = [_direct_ranking(v[i:i + 1], torch.cat([t[i:i + 1], t[:i], t[i + 1:]]), 0.2) for i in (2, 3)]
    assert math.isclose(got.item(), sum(full) / 2, rel_tol=1e-10)


def test_momentum_update_touches_only_the_batch_rows():
    g = torch.Generator().manual_seed(2)
    memory = random_unit_rows(N, D, g)
    before = memory.clone()
    index = torch.tensor([7, 2, 7, 5])  # 7 twice: its first occurrence counts
    feats = torch.randn(4, D, generator=g)
    momentum_update(memory, index, feats, 0.3)
    for row, k in ((7, 0), (2, 1), (5, 3)):
        assert torch.allclose(memory[row], F.normalize(0.3 * before[row] + 0.7 * feats[k], dim=0), atol=1e-6)
    others = [i for i in range(N) if i not in (2, 5, 7)]
    assert torch.equal(memory[others], before[others])
    assert torch.allclose(memory.norm(dim=1), torch.ones(N), atol=1e-6)


# ------------------------------------------------------------------------------------ the objective
def test_the_bank_starts_as_seeded_unit_vectors_without_the_global_rng():
    model = SimpleNamespace(config=SimpleNamespace(embed_dim=D))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    obj = CPDObjective(ObjectiveConfig(name="cpd", cpd=CPDConfig(num_noise=4)), model, N)
    assert torch.equal(torch.get_rng_state(), before)
    expected = random_unit_rows(N, D, torch.Generator().manual_seed(BANK_SEED))
    assert torch.equal(obj.memory_video, expected)
    assert not torch.equal(obj.memory_video, obj.memory_text)
    assert torch.allclose(obj.memory_text.norm(dim=1), torch.ones(N))
    assert sorted(obj.state_dict()) == ["memory_text", "memory_video", "z"]
    assert list(obj.parameters()) == []  # the bank is state, never trained
    assert obj.num_noise == 4
    assert CPDObjective(ObjectiveConfig(name="cpd", cpd=CPDConfig(num_noise=4)), model, 3).num_noise == 2  # m <= N - 1
    with pytest.raises(ValueError):
        CPDObjective(ObjectiveConfig(name="cpd"), model, 1)


def test_cross_pair_loss_matches_eq3_eq5_and_updates_the_bank(monkeypatch):
    model, obj = _setup("cross_pair", num_noise=4, momentum=0.25)
    batch = _batch([3, 8, 0])
    noise = torch.tensor([[1, 2, 3, 9], [8, 8, 4, 0], [5, 6, 7, 2]])
    _fix_noise(monkeypatch, noise)
    obj.z.copy_(torch.tensor([13.0, 7.0]))
    mem_v, mem_t = obj.memory_video.clone().double(), obj.memory_text.clone().double()
    f_v, f_t = _embeddings(model, batch)

    losses, metrics = obj(model, batch)

    tau, idx = 0.1, batch["index"]
    # p(i_t | v): the video against the text memory; p(i_v | t): the text against the video memory.
    v2t = _direct_nce(lambda b, j: float(mem_t[j] @ f_v[b]), idx, noise.tolist(), tau, 13.0, N)
    t2v = _direct_nce(lambda b, j: float(mem_v[j] @ f_t[b]), idx, noise.tolist(), tau, 7.0, N)
    assert set(losses) == {"cpd_v2t", "cpd_t2v"}
    assert math.isclose(losses["cpd_v2t"].item(), v2t, rel_tol=1e-5)
    assert math.isclose(losses["cpd_t2v"].item(), t2v, rel_tol=1e-5)
    h = sum(_h(float(mem_t[idx[b]] @ f_v[b]), tau, 13.0, 4, N) for b in range(3)) / 3
    assert math.isclose(metrics["nce_h_v2t"].item(), h, rel_tol=1e-5)
    sim = f_v @ f_t.T
    assert metrics["v2t_acc"].item() == pytest.approx((sim.argmax(1) == torch.arange(3)).double().mean().item())
    assert metrics["t2v_acc"].item() == pytest.approx((sim.argmax(0) == torch.arange(3)).double().mean().item())

    # After the step: the batch rows moved towards the new embeddings, the rest is untouched.
    for b, i in enumerate(idx.tolist()):
        assert torch.allclose(obj.memory_video[i].double(), F.normalize(0.25 * mem_v[i] + 0.75 * f_v[b], dim=0), atol=1e-6)
        assert torch.allclose(obj.memory_text[i].double(), F.normalize(0.25 * mem_t[i] + 0.75 * f_t[b], dim=0), atol=1e-6)
    rest = [i for i in range(N) if i not in idx.tolist()]
    assert torch.equal(obj.memory_video[rest].double(), mem_v[rest]) and torch.equal(obj.memory_text[rest].double(), mem_t[rest])
    assert torch.equal(obj.z, torch.tensor([13.0, 7.0]))  # known Z are kept


def test_softmax_estimator_is_the_cross_entropy_over_the_positive_and_its_noise(monkeypatch):
    model, obj = _setup("cross_pair", num_noise=4, momentum=0.25)
    obj.cfg.estimator = "softmax"
    batch = _batch([3, 8, 0])
    noise = torch.tensor([[1, 2, 3, 9], [8, 8, 4, 0], [5, 6, 7, 2]])
    _fix_noise(monkeypatch, noise)
    mem_v, mem_t = obj.memory_video.clone().double(), obj.memory_text.clone().double()
    f_v, f_t = _embeddings(model, batch)

    losses, metrics = obj(model, batch)

    def direct(query, memory):
        total = 0.0
        for b, i in enumerate(batch["index"].tolist()):
            scores = [float(memory[j] @ query[b]) / 0.1 for j in [i] + noise[b].tolist()]
            total -= scores[0] - math.log(sum(math.exp(x) for x in scores))
        return total / 3

    assert set(losses) == {"cpd_v2t", "cpd_t2v"} and {"p_pos_v2t", "p_pos_t2v"} <= set(metrics)
    assert math.isclose(losses["cpd_v2t"].item(), direct(f_v, mem_t), rel_tol=1e-5)
    assert math.isclose(losses["cpd_t2v"].item(), direct(f_t, mem_v), rel_tol=1e-5)
    assert torch.equal(obj.z, torch.zeros(2))  # no Z to estimate
    i = batch["index"][0].item()  # the bank is still updated
    assert torch.allclose(obj.memory_video[i].double(), F.normalize(0.25 * mem_v[i] + 0.75 * f_v[0], dim=0), atol=1e-6)


def test_batch_noise_scores_the_other_pairs_of_the_batch_by_their_bank_entries(monkeypatch):
    model, obj = _setup("cross_pair", num_noise=4)
    obj.cfg.noise, obj.cfg.estimator = "batch", "softmax"
    monkeypatch.setattr(cpd, "sample_noise", lambda *a: pytest.fail("batch noise must not draw from the bank"))
    batch = _batch([3, 8, 0, 5])
    mem_v, mem_t = obj.memory_video.clone().double(), obj.memory_text.clone().double()
    f_v, f_t = _embeddings(model, batch)

    losses, _ = obj(model, batch)

    index = batch["index"].tolist()
    def direct(query, memory):
        total = 0.0
        for b, i in enumerate(index):
            scores = [float(memory[j] @ query[b]) / 0.1 for j in [i] + [k for k in index if k != i]]
            total -= scores[0] - math.log(sum(math.exp(x) for x in scores))
        return total / len(index)

    assert math.isclose(losses["cpd_v2t"].item(), direct(f_v, mem_t), rel_tol=1e-5)
    assert math.isclose(losses["cpd_t2v"].item(), direct(f_t, mem_v), rel_tol=1e-5)
    assert cpd.batch_noise(torch.tensor([3, 8, 0])).tolist() == [[8, 0], [3, 0], [3, 8]]


def test_batch_keys_give_m_base_infonce_with_each_term_training_only_its_query_tower(monkeypatch):
    model, obj = _setup("cross_pair", num_noise=4)
    obj.cfg.noise, obj.cfg.estimator, obj.cfg.keys = "batch", "softmax", "batch"
    monkeypatch.setattr(cpd, "bank_logits", _no_bank_rows(cpd.bank_logits, obj))
    batch = _batch([3, 8, 0, 5, 1])
    bank_before = obj.memory_video.clone(), obj.memory_text.clone()

    losses, _ = obj(model, batch)

    # the value: M_base's InfoNCE (both directions summed) over the current embeddings at the same temperature
    f_v, f_t = obj.embed(model, batch)
    expected = info_nce(f_v, f_t, temperature=0.1)["loss"]
    total = losses["cpd_v2t"] + losses["cpd_t2v"]
    assert math.isclose(total.item(), expected.item(), rel_tol=1e-5)
    # the gradients: v->t reaches only the video tower, t->v only the text tower; M_base's reaches both
    for name, trained, untouched in (("cpd_v2t", model.vid, model.txt), ("cpd_t2v", model.txt, model.vid)):
        model.zero_grad()
        losses[name].backward(retain_graph=True)
        assert trained.weight.grad.abs().sum() > 0, name
        assert untouched.weight.grad is None or untouched.weight.grad.abs().sum() == 0, name
    # and the sum's gradient is M_base's for the video tower's own direction: d/dθ_v of CE(v @ t.detach()^T / tau)
    model.zero_grad()
    total.backward()
    got = model.vid.weight.grad.clone()
    model.zero_grad()
    f_v, f_t = obj.embed(model, batch)
    F.cross_entropy(f_v @ f_t.detach().T / 0.1, torch.arange(5)).backward()
    torch.testing.assert_close(got, model.vid.weight.grad, rtol=1e-5, atol=1e-7 * got.abs().max().item())
    # the bank is still updated (the state stays the same shape and meaning), it just scores nothing
    assert not torch.equal(obj.memory_video, bank_before[0]) and not torch.equal(obj.memory_text, bank_before[1])


def _queue_setup(queue_size):
    model, obj = _setup("cross_pair", num_noise=4)
    obj.cfg.noise, obj.cfg.estimator, obj.cfg.keys, obj.cfg.queue_size = "batch", "softmax", "queue", queue_size
    return model, build_objective(ObjectiveConfig(name="cpd", cpd=obj.cfg), model, N)


def test_queue_keys_score_the_batch_and_the_earlier_keys_of_other_pairs():
    model, obj = _queue_setup(queue_size=6)
    # two earlier batches (3 and 2 pairs): the queue holds their detached keys, slot 5 is still empty
    earlier = [_batch([1, 4, 7], seed=2), _batch([3, 9], seed=3)]
    for b in earlier:
        obj(model, b)
    assert obj.queue_index.tolist() == [1, 4, 7, 3, 9, -1] and int(obj.queue_next) == 5
    queued_v = torch.cat([_embeddings(model, b)[0] for b in earlier])
    torch.testing.assert_close(obj.queue_video[:5].double(), queued_v, rtol=0, atol=1e-6)

    batch = _batch([3, 8, 0], seed=4)  # pair 3 is queued: another key of the query's own pair, left out
    f_v, f_t = _embeddings(model, batch)
    q_t = obj.queue_text[:5].clone().double()
    losses, _ = obj(model, batch)

    expected, queued_index = 0.0, [1, 4, 7, 3, 9]
    for b, i in enumerate(batch["index"].tolist()):
        keys = [f_t[b]] + [f_t[j] for j in range(3) if j != b] + [q_t[s] for s in range(5) if queued_index[s] != i]
        scores = [float(k @ f_v[b]) / 0.1 for k in keys]
        expected -= scores[0] - math.log(sum(math.exp(x) for x in scores))
    assert math.isclose(losses["cpd_v2t"].item(), expected / 3, rel_tol=1e-5)
    # the step's keys went in after the loss, wrapping round: slot 5, then slots 0 and 1
    assert obj.queue_index.tolist() == [8, 0, 7, 3, 9, 3] and int(obj.queue_next) == 2
    # and the loss still backpropagates although the queue it was scored against has been overwritten since
    (losses["cpd_v2t"] + losses["cpd_t2v"]).backward()
    assert model.vid.weight.grad.abs().sum() > 0 and model.txt.weight.grad.abs().sum() > 0


def test_enqueue_keeps_the_last_rows_when_a_batch_outgrows_the_queue():
    queue, index, nxt = torch.zeros(3, 2), torch.full((3,), -1), torch.tensor(1)
    rows = torch.arange(10.0).view(5, 2)
    cpd.enqueue([queue], index, nxt, [rows], torch.tensor([10, 11, 12, 13, 14]))
    # 5 rows from slot 1: the first two are overwritten by the last three, so slots 1, 2, 0 hold pairs 12, 13, 14
    assert index.tolist() == [14, 12, 13] and int(nxt) == 0
    assert torch.equal(queue, rows[[4, 2, 3]])


def _no_bank_rows(bank_logits, obj):
    """``bank_logits`` that fails when it is handed one of the objective's banks."""
    def checked(query, memory, *args):
        assert memory.data_ptr() not in (obj.memory_video.data_ptr(), obj.memory_text.data_ptr()), "scored against the bank"
        return bank_logits(query, memory, *args)
    return checked


def test_current_positive_scores_the_pair_of_this_batch_and_trains_both_towers(monkeypatch):
    model, obj = _setup("cross_pair", num_noise=4)
    obj.cfg.positive, obj.cfg.estimator = "current", "softmax"
    batch = _batch([3, 8, 0])
    noise = torch.tensor([[1, 2, 3, 9], [8, 8, 4, 0], [5, 6, 7, 2]])
    _fix_noise(monkeypatch, noise)
    mem_t = obj.memory_text.clone().double()
    f_v, f_t = _embeddings(model, batch)

    losses, _ = obj(model, batch)

    expected = 0.0
    for b in range(3):
        scores = [float(f_t[b] @ f_v[b]) / 0.1] + [float(mem_t[j] @ f_v[b]) / 0.1 for j in noise[b].tolist()]
        expected -= scores[0] - math.log(sum(math.exp(x) for x in scores))
    assert math.isclose(losses["cpd_v2t"].item(), expected / 3, rel_tol=1e-5)
    model.zero_grad()
    losses["cpd_v2t"].backward()  # the v->t term now reaches the text tower through its positive
    assert model.txt.weight.grad.abs().sum() > 0 and model.vid.weight.grad.abs().sum() > 0


def test_self_instance_loss_matches_eq2_eq5(monkeypatch):
    model, obj = _setup("self_instance", num_noise=3)
    batch = _batch([1, 6, 2, 9])
    noise = torch.tensor([[0, 4, 5], [6, 3, 3], [8, 7, 1], [2, 2, 0]])
    _fix_noise(monkeypatch, noise)
    obj.z[0] = 21.0
    mem_v, mem_t = obj.memory_video.clone().double(), obj.memory_text.clone().double()
    f_v, f_t = _embeddings(model, batch)

    losses, metrics = obj(model, batch)

    expected = _direct_nce(lambda b, j: float(mem_v[j] @ f_v[b]) + float(mem_t[j] @ f_t[b]), batch["index"],
                           noise.tolist(), 0.1, 21.0, N)
    assert set(losses) == {"cpd_self"}
    assert math.isclose(losses["cpd_self"].item(), expected, rel_tol=1e-5)
    assert "nce_h_self" in metrics
    assert not torch.equal(obj.memory_video.double(), mem_v)  # the bank is updated for self-instance too


def test_ranking_objective_uses_the_batch_and_leaves_the_state_alone():
    model, obj = _setup("ranking")
    obj.cfg.margin = 0.3
    batch = _batch([4, 2, 7, 0, 5])
    state = {k: v.clone() for k, v in obj.state_dict().items()}
    losses, metrics = obj(model, batch)
    f_v, f_t = _embeddings(model, batch)
    assert set(losses) == {"cpd_ranking"} and {"v2t_acc", "t2v_acc"} <= set(metrics)
    assert math.isclose(losses["cpd_ranking"].item(), _direct_ranking(f_v, f_t, 0.3), rel_tol=1e-5)
    assert all(torch.equal(v, state[k]) for k, v in obj.state_dict().items())


def test_z_is_estimated_once_from_the_first_batch_and_resumes(monkeypatch):
    model, obj = _setup("cross_pair", num_noise=5)
    assert torch.equal(obj.z, torch.zeros(2))
    batch = _batch([0, 1, 2, 3])
    noise = torch.tensor([[0, 2, 4, 6, 8], [1, 3, 5, 7, 9], [9, 9, 8, 8, 7], [0, 1, 2, 3, 4]])
    _fix_noise(monkeypatch, noise)
    mem_v, mem_t = obj.memory_video.clone().double(), obj.memory_text.clone().double()
    f_v, f_t = _embeddings(model, batch)

    obj.eval()  # outside training nothing is stored
    obj(model, batch)
    assert torch.equal(obj.z, torch.zeros(2)) and torch.equal(obj.memory_video.double(), mem_v)
    obj.train()
    obj(model, batch)

    def z_direct(query, memory):  # Z = N * mean over the batch and its noise samples of exp(score / tau)
        return N * sum(math.exp(float(memory[j] @ query[b]) / 0.1) for b in range(4) for j in noise[b].tolist()) / 20

    assert obj.z[0].item() == pytest.approx(z_direct(f_v, mem_t), rel=1e-5)
    assert obj.z[1].item() == pytest.approx(z_direct(f_t, mem_v), rel=1e-5)
    z = obj.z.clone()
    obj(model, _batch([5, 6, 7, 8], seed=9))
    assert torch.equal(obj.z, z)  # estimated once

    _, fresh = _setup("cross_pair", num_noise=5)
    fresh(model, _batch([1, 2, 3, 4], seed=3))  # estimates its own Z ...
    assert not torch.equal(fresh.z, z)
    fresh.load_state_dict(obj.state_dict())  # ... but a resumed objective keeps the saved one
    fresh(model, _batch([5, 6, 7, 8], seed=9))
    assert torch.equal(fresh.z, z)


def test_gradients_v2t_trains_video_t2v_trains_text_never_the_bank(tmp_path):
    from tvts.models import build_model

    torch.manual_seed(0)
    cfg = tiny_model_config(make_tiny_bert(tmp_path / "bert"), sort_head="none", trainable_layers=0, mask_ratio=0.0)
    cfg.text_proj = "mlp_bn"
    model = build_model(cfg).train()
    obj = build_objective(ObjectiveConfig(name="cpd", cpd=CPDConfig(num_noise=3)), model, 6).train()
    g = torch.Generator().manual_seed(0)
    batch = {"frames": torch.randn(4, 4, 3, 16, 16, generator=g), "index": torch.tensor([0, 5, 2, 3]),
             "captions": ["the red circle moves left", "a blue square grows", "the star spins", "a green circle shrinks"]}
    losses, _ = obj(model, batch)

    def grads(prefix):
        return [p.grad for n, p in model.named_parameters() if n.startswith(prefix) and p.requires_grad]

    losses["cpd_v2t"].backward(retain_graph=True)
    assert all(gr is not None for gr in grads("video_model.")) and grads("video_model.")[0].abs().sum() > 0
    assert grads("vid_proj.")[0].abs().sum() > 0
    assert all(gr is None for gr in grads("txt_proj."))  # the texts of p(i_t|v) come from the bank
    model.zero_grad(set_to_none=True)
    losses["cpd_t2v"].backward()
    assert all(gr is not None for gr in grads("txt_proj.")) and grads("txt_proj.")[0].abs().sum() > 0
    assert all(gr is None for gr in grads("video_model.") + grads("vid_proj."))
    assert all(p.grad is None for p in model.text_model.parameters())  # frozen (stage I)
    assert not obj.memory_video.requires_grad and not obj.memory_text.requires_grad
    assert obj.memory_video.grad is None and obj.memory_text.grad is None


# ------------------------------------------------------------------------------------ two processes
def _global_setup():
    model, obj = _setup("cross_pair", num_noise=4)
    batch = _batch([3, 7, 1, 7, 0, 9])  # 7 on both processes: the first (rank 0's) update wins
    noise = torch.randint(N, (6, 4), generator=torch.Generator().manual_seed(4))
    return model, obj, batch, noise


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, obj, batch, noise = _global_setup()
    per = 6 // world
    local = {"frames": batch["frames"][rank * per:(rank + 1) * per], "captions": batch["captions"][rank * per:(rank + 1) * per],
             "index": batch["index"][rank * per:(rank + 1) * per]}
    cpd.sample_noise = lambda b, m, n, device: noise[rank * per:(rank + 1) * per]
    losses, _ = obj(model, local)
    total = torch.stack([losses["cpd_v2t"], losses["cpd_t2v"]]).detach()
    dist.all_reduce(total)
    torch.save({"loss": total / world, **{k: v.clone() for k, v in obj.state_dict().items()}},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_processes_keep_identical_banks_equal_to_one_process(tmp_path, monkeypatch):
    model, obj, batch, noise = _global_setup()
    _fix_noise(monkeypatch, noise)
    losses, _ = obj(model, batch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for k in ("memory_video", "memory_text", "z"):
        assert torch.equal(ranks[0][k], ranks[1][k]), k
        assert torch.allclose(ranks[0][k], obj.state_dict()[k], rtol=1e-5, atol=1e-6), k
    assert torch.allclose(ranks[0]["loss"], torch.stack([losses["cpd_v2t"], losses["cpd_t2v"]]).detach(), rtol=1e-5)


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return {"bert": make_tiny_bert(root / "bert"), "data": root / "shapes"}


def _cpd_recipe(assets, out, steps=6):
    cfg = tiny_recipe(assets["bert"], assets["data"], out, steps=steps)
    cfg.model.sort_head.kind, cfg.model.video.mask_ratio, cfg.model.text_proj = "none", 0.0, "mlp_bn"
    cfg.objective = ObjectiveConfig(name="cpd", cpd=CPDConfig(num_noise=5))
    validate_recipe(cfg)
    return cfg


@pytest.mark.parametrize("keys", ["bank", "queue"])
def test_killed_cpd_run_resumes_to_the_same_weights_and_memory_bank(assets, tmp_path, keys):
    def recipe(out):
        cfg = _cpd_recipe(assets, out)
        if keys == "queue":  # 6 steps of 4 pairs through a queue of 10: it wraps after the resume
            cfg.objective.cpd = CPDConfig(estimator="softmax", noise="batch", keys="queue", queue_size=10)
        return cfg
    straight = pretrain(recipe(tmp_path / "straight"))
    state, resumed = kill_and_resume(recipe, tmp_path / "resumed", 2)
    assert state["step"] == 2
    assert_same_weights(straight, resumed)

    def objective_state(run):
        return load_file(str(latest_checkpoint(run) / "objective.safetensors"))

    a, b = objective_state(straight), objective_state(resumed)
    queue = ["queue_index", "queue_next", "queue_text", "queue_video"] if keys == "queue" else []
    assert sorted(a) == sorted(["memory_text", "memory_video", "z"] + queue)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    initial = random_unit_rows(12, 16, torch.Generator().manual_seed(BANK_SEED))
    assert (a["memory_video"] != initial).any(1).sum() >= 8  # 6 steps of 4 clips from 12 pairs: most rows moved
    if keys == "queue":
        assert (a["queue_index"] >= 0).all() and int(a["queue_next"]) == 6 * 4 % 10
    else:
        assert torch.all(a["z"] > 0)


def test_with_transcript_text_a_clip_is_scored_by_the_mean_of_its_segment_embeddings():
    """``objective.clip_text=transcript``: f^t is the normalised mean of the K segments' embeddings (TVTS's L_base
    text), whatever the caption says; the default scores the caption."""
    torch.manual_seed(0)
    model = Stub()
    index = torch.tensor([0, 1, 2])
    segments = [["3", "5"], ["4", "9"], ["7", "7"]]
    batch = {"frames": torch.randn(3, FEAT), "captions": ["0", "1", "2"], "texts": segments, "index": index}
    on_transcripts = build_objective(ObjectiveConfig(name="cpd", clip_text="transcript"), model, N)
    _, f_t = on_transcripts.embed(model, batch)
    with torch.no_grad():
        expected = torch.stack([model.txt(model.words[[int(t) for t in s]]).mean(0) for s in segments])
        _, f_caption = build_objective(ObjectiveConfig(name="cpd"), model, N).embed(model, batch)
        assert torch.allclose(f_t, F.normalize(expected, dim=-1), atol=1e-6)
        assert torch.allclose(f_caption, F.normalize(model.txt(model.words[index]), dim=-1), atol=1e-6)
    losses, _ = on_transcripts(model, batch)
    sum(losses.values()).backward()
    assert model.words.grad[[3, 4, 5, 7, 9]].abs().sum(1).gt(0).all()  # the segments' rows train,
    assert model.words.grad[[0, 1, 2]].abs().sum() == 0  # the captions' do not
