"""S-ViLM grouping: the hard Gumbel assignment, gradients, and the group tokens inside the joint ViT."""

import pytest
import torch

from tvts.config import JointViTConfig
from tvts.models.grouping import GroupingBlock
from tvts.models.vit import JointSpaceTimeViT

# 16x16 frames, patch 8: 4 patches per slot; 4 frames, tubelet 2: 2 slots.
BASE = dict(img_size=16, num_frames=4, tubelet=2, patch=8, width=32, depth=3, heads=2, max_slots=4)
GROUPED = dict(BASE, num_groups=5, group_layers=[2, 3])


def _encoder(seed=0, **cfg):
    torch.manual_seed(seed)
    return JointSpaceTimeViT(JointViTConfig(**cfg))


def test_assignment_is_one_hot_and_gradients_reach_groups_tokens_and_the_assignment():
    torch.manual_seed(0)
    blk = GroupingBlock(16, tau=1.0).train()
    groups = torch.randn(2, 4, 16, requires_grad=True)
    tokens = torch.randn(2, 10, 16, requires_grad=True)
    new, a = blk(groups, tokens)
    assert new.shape == (2, 4, 16) and a.shape == (2, 10, 4)
    # Exactly one-hot in the forward pass: every video token belongs to exactly one group.
    assert set(a.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.detach().sum(-1), torch.ones(2, 10))
    (new * torch.randn_like(new)).sum().backward()
    assert groups.grad.abs().sum() > 0 and tokens.grad.abs().sum() > 0
    # q and k only act through the assignment: they get a gradient only if it is straight-through.
    assert blk.q.weight.grad.abs().sum() > 0 and blk.k.weight.grad.abs().sum() > 0


def test_groups_are_the_mean_of_their_assigned_values():
    torch.manual_seed(0)
    blk = GroupingBlock(8).eval()
    groups, tokens = torch.randn(1, 3, 8), torch.randn(1, 7, 8)
    new, a = blk(groups, tokens)
    v = blk.v(blk.norm_tokens(tokens))[0]
    expected = groups.clone()
    for m in range(3):
        members = a[0, :, m] == 1
        pooled = v[members].mean(0) if members.any() else torch.zeros(8)
        expected[0, m] = groups[0, m] + blk.proj(pooled)
    expected = expected + blk.mlp(blk.norm_mlp(expected))
    assert torch.allclose(new, expected, atol=1e-5)


def test_eval_assignment_is_deterministic_argmax_and_training_samples_gumbel_noise():
    torch.manual_seed(0)
    blk = GroupingBlock(16).eval()
    groups, tokens = torch.randn(2, 6, 16), torch.randn(2, 40, 16)
    a1, a2 = blk.assign(groups, tokens), blk.assign(groups, tokens)
    assert torch.equal(a1, a2)
    logits = blk.k(blk.norm_tokens(tokens)) @ blk.q(blk.norm_groups(groups)).transpose(1, 2)
    assert torch.equal(a1.argmax(-1), logits.argmax(-1))
    blk.train()
    torch.manual_seed(1)
    t1 = blk.assign(groups, tokens)
    torch.manual_seed(1)
    assert torch.equal(t1, blk.assign(groups, tokens))  # the noise comes from the (seeded) global RNG
    assert not torch.equal(t1.argmax(-1), a1.argmax(-1))  # ... and changes assignments


def test_argmax_assignment_trains_on_the_noise_free_one_hot_with_straight_through_gradients():
    torch.manual_seed(0)
    blk = GroupingBlock(16, assign="argmax").eval()
    groups, tokens = torch.randn(2, 6, 16), torch.randn(2, 40, 16, requires_grad=True)
    evaluated = blk.assign(groups, tokens)
    blk.train()
    trained = blk.assign(groups, tokens)
    assert torch.equal(trained, evaluated)  # no noise in training: the evaluation's assignment
    assert set(trained.detach().unique().tolist()) <= {0.0, 1.0}
    blk(groups, tokens)[0].square().sum().backward()
    assert blk.q.weight.grad.abs().sum() > 0 and blk.k.weight.grad.abs().sum() > 0


