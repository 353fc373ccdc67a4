"""TVTSObjective: the sort output of Table 3 and MERLOT's frame-transcript contrastive of appendix Table 12."""

import math

import pytest
import torch

from tvts.config import ObjectiveConfig
from tvts.models.vit import VideoTokens
from tvts.objectives import build_objective
from tvts.objectives.contrastive import info_nce
from tvts.objectives.sorting import sort_loss


def _nce_by_loops(v: list[torch.Tensor], t: list[torch.Tensor], tau: float) -> float:
    """NCE(v, t) + NCE(t, v) of TVTS Eq. 3 over paired lists, with loops."""
    v = [x / x.norm() for x in v]
    t = [x / x.norm() for x in t]
    n = len(v)
    total = 0.0
    for a, b in ((v, t), (t, v)):
        for i in range(n):
            total += -math.log(math.exp(float(a[i] @ b[i]) / tau) / sum(math.exp(float(a[i] @ b[j]) / tau) for j in range(n)))
    return total / n


def _direct_frame_loss(m, batch, tau, matched=True):
    """Each part (frames 2k, 2k+1) encoded alone by the model's public encoder, each transcript alone; part k
    of clip b paired with the transcript at time k (``matched``) or, wrongly, with shuffled transcript k."""
    parts, texts = [], []
    for b, sample in enumerate(batch["texts"]):
        at_time = {int(batch["order"][b, i]): s for i, s in enumerate(sample)}
        for k in range(4):
            parts.append(m.encode_video(batch["frames"][b:b + 1, 2 * k:2 * k + 2])[0])
            texts.append(m.encode_text([at_time[k] if matched else sample[k]])[0])
    return _nce_by_loops(parts, texts, tau)


@pytest.mark.parametrize("sort_weight", [0.0, 2.0])  # text-only path, and with the full-clip sort forward
def test_frame_contrastive_matches_each_part_to_its_own_transcript(make_model, make_batch, sort_weight):
    m = make_model().eval()
    batch = make_batch(order=torch.tensor([[2, 0, 3, 1], [1, 3, 0, 2]]))
    del batch["keep"]  # evaluation-style: every patch
    obj = build_objective(ObjectiveConfig(contrastive="frame", sort_weight=sort_weight, temperature=0.01), m, 10)
    with torch.no_grad():
        losses, metrics = obj(m, batch)
        right = _direct_frame_loss(m, batch, 0.01)
        wrong = _direct_frame_loss(m, batch, 0.01, matched=False)
    assert math.isclose(losses["contrastive"].item(), right, rel_tol=1e-5)
    assert abs(right - wrong) > 10 * 1e-5 * right  # only the unshuffled matching gives this value
    assert ("sort" in losses) == (sort_weight > 0)
    assert {"v2t_acc", "t2v_acc"} <= set(metrics)


class CodeVideo(torch.nn.Module):
    """Stub video encoder: [CLS] = one-hot of the (rounded) mean frame value, over 8 codes."""

    def forward(self, frames, keep=None):
        code = torch.nn.functional.one_hot(frames.mean(dim=(1, 2, 3, 4)).round().long(), 8).float()
        return VideoTokens(code[:, None], 0, 0)


class CodeText(torch.nn.Module):
    """Stub text encoder: the text is a number, its feature the one-hot of it over 8 codes."""

    def forward(self, texts):
        return torch.nn.functional.one_hot(torch.tensor([int(t) for t in texts]), 8).float()


