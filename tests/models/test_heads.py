import math

import pytest
import torch

from tvts.models.heads import PointerSortHead, SortTransformer
from tvts.models.vit import VideoTokens
from tvts.objectives.sorting import pairs


@pytest.mark.parametrize("head_cls", [SortTransformer, PointerSortHead])
def test_sort_heads_are_permutation_equivariant_over_transcripts(head_cls):
    torch.manual_seed(0)
    head = head_cls(4, 32, 2, 2, 4.0, video_width=24, text_width=20).eval()
    video = VideoTokens(torch.randn(2, 1 + 2 * 3, 24), num_slots=2, tokens_per_slot=3)
    texts = torch.randn(2, 4, 20)
    perm = torch.tensor([2, 0, 3, 1])
    a = head(video, texts)
    b = head(video, texts[:, perm])
    assert a.shape == (2, 4, 4)
    # Shuffling the transcripts shuffles the rows of the prediction, nothing else: the head cannot
    # read the order from the input positions.
    assert torch.allclose(b, a[:, perm], atol=1e-5)


@pytest.mark.parametrize("head_cls", [SortTransformer, PointerSortHead])
def test_text_only_path_ignores_video(head_cls):
    torch.manual_seed(0)
    head = head_cls(4, 32, 2, 2, 4.0, video_width=24, text_width=20).eval()
    texts = torch.randn(1, 4, 20)
    v1 = VideoTokens(torch.randn(1, 7, 24), 2, 3)
    v2 = VideoTokens(torch.randn(1, 7, 24), 2, 3)
    assert head(None, texts).shape == (1, 4, 4)
    assert not torch.allclose(head(v1, texts), head(v2, texts), atol=1e-5)  # the video matters when given


def test_published_layout_has_no_extra_keys_when_widths_agree():
    head = SortTransformer(4, 64, 2, 4, 4.0, video_width=64, text_width=64)
    keys = set(head.state_dict())
    assert not any(k.startswith(("video_in", "text_in")) for k in keys)
    assert {"type_embed", "norm.weight", "head.weight", "blocks.1.mlp.fc2.bias"} <= keys
    assert len(keys) == 29  # as the published pred_model


# ---------------------------------------------------------------------------------------- Table 3 outputs
SHAPES = {"kway": (2, 4, 4), "pairwise": (2, 6), "factorial": (2, 24)}


def _head(head_cls, output, seed=0):
    torch.manual_seed(seed)
    return head_cls(4, 32, 2, 2, 4.0, video_width=24, text_width=20, output=output).eval()


@pytest.mark.parametrize("output", ["kway", "pairwise", "factorial"])
@pytest.mark.parametrize("head_cls", [SortTransformer, PointerSortHead])
def test_output_shapes_with_and_without_video(head_cls, output):
    head = _head(head_cls, output)
    torch.manual_seed(1)
    video = VideoTokens(torch.randn(2, 1 + 2 * 3, 24), num_slots=2, tokens_per_slot=3)
    texts = torch.randn(2, 4, 20)
    assert head(video, texts).shape == SHAPES[output]
    assert head(None, texts).shape == SHAPES[output]
    other = VideoTokens(torch.randn(2, 1 + 2 * 3, 24), num_slots=2, tokens_per_slot=3)
    assert not torch.allclose(head(video, texts), head(other, texts), atol=1e-5)


def test_unknown_output_is_refused():
    with pytest.raises(ValueError, match="unknown sort output"):
        SortTransformer(4, 32, 2, 2, 4.0, video_width=24, text_width=20, output="ranking")


def _trunk_states(head, video, texts):
    """The K transcript states ``[B, K, d]`` the output layer sees (captured with a hook on ``norm``)."""
    seen = {}
    hook = head.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    out = head(video, texts)
    hook.remove()
    return seen["h"][:, -texts.shape[1]:], out


@pytest.mark.parametrize("head_cls", [SortTransformer, PointerSortHead])
def test_pairwise_and_factorial_layers_on_the_transcript_states(head_cls):
    torch.manual_seed(2)
    video = VideoTokens(torch.randn(2, 7, 24), 2, 3)
    texts = torch.randn(2, 4, 20)
    head = _head(head_cls, "pairwise")
    h, out = _trunk_states(head, video, texts)
    for p, (i, j) in enumerate(pairs(4).tolist()):  # pair p of the fixed order: "transcript i before j"
        want = head.head.proj(torch.cat([h[:, i], h[:, j]], -1)).squeeze(-1)
        assert torch.allclose(out[:, p], want, atol=1e-6)
    head = _head(head_cls, "factorial")
    h, out = _trunk_states(head, video, texts)
    assert torch.allclose(out, head.head.proj(torch.cat([h[:, i] for i in range(4)], -1)), atol=1e-6)
    assert head.head.proj.out_features == math.factorial(4)
    assert not any(k.startswith(("query", "key")) for k in head.state_dict())  # no unused K-way layers


def test_kway_heads_keep_their_parameter_names_and_forward():
    # The K-way layouts are those of the published pred_model (transformer) and of earlier tvts checkpoints
    # (pointer): same names, and the same computation from them.
    t = _head(SortTransformer, "kway")
    assert {k for k in t.state_dict() if not k.startswith("blocks.")} == {
        "video_in.weight", "video_in.bias", "text_in.weight", "text_in.bias", "type_embed", "norm.weight", "norm.bias",
        "head.weight", "head.bias"}
    p = _head(PointerSortHead, "kway")
    assert {k for k in p.state_dict() if not k.startswith("blocks.")} == {
        "video_in.weight", "video_in.bias", "text_in.weight", "text_in.bias", "slot_embed", "type_embed", "norm.weight",
        "norm.bias", "query.weight", "query.bias", "key.weight", "key.bias"}
    torch.manual_seed(3)
    video = VideoTokens(torch.randn(2, 7, 24), 2, 3)
    texts = torch.randn(2, 4, 20)
    h, out = _trunk_states(t, video, texts)
    assert torch.allclose(out, t.head(h), atol=1e-6)
    seen = {}
    hook = p.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
    out = p(video, texts)
    hook.remove()
    x = seen["x"]  # [B, 1 + K + K, d]: cls, slots, transcripts
    want = p.query(x[:, -4:]) @ p.key(x[:, 1:5]).transpose(1, 2) / math.sqrt(32)
    assert torch.allclose(out, want, atol=1e-6)
    # A state dict written by a K-way head loads strictly into a fresh K-way head and reproduces it.
    fresh = PointerSortHead(4, 32, 2, 2, 4.0, video_width=24, text_width=20).eval()
    fresh.load_state_dict(p.state_dict(), strict=True)
    assert torch.equal(fresh(video, texts), out)