def test_soft_assignment_is_the_softmax_and_groups_its_weighted_mean():
    torch.manual_seed(0)
    blk = GroupingBlock(8, tau=0.5, assign="soft").train()
    groups, tokens = torch.randn(1, 3, 8), torch.randn(1, 7, 8)
    new, a = blk(groups, tokens)
    logits = blk.k(blk.norm_tokens(tokens)) @ blk.q(blk.norm_groups(groups)).transpose(1, 2) * blk.scale
    assert torch.allclose(a, (logits / 0.5).softmax(-1), atol=1e-6)
    assert torch.equal(blk.eval().assign(groups, tokens), a)  # the same weights in evaluation
    v = blk.v(blk.norm_tokens(tokens))[0]
    w = a[0].detach()
    expected = groups + blk.proj((w.T @ v) / w.sum(0).clamp(min=1)[:, None])
    expected = expected + blk.mlp(blk.norm_mlp(expected))
    assert torch.allclose(new, expected, atol=1e-5)


def test_encoder_builds_its_blocks_with_the_configured_assignment():
    enc = _encoder(**GROUPED, group_assign="soft")
    assert [b.assign_mode for b in enc.grouping] == ["soft", "soft"]


def test_empty_groups_do_not_blow_up_gradients():
    """More groups than tokens: some groups receive nothing; their gradients must stay bounded."""
    torch.manual_seed(0)
    blk = GroupingBlock(16).train()
    groups = torch.randn(1, 8, 16, requires_grad=True)
    tokens = torch.randn(1, 2, 16, requires_grad=True)
    new, a = blk(groups, tokens)
    assert (a.sum(1) == 0).any()
    new.square().sum().backward()
    grads = [groups.grad, tokens.grad] + [p.grad for p in blk.parameters()]
    assert max(g.abs().max().item() for g in grads) < 1e3


def test_encoder_returns_normed_group_tokens_with_stable_names():
    m = _encoder(**GROUPED).eval()
    out = m(torch.randn(3, 4, 3, 16, 16))
    assert out.groups.shape == (3, 5, 32)
    assert out.tokens.shape == (3, 1 + 2 * 4, 32)
    # after group_norm (unit-scale LayerNorm at init): zero mean, unit variance per token
    assert torch.allclose(out.groups.mean(-1), torch.zeros(3, 5), atol=1e-5)
    names = set(m.state_dict())
    assert {"group_token", "grouping.0.q.weight", "grouping.1.mlp.fc2.bias", "group_norm.weight"} <= names
    assert m.group_token.shape == (1, 5, 32)
    assert _encoder(**BASE)(torch.randn(1, 4, 3, 16, 16)).groups is None


def test_grouping_blocks_read_the_output_of_their_layer():
    m = _encoder(**dict(GROUPED, group_layers=[3, 1])).eval()  # grouping.0 after layer 3, grouping.1 after layer 1
    seen, layer_out = {}, {}
    for i, blk in enumerate(m.blocks):
        blk.register_forward_hook(lambda mod, inp, out, i=i: layer_out.__setitem__(i + 1, out))
    for j, blk in enumerate(m.grouping):
        blk.register_forward_hook(lambda mod, inp, out, j=j: seen.__setitem__(j, inp))
    m(torch.randn(2, 4, 3, 16, 16))
    assert torch.equal(seen[0][1], layer_out[3][:, 1:]) and torch.equal(seen[1][1], layer_out[1][:, 1:])
    # grouping.1 (layer 1) runs first, on the initial group tokens; grouping.0 gets its output
    assert torch.equal(seen[1][0], m.group_token.expand(2, -1, -1))
    assert not torch.equal(seen[0][0], seen[1][0])


def test_group_tokens_depend_only_on_kept_tokens():
    m = _encoder(**GROUPED).eval()
    x = torch.randn(1, 4, 3, 16, 16)
    keep = torch.tensor([[[0, 3], [1, 2]]])  # slot 0 keeps patches 0 and 3
    ref = m(x, keep).groups
    y = x.clone()
    y[:, 0:2, :, 0:8, 8:16] = torch.randn(1, 2, 3, 8, 8) * 10  # patch 1 of slot 0: dropped
    assert torch.equal(m(y, keep).groups, ref)
    z = x.clone()
    z[:, 0:2, :, 0:8, 0:8] += 1.0  # patch 0 of slot 0: kept
    assert not torch.allclose(m(z, keep).groups, ref, atol=1e-4)