def test_frame_contrastive_on_coded_parts_and_transcripts(make_model, make_batch):
    """Part k of clip b shows code 4b + k, the transcript at time k of clip b says code 4b + k; with the
    embeddings being the codes, the right matching is perfect (loss at its floor, accuracy 1)."""
    m = make_model().eval()
    m.video_model = CodeVideo()
    m.video_embedding = lambda video: video.cls
    m.text_model = CodeText()
    m.text_embedding = lambda feats: feats
    order = torch.tensor([[2, 0, 3, 1], [1, 3, 0, 2]])
    batch = {"order": order, "texts": [[str(4 * b + int(order[b, i])) for i in range(4)] for b in range(2)],
             "frames": (torch.arange(8.0).repeat_interleave(2).reshape(2, 8))[..., None, None, None].expand(2, 8, 3, 4, 4)}
    obj = build_objective(ObjectiveConfig(contrastive="frame", sort_weight=0.0, temperature=0.1), m, 10)
    losses, metrics = obj(m, batch)
    floor = 2 * -math.log(math.exp(10) / (math.exp(10) + 7))  # both directions, 7 orthogonal negatives
    assert math.isclose(losses["contrastive"].item(), floor, abs_tol=1e-6)
    assert metrics["v2t_acc"] == 1.0 and metrics["t2v_acc"] == 1.0
    # Told a wrong order, it pairs parts with the wrong transcripts: far above the floor.
    assert obj(m, {**batch, "order": torch.arange(4).repeat(2, 1)})[0]["contrastive"].item() > 1.0


def test_frame_contrastive_uses_each_parts_own_mask_rows(make_model, make_batch):
    m = make_model().eval()
    batch = make_batch(order=torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))
    obj = build_objective(ObjectiveConfig(contrastive="frame", sort_weight=0.0), m, 10)
    with torch.no_grad():
        masked = obj(m, batch)[0]["contrastive"]
        keep = batch["keep"].clone()
        keep[:, 3] = (keep[:, 3] + 1) % 4  # other patches in slot 3 (part 3), the same elsewhere
        other = obj(m, {**batch, "keep": keep})[0]["contrastive"]
    assert not torch.isclose(masked, other)  # the last part sees the kept patches of its own slot


def test_caption_batches_train_the_clip_contrastive_only(make_model, make_batch):
    m = make_model().eval()
    obj = build_objective(ObjectiveConfig(contrastive="frame"), m, 10)
    batch = make_batch(caption=True)
    with torch.no_grad():
        losses, _ = obj(m, batch)
        out = m(batch["frames"], batch["texts"], batch["keep"], sort=False)
    assert set(losses) == {"contrastive"}
    assert torch.allclose(losses["contrastive"], info_nce(out["video_embed"], out["text_embed"], 0.05)["loss"])


@pytest.mark.parametrize("output", ["kway", "pairwise", "factorial"])
def test_sort_loss_follows_the_models_output(make_model, make_batch, output):
    m = make_model(output=output).eval()
    obj = build_objective(ObjectiveConfig(sort_weight=2.0), m, 10)
    assert obj.output == output
    batch = make_batch()
    with torch.no_grad():
        losses, metrics = obj(m, batch)
        logits = m(batch["frames"], batch["texts"], batch["keep"])["sort_logits"]
    assert logits.shape[1:] == {"kway": (4, 4), "pairwise": (6,), "factorial": (24,)}[output]
    assert torch.allclose(losses["sort"], 2.0 * sort_loss(logits, batch["order"], output))
    assert 0.0 <= metrics["sort_segment_acc"] <= 1.0 and 0.0 <= metrics["sort_order_acc"] <= 1.0


@pytest.mark.parametrize("sort_head,output,contrastive", [
    ("pointer", "kway", "clip"), ("transformer", "pairwise", "clip"), ("pointer", "factorial", "clip"),
    ("pointer", "pairwise", "clip"), ("transformer", "factorial", "clip"), ("pointer", "kway", "frame"),
])
def test_forward_backward_reaches_video_encoder_and_sort_head(make_model, make_batch, sort_head, output, contrastive):
    m = make_model(sort_head=sort_head, output=output).train()
    obj = build_objective(ObjectiveConfig(contrastive=contrastive), m, 10)
    torch.manual_seed(0)
    losses, metrics = obj(m, make_batch())
    assert set(losses) == {"contrastive", "sort"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert m.video_model.cls_token.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.pred_model.parameters() if p.requires_grad)
    assert any(p.grad.abs().sum() > 0 for p in m.text_model.parameters() if p.grad is not None)  # from L_base


