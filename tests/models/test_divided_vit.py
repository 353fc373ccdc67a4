"""The TVTSv2 divided space-time video encoder: attention pattern, initialisation, wiring, masking."""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from tvts.config import DividedViTConfig
from tvts.data.masking import tube_mask
from tvts.models.divided_vit import DividedAttention, DividedBlock, DividedSpaceTimeViT

CFG = dict(arch="divided", img_size=16, num_frames=4, tubelet=1, patch=8, width=32, depth=2, heads=2, max_slots=4,
           mask_ratio=0.5, mask_kind="tube", act="quick_gelu")


def _model(**kw) -> DividedSpaceTimeViT:
    """Random weights with a non-zero temporal branch and temporal embedding (as after training)."""
    torch.manual_seed(0)
    m = DividedSpaceTimeViT(DividedViTConfig(**{**CFG, **kw}), embed_dim=16).eval()
    with torch.no_grad():
        for blk in m.transformer.resblocks:
            torch.nn.init.normal_(blk.timeattn.qkv.weight, std=0.2)
            torch.nn.init.normal_(blk.timeattn.proj.weight, std=0.2)
        torch.nn.init.normal_(m.temporal_embedding, std=0.5)
    return m


@pytest.mark.parametrize("axis", ["space", "time"])
def test_attention_groups(axis):
    """Which input tokens each output token depends on: a patch sees the [CLS] and its frame (space)
    or its spatial position in every frame (time); the [CLS] sees everything."""
    torch.manual_seed(0)
    attn = DividedAttention(8, 2, axis)
    t, n = 3, 4
    x = torch.randn(1, 1 + t * n, 8, requires_grad=True)

    def sources(index: int) -> set[int]:
        x.grad = None
        attn(x, t)[0, index].sum().backward()
        return set(torch.nonzero(x.grad[0].abs().sum(-1)).flatten().tolist())

    assert sources(0) == set(range(1 + t * n))
    for frame in range(t):
        for pos in range(n):
            tok = 1 + frame * n + pos
            same = [1 + frame * n + j for j in range(n)] if axis == "space" else [1 + f * n + pos for f in range(t)]
            assert sources(tok) == {0, *same}, (frame, pos)