@pytest.mark.parametrize("train", [False, True])
def test_grouping_leaves_the_video_tokens_unchanged(train):
    grouped, plain = _encoder(**GROUPED), _encoder(**BASE)
    # Built last, the grouping parameters leave the ViT's random initialisation as it was.
    assert all(torch.equal(v, grouped.state_dict()[k]) for k, v in plain.state_dict().items())
    # And any ViT weights give the same tokens with and without grouping (a state-dict copy).
    torch.manual_seed(5)
    for p in grouped.parameters():
        p.data.normal_(0, 0.05)
    extra = {k for k in grouped.state_dict() if k.startswith(("group_token", "grouping.", "group_norm."))}
    plain.load_state_dict({k: v for k, v in grouped.state_dict().items() if k not in extra}, strict=True)
    grouped.train(train), plain.train(train)
    x, keep = torch.randn(2, 4, 3, 16, 16), torch.tensor([[[0, 3], [1, 2]], [[1, 2], [0, 3]]])
    assert torch.equal(grouped(x, keep).tokens, plain(x, keep).tokens)


def test_group_tokens_in_self_attention_are_read_by_the_video_tokens_and_updated_by_every_layer():
    """``group_self_attention``: the group tokens enter with the video tokens (S-ViLM's "fed into the video
    encoder" together with them); every layer's attention mixes them both ways, and each grouping block still
    reads only the video tokens of its layer's output and writes the group tokens back into the sequence."""
    cfg = dict(GROUPED, group_layers=[2], group_self_attention=True)
    m = _encoder(**cfg).eval()
    x = torch.randn(2, 4, 3, 16, 16)
    seen, layer_in, layer_out = {}, {}, {}
    for i, blk in enumerate(m.blocks):
        blk.register_forward_pre_hook(lambda mod, inp, i=i: layer_in.__setitem__(i + 1, inp[0]))
        blk.register_forward_hook(lambda mod, inp, out, i=i: layer_out.__setitem__(i + 1, out))
    m.grouping[0].register_forward_hook(lambda mod, inp, out: seen.update(inp=inp, out=out[0]))
    out = m(x)
    assert out.tokens.shape == (2, 1 + 2 * 4, 32) and out.groups.shape == (2, 5, 32)
    assert layer_in[1].shape == (2, 1 + 2 * 4 + 5, 32)
    assert torch.equal(layer_in[1][:, -5:], m.group_token.expand(2, -1, -1))  # the group tokens enter at the input
    assert torch.equal(seen["inp"][0], layer_out[2][:, -5:])  # block 2's group tokens go into the grouping block
    assert torch.equal(seen["inp"][1], layer_out[2][:, 1:-5])  # which reads the video tokens only
    assert torch.equal(layer_in[3][:, -5:], seen["out"])  # and its output goes on into layer 3
    assert torch.equal(layer_in[3][:, :-5], layer_out[2][:, :-5])
    # the final group tokens are layer 3's (normed), the video tokens its others
    assert torch.allclose(out.groups, m.group_norm(layer_out[3][:, -5:]))
    assert torch.allclose(out.tokens, m.norm(layer_out[3][:, :-5]))
    # the video tokens now read the group tokens: another group_token changes the [CLS]
    with torch.no_grad():
        m.group_token.add_(torch.randn_like(m.group_token))  # (a constant shift would vanish in the LayerNorms)
    assert not torch.allclose(m(x).tokens[:, 0], out.tokens[:, 0], atol=1e-4)
    # masking still drops tokens: a dropped patch changes nothing
    keep = torch.tensor([[[0, 3], [1, 2]]] * 2)
    ref = m(x, keep)
    y = x.clone()
    y[:, 0:2, :, 0:8, 8:16] = torch.randn(2, 2, 3, 8, 8) * 10  # patch 1 of slot 0: dropped
    got = m(y, keep)
    assert torch.equal(got.groups, ref.groups) and torch.equal(got.tokens, ref.tokens)
