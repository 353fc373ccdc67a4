import torch

from tvts.config import JointViTConfig
from tvts.models.vit import JointSpaceTimeViT

CFG = JointViTConfig(img_size=16, num_frames=4, tubelet=2, patch=8, width=32, depth=2, heads=2, max_slots=4)


def _model():
    torch.manual_seed(0)
    m = JointSpaceTimeViT(CFG).eval()
    # Non-zero temporal embedding, so that the tests also exercise it.
    torch.nn.init.normal_(m.temporal_embed, std=0.5)
    return m


def test_shapes_and_token_layout():
    m = _model()
    x = torch.randn(3, 4, 3, 16, 16)
    out = m(x)
    assert out.tokens.shape == (3, 1 + 2 * 4, 32)  # [CLS] + 2 slots x 4 patches
    assert (out.num_slots, out.tokens_per_slot) == (2, 4)
    assert out.per_slot().shape == (3, 2, 4, 32)


def test_dropped_token_cannot_change_the_output():
    m = _model()
    x = torch.randn(1, 4, 3, 16, 16)
    keep = torch.tensor([[[0, 3], [1, 2]]])  # slot 0 keeps patches 0,3; slot 1 keeps 1,2
    ref = m(x, keep).tokens
    y = x.clone()
    # Patch 1 (top-right 8x8) of slot 0 = frames 0-1 is dropped: change it completely.
    y[:, 0:2, :, 0:8, 8:16] = torch.randn(1, 2, 3, 8, 8) * 10
    assert torch.allclose(m(y, keep).tokens, ref, atol=1e-6)
    # ... while changing a kept patch (patch 0 of slot 0) does change the output.
    z = x.clone()
    z[:, 0:2, :, 0:8, 0:8] += 1.0
    assert not torch.allclose(m(z, keep).tokens, ref, atol=1e-4)


def test_keeping_everything_equals_no_mask():
    m = _model()
    x = torch.randn(2, 4, 3, 16, 16)
    keep = torch.arange(4).expand(2, 2, 4)
    assert torch.allclose(m(x, keep).tokens, m(x).tokens, atol=1e-6)


def test_time_order_matters_through_temporal_embedding():
    m = _model()
    x = torch.randn(1, 4, 3, 16, 16)
    flipped = x.flip(1)
    assert not torch.allclose(m(x).cls, m(flipped).cls, atol=1e-4)
    # With a zero temporal embedding, joint attention is permutation invariant over the time slots
    # (swapping whole cubes), which shows the temporal embedding is what carries the order.
    with torch.no_grad():
        m.temporal_embed.zero_()
    swapped = torch.cat([x[:, 2:4], x[:, 0:2]], dim=1)
    assert torch.allclose(m(x).cls, m(swapped).cls, atol=1e-5)


def test_uses_sdpa_attention():
    m = _model()
    assert all(blk.attn.fused_attn for blk in m.blocks)
