"""benchmarks/readout_probe.py: the read-outs of an encoder, and the assignment statistics of a grouping block."""

from __future__ import annotations

import pytest
import torch

from tvts.config import JointViTConfig
from tvts.models.grouping import GroupingBlock
from tvts.models.vit import JointSpaceTimeViT


@pytest.fixture(scope="module")
def probe(load_benchmark):
    return load_benchmark("readout_probe")


def test_flat_logits_give_uniform_weights_and_gumbel_picks_the_argmax_at_chance(probe):
    torch.manual_seed(0)
    blk = GroupingBlock(16)
    with torch.no_grad():
        blk.q.weight.zero_()
        blk.q.bias.zero_()  # every group the same query: flat logits
    s = probe.assignment_stats(blk, torch.randn(4, 8, 16), torch.randn(4, 500, 16), torch.Generator().manual_seed(0))
    assert s["logit_std"] == pytest.approx(0.0, abs=1e-6) and s["max_weight"] == pytest.approx(1 / 8)
    # ties break to group 0 in the argmax: a Gumbel sample lands there 1/8 of the time (2,000 tokens: +-0.03)
    assert abs(s["gumbel_is_argmax"] - 1 / 8) < 0.03


def test_sharp_logits_make_the_gumbel_sample_the_argmax(probe):
    torch.manual_seed(0)
    blk = GroupingBlock(16)
    with torch.no_grad():
        blk.q.weight.mul_(1000.0)
    s = probe.assignment_stats(blk, torch.randn(4, 8, 16), torch.randn(4, 500, 16), torch.Generator().manual_seed(0))
    assert s["max_weight"] > 0.95 and s["gumbel_is_argmax"] > 0.95


def test_readouts_are_the_pooled_tokens_of_one_encoding(probe):
    class Model(torch.nn.Module):  # the two methods readouts() uses, as VideoBert has them
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.video_model = JointSpaceTimeViT(JointViTConfig(img_size=16, num_frames=4, tubelet=2, patch=8, width=32,
                                                                depth=2, heads=2, max_slots=4, num_groups=3, group_layers=[2]))
            self.vid_proj = torch.nn.Linear(32, 8)

        def video_embedding(self, video):
            return self.vid_proj(video.cls)

    model = Model().eval()
    frames = torch.randn(2, 4, 3, 16, 16)
    r = probe.readouts(model, frames)
    video = model.video_model(frames)
    assert set(r) == {"embedding", "cls", "token_mean", "groups"}
    assert torch.allclose(r["token_mean"], model.vid_proj(video.tokens[:, 1:].mean(1)))
    assert r["groups"].shape == (2, 3 * 32) and torch.allclose(r["cls"], r["embedding"])