def test_attention_runs_through_sdpa(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    _model()(torch.randn(1, 4, 3, 16, 16))
    assert len(calls) == 2 * 2 * 2  # 2 blocks x (space, time) x ([CLS] query, grouped patch queries)


def test_temporal_attention_starts_at_exactly_zero_output():
    torch.manual_seed(0)
    blk = DividedBlock(32, 2, 4.0, "quick_gelu", "published")
    blk.reset_temporal()
    x = torch.randn(2, 1 + 3 * 4, 32)
    assert torch.count_nonzero(blk.timeattn(blk.ln_3(x), 3)) == 0
    fresh = DividedSpaceTimeViT(DividedViTConfig(**CFG), 16)
    assert torch.count_nonzero(fresh.temporal_embedding) == 0
    for b in fresh.transformer.resblocks:
        assert torch.count_nonzero(b.timeattn.qkv.weight) == 0 and torch.all(b.timeattn.proj.weight == 1)


@pytest.mark.parametrize("wiring", ["published", "residual"])
def test_block_wiring(wiring):
    """With the spatial attention and the MLP silenced, the published block passes x through unchanged
    (the temporal output only feeds the spatial attention); the residual wiring adds it."""
    torch.manual_seed(0)
    blk = DividedBlock(32, 2, 4.0, "quick_gelu", wiring)
    torch.nn.init.normal_(blk.timeattn.qkv.weight, std=0.2)
    with torch.no_grad():
        for p in (blk.attn.proj.weight, blk.attn.proj.bias, blk.mlp.c_proj.weight, blk.mlp.c_proj.bias):
            p.zero_()
    x = torch.randn(2, 1 + 3 * 4, 32)
    out = blk(x, 3)
    time_out = blk.timeattn(blk.ln_3(x), 3)
    assert time_out.abs().max() > 1e-3
    expected = x if wiring == "published" else x + time_out
    assert torch.allclose(out, expected, atol=1e-6)


def test_dropped_patch_cannot_influence_the_output():
    m = _model()
    x = torch.randn(1, 4, 3, 16, 16)
    keep = tube_mask(4, 4, 0.5, np.random.default_rng(3))[None]  # [1, T, 2], the same row in every frame
    assert all(torch.equal(keep[0, i], keep[0, 0]) for i in range(4))
    dropped = sorted(set(range(4)) - set(keep[0, 0].tolist()))
    ref = m(x, keep).tokens
    assert ref.shape == (1, 1 + 4 * 2, 16)

    def region(pos):  # pixel slice of patch `pos` on the 2x2 grid of 8x8 patches
        r, c = divmod(pos, 2)
        return slice(8 * r, 8 * r + 8), slice(8 * c, 8 * c + 8)

    y = x.clone()
    for pos in dropped:  # rewrite every dropped patch in every frame
        rows, cols = region(pos)
        y[:, :, :, rows, cols] = torch.randn(1, 4, 3, 8, 8) * 10
    assert torch.allclose(m(y, keep).tokens, ref, atol=1e-6)
    z = x.clone()
    rows, cols = region(int(keep[0, 0, 0]))
    z[:, 2, :, rows, cols] += 1.0  # a kept patch of one frame
    assert not torch.allclose(m(z, keep).tokens, ref, atol=1e-4)


def test_keeping_everything_equals_no_mask_and_masks_must_be_tubes():
    m = _model()
    x = torch.randn(2, 4, 3, 16, 16)
    assert torch.allclose(m(x, torch.arange(4).expand(2, 4, 4)).tokens, m(x).tokens, atol=1e-6)
    per_frame = torch.tensor([[[0, 1], [2, 3], [0, 1], [0, 1]]] * 2)  # frame 1 keeps other positions
    with pytest.raises(ValueError, match="tube"):
        m(x, per_frame)
    with pytest.raises(ValueError, match="temporal embedding"):
        m(torch.randn(1, 5, 3, 16, 16))


def test_frame_order_matters():
    m = _model()
    x = torch.randn(1, 4, 3, 16, 16)
    assert not torch.allclose(m(x).cls, m(x.flip(1)).cls, atol=1e-4)


@pytest.mark.parametrize("post_norm", ["all", "cls"])
def test_post_norm_conventions(post_norm):
    m = _model(post_norm=post_norm)
    x = torch.randn(2, 4, 3, 16, 16)
    out = m(x).tokens
    # The video embedding is ln_post([CLS]) @ proj in both conventions; the other tokens are normalised
    # only with 'all'.
    ref = _model(post_norm="all")(x).tokens
    assert torch.allclose(out[:, 0], ref[:, 0], atol=1e-6)
    assert torch.allclose(out[:, 1:], ref[:, 1:], atol=1e-6) == (post_norm == "all")


def test_gradient_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, 4, 3, 16, 16)
    grads = []
    for ckpt in (False, True):
        m = _model(grad_checkpointing=ckpt).train()
        m(x).tokens.square().mean().backward()
        grads.append(m.transformer.resblocks[0].timeattn.qkv.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-7)


def test_bf16_autocast_is_close_to_fp32():
    m = _model()
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x).tokens
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), m(x).tokens, atol=0.1, rtol=0.05)


def test_matches_the_plain_reference_of_the_benchmark():
    """The grouped SDPA attention equals the published formulation (explicit softmax(q k^T) v per group,
    written independently in benchmarks/encoder_throughput.py), with and without a tube mask."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "encoder_throughput.py"
    spec = importlib.util.spec_from_file_location("encoder_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for mask in (0.0, 0.5):
        args = argparse.Namespace(img=32, frames=3, patch=8, width=32, depth=2, heads=4, mask=mask, embed_dim=16,
                                  checkpointing=False, seed=1, batch=2, bf16=False)
        ours, plain = bench.build_pair(args, torch.device("cpu"))
        frames, keep = bench.make_batch(args, torch.device("cpu"))
        assert bench.check_same(ours, plain, frames, keep, args, torch.device("cpu")) < 1e-4
