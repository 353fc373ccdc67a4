"""The TVTSv2-B/16 recipe end to end at test size: CLIP weights converted into a tvts model, then
``tvts pretrain --config tvtsv2_vitb16 train.init_from=...`` on the embedded dataset, on CPU."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tvts.cli import main
from tvts.config import load_model_config, load_recipe
from tvts.models.convert import convert_checkpoint
from tvts.recipe_data import mask_spec

open_clip = pytest.importorskip("open_clip")

# The named B/16 model at test size (4 text blocks, the last one trains).
TINY = ["embed_dim=16", "video.img_size=16", "video.num_frames=4", "video.patch=8", "video.width=32", "video.depth=2",
        "video.heads=2", "text.max_length=16", "text.width=32", "text.heads=2", "text.layers=4", "text.trainable_layers=1",
        "sort_head.heads=2"]


def test_recipe_is_the_papers():
    r = load_recipe("tvtsv2_vitb16")
    m = r.model
    assert (m.family, m.video.num_frames, m.video.img_size, m.video.mask_ratio, m.embed_dim) == ("video_clip", 12, 224, 0.5, 512)
    assert (r.train.lr, r.train.pretrained_lr, r.train.weight_decay, r.objective.sort_weight) == (1e-4, 1e-7, 0.05, 2.0)
    assert (m.text.layers - m.text.trainable_layers, m.text.layers) == (9, 12)  # first 3/4 frozen
    spec = mask_spec(r)  # what the trainer asks the data pipeline for: one kept set for all 12 frames
    assert (spec.kind, spec.num_slots, spec.num_patches, spec.ratio) == ("tube", 12, 196, 0.5)
    h14 = load_model_config("tvtsv2_vith14")
    assert (h14.video.mask_ratio, h14.text.layers - h14.text.trainable_layers, h14.video.post_norm) == (0.7, 18, "cls")
    assert load_model_config("tvtsv2_vitb32").video.mask_ratio == 0.0


def test_pretrain_from_converted_clip_weights(tmp_path):
    torch.manual_seed(0)
    cfg = open_clip.get_model_config("ViT-B-16")
    clip = open_clip.model.CLIP(embed_dim=16, vision_cfg=dict(image_size=16, patch_size=8, width=32, layers=2, head_width=16),
                                text_cfg={**cfg["text_cfg"], "context_length": 16, "width": 32, "heads": 2, "layers": 4},
                                quick_gelu=True)
    torch.save(clip.state_dict(), tmp_path / "clip.bin")
    convert_checkpoint("open-clip", tmp_path / "clip.bin", tmp_path / "clip_tvts", config=load_model_config("tvtsv2_vitb16", TINY))

    overrides = [f"model.{o}" for o in TINY] + [
        "data.root=''", f"data.synthetic.out={tmp_path / 'shapes'}", "data.synthetic.num_train=8", "data.synthetic.num_val=4",
        "data.synthetic.num_heldout=4", "data.workers=0", f"train.out_dir={tmp_path / 'run'}", "train.steps=2",
        "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1", "train.ckpt_every=2", "train.progress=false",
        f"train.init_from={tmp_path / 'clip_tvts'}"]
    assert main(["pretrain", "--config", "tvtsv2_vitb16", *overrides]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss_sort"] > 0 and r["loss_contrastive"] > 0 for r in rows)
    start, end = load_file(str(tmp_path / "clip_tvts" / "model.safetensors")), load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["family"] == "video_clip"
    delta = {k: (end[k] - start[k]).abs().max().item() for k in start}
    assert delta["text_model.clip.transformer.resblocks.0.mlp.c_fc.weight"] == 0  # frozen
    assert 0 < delta["video_model.transformer.resblocks.0.mlp.c_fc.weight"] < 1e-6  # CLIP's, lr 1e-7
    assert delta["video_model.transformer.resblocks.0.timeattn.qkv.weight"] > 1e-6  # new, lr 1e-4
