"""The parts encoder and the video-ordering objectives of TVTS Table 1 (MERLOT-like, VCOP)."""

import itertools
import math

import pytest
import torch
import torch.nn as nn

from tvts.config import ObjectiveConfig
from tvts.models.vit import VideoTokens
from tvts.objectives import build_objective
from tvts.objectives.contrastive import info_nce
from tvts.objectives.sorting import permutation_index
from tvts.objectives.video_order import (MerlotLikeObjective, VCOPObjective, part_embeddings,
                                         shuffle_parts, unshuffle)


# ---------------------------------------------------------------------------------------- parts
@pytest.mark.parametrize("k", [4, 2])  # parts of 1 and of 2 time slots
def test_encode_parts_is_the_encoder_on_each_part_alone(make_model, make_batch, k):
    m = make_model().eval()
    batch = make_batch()
    frames, keep = batch["frames"], batch["keep"]  # 8 frames = 4 slots
    tokens = m.encode_parts(frames, keep, k)
    assert tokens.tokens.shape[0] == 2 * k and tokens.num_slots == 4 // k
    for b in range(2):
        for j in range(k):
            f, s = 8 // k, 4 // k
            alone = m.video_model(frames[b:b + 1, j * f:(j + 1) * f], keep[b:b + 1, j * s:(j + 1) * s])
            assert torch.allclose(tokens.tokens[b * k + j], alone.tokens[0], atol=1e-5)
    emb = part_embeddings(m, frames, keep, k)
    assert emb.shape == (2, k, 16)
    assert torch.allclose(emb[1, k - 1], m.encode_video(frames[1:, 8 - 8 // k:], keep[1:, 4 - 4 // k:])[0], atol=1e-5)


def test_a_part_does_not_see_the_other_parts(make_model, make_batch):
    m = make_model().eval()
    batch = make_batch()
    before = part_embeddings(m, batch["frames"], batch["keep"], 4)
    frames = batch["frames"].clone()
    frames[0, 4:6] = torch.randn(2, 3, 16, 16)  # new content in part 2 of clip 0
    after = part_embeddings(m, frames, batch["keep"], 4)
    changed = (after - before).abs().amax(-1) > 1e-4  # [B, K]
    assert changed.tolist() == [[False, False, True, False], [False, False, False, False]]
    assert torch.allclose(after[~changed], before[~changed], atol=1e-6)
    # Whereas the full clip mixes every part.
    assert not torch.allclose(m.encode_video(frames[:1]), m.encode_video(batch["frames"][:1]), atol=1e-4)


def test_encode_parts_needs_whole_time_slots(make_model, make_batch):
    m = make_model().eval()
    frames = make_batch()["frames"]
    with pytest.raises(ValueError):
        m.encode_parts(frames, None, 3)  # 8 frames in 3 parts
    with pytest.raises(ValueError):
        m.encode_parts(frames, None, 8)  # parts of 1 frame, cubes of 2


def test_shuffle_and_unshuffle_conventions():
    x = torch.arange(4.0).repeat_interleave(2)[None, :, None].repeat(2, 1, 3)  # [2, 8, 3], part k holds k
    perm = torch.tensor([[2, 0, 3, 1], [1, 0, 3, 2]])
    shuffled = shuffle_parts(x, perm)
    assert shuffled[:, ::2, 0].tolist() == perm.float().tolist()  # shuffled part i is original part perm[b, i]
    items = torch.tensor([[[10.0], [11.0], [12.0], [13.0]]]).repeat(2, 1, 1)
    timed = unshuffle(items, perm)
    for b in range(2):
        for i in range(4):
            assert timed[b, perm[b, i], 0] == items[b, i, 0]  # item i lands at its original position
    assert torch.equal(unshuffle(shuffled.reshape(2, 4, 2, 3), perm).reshape(2, 8, 3), x)


# ---------------------------------------------------------------------------------------- label checks
class MeanVideo(nn.Module):
    """Stub video encoder: [CLS] = the mean of the frames in every one of ``width`` channels, then one
    zero token per time slot (``keep`` is ignored)."""

    def __init__(self, width: int, tubelet: int):
        super().__init__()
        self.width, self.tubelet = width, tubelet

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> VideoTokens:
        b, t = frames.shape[:2]
        s = t // self.tubelet
        cls = frames.mean(dim=(1, 2, 3, 4))[:, None, None].expand(b, 1, self.width)
        return VideoTokens(torch.cat([cls, frames.new_zeros(b, s, self.width)], dim=1), s, 1)


def _position_coded(m, make_batch, b=8):
    """The model with the stub encoder, and a batch whose part k has every pixel equal to k, so a part's
    feature is its original position."""
    m.video_model = MeanVideo(32, 2)
    batch = make_batch(b)
    batch["frames"] = torch.arange(4.0).repeat_interleave(2)[None, :, None, None, None].expand(b, 8, 3, 16, 16).clone()
    return batch


class Recorder(nn.Module):
    """Wraps an oracle ``fn(*inputs) -> logits`` and keeps the inputs it was called with."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.inputs = fn, None

    def forward(self, *inputs):
        self.inputs = inputs
        return self.fn(*inputs)


def test_merlot_like_labels_are_the_original_positions_of_the_shuffled_parts(make_model, make_batch):
    m = make_model().eval()
    batch = _position_coded(m, make_batch)
    obj = MerlotLikeObjective(ObjectiveConfig(name="merlot_like", contrastive_weight=0.0, sort_weight=1.0), m)

    def oracle(parts, transcripts):  # part i → position round(feature): right iff the labels are right
        return 20.0 * nn.functional.one_hot(parts[..., 0].round().long(), 4).float() - 10.0

    obj.head = Recorder(oracle)
    torch.manual_seed(0)
    losses, metrics = obj(m, batch)
    parts, transcripts = obj.head.inputs
    seen = parts[..., 0].round().long()  # [B, K]: original position of each shuffled part
    assert all(sorted(r) == [0, 1, 2, 3] for r in seen.tolist())
    assert (seen != torch.arange(4)).any()  # the parts were shuffled
    assert any(tuple(r) != tuple(torch.tensor(r).argsort().tolist()) for r in seen.tolist())  # not only involutions
    assert losses["sort"].item() < 1e-6 and metrics["sort_order_acc"].item() == 1.0
    # The transcripts reach the head in time order (unshuffled with ``order``).
    timed = [[t for _, t in sorted(zip(batch["order"][s].tolist(), batch["texts"][s]))] for s in range(8)]
    assert torch.allclose(transcripts, m.transcript_features(timed), atol=1e-5)


def test_vcop_label_is_the_index_of_the_applied_permutation(make_model, make_batch):
    m = make_model().eval()
    batch = _position_coded(m, make_batch)
    obj = VCOPObjective(ObjectiveConfig(name="vcop", contrastive_weight=0.0, sort_weight=1.0), m)

    def oracle(parts):  # reads the applied permutation off the parts
        return 40.0 * nn.functional.one_hot(permutation_index(parts[..., 0].round().long()), 24).float() - 20.0

    obj.head = Recorder(oracle)
    torch.manual_seed(1)
    losses, metrics = obj(m, batch)
    assert losses["sort"].item() < 1e-6 and metrics["sort_order_acc"].item() == 1.0
    # and by hand: the class of permutation (2, 0, 3, 1) is its place in the lexicographic list
    assert permutation_index(torch.tensor([[2, 0, 3, 1]])).item() == list(itertools.permutations(range(4))).index((2, 0, 3, 1))


def test_merlot_like_head_is_k_way_over_shuffled_parts(make_model, make_batch):
    m = make_model().eval()
    obj = MerlotLikeObjective(ObjectiveConfig(name="merlot_like"), m).eval()
    torch.manual_seed(0)
    parts, transcripts = torch.randn(3, 4, 32), torch.randn(3, 4, 32)
    logits = obj.head(parts, transcripts)
    assert logits.shape == (3, 4, 4)
    perm = torch.tensor([3, 1, 0, 2])
    # Shuffling the parts shuffles the rows only; the transcripts' positions are known to the head.
    assert torch.allclose(obj.head(parts[:, perm], transcripts), logits[:, perm], atol=1e-5)
    assert not torch.allclose(obj.head(parts, transcripts[:, perm]), logits, atol=1e-3)


def test_vcop_head_layout(make_model):
    m = make_model()
    obj = VCOPObjective(ObjectiveConfig(name="vcop"), m).eval()
    h = obj.head
    assert h.pair_mlp[0].in_features == 2 * 32 and h.classifier.in_features == 6 * h.pair_mlp[0].out_features
    assert h.classifier.out_features == math.factorial(4)
    torch.manual_seed(0)
    parts = torch.randn(2, 4, 32)
    pair_feats = [h.pair_mlp(torch.cat([parts[:, i], parts[:, j]], -1)) for i, j in itertools.combinations(range(4), 2)]
    assert torch.allclose(h(parts), h.classifier(torch.cat(pair_feats, -1)), atol=1e-6)


# ---------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", ["merlot_like", "vcop"])
def test_objective_trains_video_encoder_and_its_own_head(make_model, make_batch, name):
    m = make_model().train()
    obj = build_objective(ObjectiveConfig(name=name), m, 10).train()
    assert obj.state_dict() and all(k.startswith("head.") for k in obj.state_dict())  # owns its head, not the model
    torch.manual_seed(0)
    losses, metrics = obj(m, make_batch())
    assert set(losses) == {"contrastive", "sort"} and all(torch.isfinite(v) for v in losses.values())
    assert {"v2t_acc", "t2v_acc", "sort_segment_acc", "sort_order_acc"} <= set(metrics)
    sum(losses.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.video_model.patch_embed.parameters())
    assert all(p.grad is None for p in m.pred_model.parameters())  # the TVTS sort head is not used


@pytest.mark.parametrize("name", ["merlot_like", "vcop"])
def test_ordering_loss_alone_reaches_the_video_encoder(make_model, make_batch, name):
    m = make_model().train()
    obj = build_objective(ObjectiveConfig(name=name, contrastive_weight=0.0), m, 10)
    torch.manual_seed(0)
    losses, _ = obj(m, make_batch())
    losses["sort"].backward()
    assert m.video_model.cls_token.grad.abs().sum() > 0
    text = [p.grad for p in m.text_model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert not text  # stop-gradient (MERLOT-like), no text at all (VCOP)


def test_merlot_like_without_stop_gradient_trains_the_text_encoder(make_model, make_batch):
    m = make_model().train()
    obj = build_objective(ObjectiveConfig(name="merlot_like", contrastive_weight=0.0, stop_gradient=False), m, 10)
    torch.manual_seed(0)
    obj(m, make_batch())[0]["sort"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.text_model.parameters())


@pytest.mark.parametrize("name", ["merlot_like", "vcop"])
def test_base_loss_is_the_clip_contrastive_and_captions_train_it_alone(make_model, make_batch, name):
    m = make_model().eval()
    obj = build_objective(ObjectiveConfig(name=name, sort_weight=0.5, contrastive_weight=0.7), m, 10).eval()
    batch = make_batch()
    out = m(batch["frames"], batch["texts"], batch["keep"], sort=False)
    torch.manual_seed(0)
    losses, _ = obj(m, batch)
    assert torch.allclose(losses["contrastive"], 0.7 * info_nce(out["video_embed"], out["text_embed"], 0.05)["loss"], atol=1e-5)
    losses, metrics = obj(m, make_batch(caption=True))
    assert set(losses) == {"contrastive"} and "sort_order_acc" not in metrics


def test_shuffles_follow_the_global_seed(make_model, make_batch):
    m = make_model().eval()
    obj = build_objective(ObjectiveConfig(name="merlot_like"), m, 10)
    seen = []
    obj.head.register_forward_pre_hook(lambda mod, inputs: seen.append(inputs[0]))  # the shuffled part features
    batch = make_batch(4)
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        obj(m, batch)
    assert torch.equal(seen[0], seen[1]) and not torch.allclose(seen[0], seen[2])


def test_frame_contrastive_is_refused_for_video_ordering(make_model):
    with pytest.raises(ValueError, match="contrastive"):
        build_objective(ObjectiveConfig(name="vcop", contrastive="frame"), make_model(), 10)

