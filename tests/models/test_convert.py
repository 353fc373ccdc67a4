import pytest
import torch

from tvts.config import JointViTConfig
from tvts.errors import CheckpointError
from tvts.models.convert import init_video_from_mae
from tvts.models.vit import JointSpaceTimeViT


class _Holder(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.video_model = JointSpaceTimeViT(cfg)


CFG = JointViTConfig(img_size=32, num_frames=4, tubelet=2, patch=16, width=32, depth=2, heads=2, max_slots=4)


def _mae_checkpoint(path, cfg=CFG):
    """An ImageMAE-layout checkpoint: {'model': encoder + decoder keys}, 2-D patch embedding."""
    g = torch.Generator().manual_seed(0)
    w, p, n = cfg.width, cfg.patch, (cfg.img_size // cfg.patch) ** 2
    sd = {"cls_token": torch.randn(1, 1, w, generator=g), "pos_embed": torch.randn(1, 1 + n, w, generator=g),
          "patch_embed.proj.weight": torch.randn(w, 3, p, p, generator=g), "patch_embed.proj.bias": torch.randn(w, generator=g),
          "norm.weight": torch.randn(w, generator=g), "norm.bias": torch.randn(w, generator=g),
          "mask_token": torch.randn(1, 1, 16, generator=g), "decoder_embed.weight": torch.randn(16, w, generator=g)}
    ref = JointSpaceTimeViT(cfg).state_dict()
    for k, v in ref.items():
        if k.startswith("blocks."):
            sd[k] = torch.randn(v.shape, generator=g)
    torch.save({"model": sd}, path)
    return sd


def test_mae_init_makes_a_static_clip_match_the_image_patch_embedding(tmp_path):
    sd = _mae_checkpoint(tmp_path / "mae.pth")
    m = _Holder(CFG)
    ignored = init_video_from_mae(m, tmp_path / "mae.pth")
    assert ignored == ["decoder_embed.weight", "mask_token"]
    v = m.video_model
    assert torch.equal(v.blocks[1].mlp.fc2.weight, sd["blocks.1.mlp.fc2.weight"])
    assert torch.count_nonzero(v.temporal_embed) == 0
    # A static clip through the inflated 3-D kernel equals the 2-D MAE patch embedding of the frame.
    img = torch.randn(1, 3, 32, 32)
    clip = img[:, None].expand(1, 4, 3, 32, 32)
    cube = v.patch_embed(clip)[0, 0]  # [P, W], slot 0
    flat = torch.nn.functional.conv2d(img, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16)
    assert torch.allclose(cube, flat[0].flatten(1).T, atol=1e-5)


def test_mae_init_keeps_the_new_grouping_of_an_s_vilm_encoder(tmp_path):
    from dataclasses import replace

    sd = _mae_checkpoint(tmp_path / "mae.pth")
    cfg = replace(CFG, num_groups=3, group_layers=[1, 2])
    m = _Holder(cfg)
    before = {k: v.clone() for k, v in m.video_model.state_dict().items() if k.startswith(("group", "grouping"))}
    init_video_from_mae(m, tmp_path / "mae.pth")
    after = m.video_model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert torch.equal(after["blocks.0.attn.qkv.weight"], sd["blocks.0.attn.qkv.weight"])


def test_mae_init_is_strict_about_encoder_keys(tmp_path):
    sd = _mae_checkpoint(tmp_path / "mae.pth")
    del sd["blocks.0.attn.qkv.weight"]
    torch.save({"model": sd}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="blocks.0.attn.qkv.weight"):
        init_video_from_mae(_Holder(CFG), tmp_path / "broken.pth")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would run on load",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a plain-tensor checkpoint"):
        init_video_from_mae(_Holder(CFG), tmp_path / "evil.pth")
