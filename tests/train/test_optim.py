"""Optimiser groups: TVTS keeps one lr; TVTSv2 trains new modules at lr and CLIP-inherited ones at
pretrained_lr (appendix B: 1e-4 / 1e-7), frozen text blocks are left out, and one step shows it."""

import pytest
import torch

from tvts.config import ObjectiveConfig, TrainConfig, load_model_config
from tvts.models import build_model
from tvts.models.video_clip import is_new_parameter
from tvts.objectives.tvts import TVTSObjective
from tvts.testing import make_tiny_bert, tiny_model_config
from tvts.train.optim import build_optimizer, param_groups

# The named TVTSv2-B/16 config at test size (4 text blocks, the last one trains).
TINY_V2 = ["embed_dim=16", "video.img_size=16", "video.num_frames=4", "video.patch=8", "video.width=32", "video.depth=2",
           "video.heads=2", "text.max_length=16", "text.width=32", "text.heads=2", "text.layers=4",
           "text.trainable_layers=1", "sort_head.heads=2"]


def _v2():
    pytest.importorskip("open_clip")
    torch.manual_seed(0)
    return build_model(load_model_config("tvtsv2_vitb16", TINY_V2))


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_tvts_keeps_one_lr_and_the_decay_split(tmp_path):
    m = build_model(tiny_model_config(make_tiny_bert(tmp_path / "bert"), trainable_layers=0))
    groups = param_groups(m, weight_decay=0.05, lr=1e-3, pretrained_lr=1e-7)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [("new_decay", 1e-3, 0.05), ("new_no_decay", 1e-3, 0.0)]
    decay, no_decay = (_names(m, g) for g in groups)
    assert "video_model.blocks.0.attn.qkv.weight" in decay
    assert {"video_model.pos_embed", "video_model.temporal_embed", "video_model.blocks.0.norm1.weight"} <= no_decay
    assert not any(n.startswith("text_model.") for n in decay | no_decay)  # frozen: not in the optimiser


def test_tvtsv2_groups():
    m = _v2()
    groups = {g["name"]: g for g in param_groups(m, weight_decay=0.05, lr=1e-4, pretrained_lr=1e-7)}
    assert list(groups) == ["new_decay", "new_no_decay", "inherited_decay", "inherited_no_decay"]
    names = {k: _names(m, g) for k, g in groups.items()}
    assert all(groups[k]["lr"] == 1e-4 for k in ("new_decay", "new_no_decay"))
    assert all(groups[k]["lr"] == 1e-7 for k in ("inherited_decay", "inherited_no_decay"))
    new = names["new_decay"] | names["new_no_decay"]
    assert new == {n for n, p in m.named_parameters() if is_new_parameter(n)}
    assert {"video_model.temporal_embedding", "video_model.transformer.resblocks.1.timeattn.qkv.weight",
            "pred_model.head.weight"} <= names["new_decay"]
    assert "video_model.transformer.resblocks.0.ln_3.weight" in names["new_no_decay"]
    assert {"video_model.class_embedding", "video_model.proj", "text_model.clip.token_embedding.weight",
            "text_model.clip.transformer.resblocks.3.attn.in_proj_weight"} <= names["inherited_decay"]
    assert {"video_model.ln_post.bias", "text_model.clip.transformer.resblocks.3.mlp.c_fc.bias"} <= names["inherited_no_decay"]
    in_optimizer = set().union(*names.values())
    assert not any(".resblocks.0." in n or ".resblocks.2." in n for n in in_optimizer if n.startswith("text_model."))
    assert in_optimizer == {n for n, p in m.named_parameters() if p.requires_grad}


def test_one_training_step_moves_groups_by_their_lr():
    m = _v2().train()
    opt = build_optimizer(m, TrainConfig(lr=1e-4, pretrained_lr=1e-7, weight_decay=0.05))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    g = torch.Generator().manual_seed(0)
    batch = {"frames": torch.randn(4, 4, 3, 16, 16, generator=g), "keep": torch.tensor([0, 3]).expand(4, 4, 2),
             "texts": [[f"segment {i} of video {b}" for i in range(4)] for b in range(4)],
             "order": torch.stack([torch.randperm(4, generator=g) for _ in range(4)])}
    losses, _ = TVTSObjective(ObjectiveConfig())(m, batch)
    sum(losses.values()).backward()
    opt.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in m.named_parameters()}
    frozen = [n for n in moved if n.startswith("text_model.clip.transformer.resblocks.") and int(n.split(".")[4]) < 3]
    assert frozen and all(torch.equal(dict(m.named_parameters())[n], before[n]) for n in frozen)
    inherited = [moved[n] for n, p in m.named_parameters() if p.requires_grad and m.inherited(n)]
    new = [moved[n] for n, p in m.named_parameters() if p.requires_grad and not m.inherited(n)]
    assert max(inherited) < 2e-7 < 1e-5 < max(new)  # an Adam step moves a weight by about its lr
    assert max(inherited) > 0