# ---------------------------------------------------------------------------------------- sort_head.video: parts
def test_join_parts_puts_each_parts_slots_in_time_order(make_model, make_batch):
    m = make_model().eval()
    frames, keep = make_batch()["frames"], make_batch()["keep"]  # [2, 8, ...]: 4 slots of 2 kept tokens
    parts = m.encode_parts(frames, keep, 4)  # 8 rows of 1 slot
    joined = parts.join_parts(4)
    assert (joined.num_slots, joined.tokens_per_slot) == (4, 2) and joined.tokens.shape[:2] == (2, 1 + 4 * 2)
    for b in range(2):
        assert torch.equal(joined.cls[b], parts.cls[4 * b:4 * b + 4].mean(0))
        for k in range(4):
            assert torch.equal(joined.per_slot()[b, k], parts.per_slot()[4 * b + k, 0])
    with pytest.raises(ValueError):
        parts.join_parts(3)


def test_sort_video_parts_sees_each_part_alone(make_model, make_batch):
    m = make_model()
    m.config.sort_head.video = "parts"
    m.eval()
    batch = make_batch()
    frames = batch["frames"].clone()
    before = m.sort_video(frames).per_slot()  # [B, 4, N, W]
    frames[0, 4:6] = torch.randn(2, 3, 16, 16)  # new content in part 2 of clip 0
    after = m.sort_video(frames).per_slot()
    changed = (after - before).abs().amax((-1, -2)) > 1e-5  # [B, 4]
    assert changed.tolist() == [[False, False, True, False], [False, False, False, False]]
    m.config.sort_head.video = "clip"
    whole = m.sort_video(frames).per_slot()  # the clip's own encoding: slot 2's new content reaches every slot
    assert ((whole - m.sort_video(batch["frames"]).per_slot()).abs().amax((-1, -2)) > 1e-5)[0].all()


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_parts_sort_input_gives_the_losses_of_the_two_forward_path_in_one_video_forward(make_model, make_batch, stop_gradient):
    """With ``sort_head.video: parts`` and the frame-transcript contrastive, the objective encodes the parts once
    and gets exactly the losses of running the model's own forward (which encodes them again for the head)."""
    m = make_model()
    m.config.sort_head.video = "parts"
    m.eval()
    batch = make_batch()
    del batch["keep"]  # every patch, as _direct_frame_loss encodes the parts
    calls = []
    hook = m.video_model.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    obj = build_objective(ObjectiveConfig(contrastive="frame", sort_weight=2.0, stop_gradient=stop_gradient), m, 10)
    with torch.no_grad():
        losses, metrics = obj(m, batch)
        assert calls == [2 * 4]  # one forward, over the B*K parts
        out = m(batch["frames"], batch["texts"], stop_gradient=stop_gradient)
        expected_sort = 2.0 * sort_loss(out["sort_logits"], batch["order"], "kway")
    hook.remove()
    assert math.isclose(losses["sort"].item(), expected_sort.item(), rel_tol=1e-5)
    with torch.no_grad():
        direct = _direct_frame_loss(m, batch, 0.05)
    assert math.isclose(losses["contrastive"].item(), direct, rel_tol=1e-5)
    assert {"sort_segment_acc", "v2t_acc"} <= set(metrics)


def test_parts_sort_input_needs_whole_slots_per_part(tmp_path):
    from tvts.config import ModelConfig, validate_model
    from tvts.errors import ConfigError

    cfg = ModelConfig()
    cfg.sort_head.video = "parts"
    cfg.num_segments, cfg.video.num_frames, cfg.video.tubelet = 4, 12, 2  # parts of 3 frames: not whole cubes
    with pytest.raises(ConfigError, match="sort_head.video"):
        validate_model(cfg)
    cfg.video.num_frames = 16
    validate_model(cfg)
    cfg.sort_head.video = "frames"
    with pytest.raises(ConfigError, match="sort-head video input"):
        validate_model(cfg)
