"""CPD's slow-pathway 3D ResNet: shapes, no temporal downsampling, 2D kernels up to res3 and 3D kernels
in res4-res5 (checked on the weights and on what the network computes)."""

import pytest
import torch
import torch.nn as nn

from tvts.config import ModelConfig, R3DConfig, video_width
from tvts.models.r3d import SlowR3D
from tvts.models.vit import VideoTokens


def _net(depth=18, img_size=64, num_frames=8):
    torch.manual_seed(0)
    cfg = R3DConfig(depth=depth, img_size=img_size, num_frames=num_frames, mask_ratio=0.0)
    return SlowR3D(cfg).eval()


def _frames(b=2, t=8, size=64, seed=1):
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("depth, blocks", [(18, [2, 2, 2, 2]), (34, [3, 4, 6, 3]), (50, [3, 4, 6, 3])])
def test_output_shapes_and_layer_counts(depth, blocks):
    net = _net(depth)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == blocks
    assert not hasattr(net, "fc")  # no classifier
    frames = _frames(t=4)
    with torch.no_grad():
        out = net(frames)
        res5 = net.feature_maps(frames)["res5"]
    c = 2048 if depth == 50 else 512
    assert net.width == c == video_width(ModelConfig(video=net.cfg))
    assert isinstance(out, VideoTokens)
    assert res5.shape == (2, c, 4, 2, 2)  # 64 / 32 = 2 cells a side, all 4 frames kept
    assert out.tokens.shape == (2, 1 + 4 * 2 * 2, c)
    assert (out.num_slots, out.tokens_per_slot) == (4, 4)
    # cls is the global average pool of res5; the cells follow in (t, y, x) order
    assert torch.allclose(out.cls, res5.mean((2, 3, 4)), atol=1e-5)
    assert torch.equal(out.per_slot()[:, 2, 3], res5[:, :, 2, 1, 1])


@pytest.mark.parametrize("t", [1, 3, 8])
def test_time_is_never_downsampled(t):
    net = _net(18, img_size=32)
    with torch.no_grad():
        maps = net.feature_maps(_frames(t=t, size=32))
    assert [m.shape[2] for m in maps.values()] == [t] * 5
    assert [m.shape[-1] for m in maps.values()] == [8, 8, 4, 2, 1]  # stride 4 after conv1, then 2 per stage
    for conv in (m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.MaxPool3d))):
        stride = conv.stride if isinstance(conv.stride, tuple) else (conv.stride,) * 3
        assert stride[0] == 1


@pytest.mark.parametrize("depth", [18, 50])
def test_kernels_are_2d_up_to_res3_and_3d_in_res4_res5(depth):
    net = _net(depth)
    assert tuple(net.stem[0].weight.shape[2:]) == (1, 7, 7)
    assert isinstance(net.stem[3], nn.MaxPool3d)

    def kernels(stage):
        return [tuple(m.weight.shape[2:]) for m in stage.modules() if isinstance(m, nn.Conv3d)]

    for stage in (net.layer1, net.layer2):  # res2, res3
        assert all(k[0] == 1 for k in kernels(stage))
        assert (1, 3, 3) in kernels(stage)
    for stage in (net.layer3, net.layer4):  # res4, res5: every spatial 3x3 is a 3x3x3; the rest are 1x1x1
        ks = kernels(stage)
        assert set(ks) == {(3, 3, 3), (1, 1, 1)}
        assert ks.count((3, 3, 3)) == len(stage) * (2 if depth != 50 else 1)


def test_up_to_res3_frames_are_processed_independently():
    """2D kernels: shuffling the frames shuffles the res3 time slots the same way. res4-res5 mix frames,
    so there the shuffled output is not a shuffle of the original one."""
    net = _net(18)
    frames = _frames()
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    with torch.no_grad():
        maps, shuffled = net.feature_maps(frames), net.feature_maps(frames[:, perm])
    for name in ("conv1", "res2", "res3"):
        assert torch.allclose(shuffled[name], maps[name][:, :, perm], atol=1e-5), name
    for name in ("res4", "res5"):
        assert not torch.allclose(shuffled[name], maps[name][:, :, perm], atol=1e-3), name


def test_temporal_receptive_field_of_res4():
    """Changing frame 0 changes res3 at slot 0 only; res4 of the 18-layer net has 2 blocks of two 3x3x3
    convolutions, so the change reaches slots 0..4 there and no further."""
    net = _net(18)
    frames = _frames()
    changed = frames.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        a, b = net.feature_maps(frames), net.feature_maps(changed)
    diff3 = (a["res3"] - b["res3"]).abs().amax(dim=(0, 1, 3, 4))  # per time slot
    diff4 = (a["res4"] - b["res4"]).abs().amax(dim=(0, 1, 3, 4))
    assert diff3[0] > 1e-3 and torch.all(diff3[1:] == 0)
    assert torch.all(diff4[:5] > 1e-4) and torch.all(diff4[5:] == 0)


def test_keep_must_be_none_and_the_model_encodes_videos(tmp_path):
    from tvts.models import build_model
    from tvts.testing import make_tiny_bert, tiny_model_config

    net = _net(18, img_size=32)
    with pytest.raises(ValueError, match="keep"):
        net(_frames(t=4, size=32), keep=torch.zeros(2, 4, 1, dtype=torch.long))

    torch.manual_seed(0)
    cfg = tiny_model_config(make_tiny_bert(tmp_path / "bert"), sort_head="none", arch="r3d_slow", depth=18,
                            img_size=32, mask_ratio=0.0)
    model = build_model(cfg).eval()
    assert isinstance(model.video_model, SlowR3D)
    frames = _frames(b=3, t=4, size=32)
    emb = model.encode_video(frames)
    assert emb.shape == (3, cfg.embed_dim)
    with torch.no_grad():  # the embedding is vid_proj of the pooled res5 feature
        pooled = model.video_model.feature_maps(frames)["res5"].mean((2, 3, 4))
        assert torch.allclose(emb, model.vid_proj(pooled), atol=1e-5)
    emb.sum().backward()
    assert model.video_model.stem[0].weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    cfg = R3DConfig(depth=18, img_size=32, num_frames=4, mask_ratio=0.0)
    plain = SlowR3D(cfg)
    ckpt = SlowR3D(R3DConfig(**{**cfg.__dict__, "grad_checkpointing": True}))
    ckpt.load_state_dict(plain.state_dict())
    frames = _frames(t=4, size=32)
    for net in (plain, ckpt):
        net.train()
        net(frames).cls.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name
