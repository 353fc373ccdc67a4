"""Objective fixtures: a tiny TVTS model (random 2-layer BERT, 8 frames of 16x16, K = 4, tubelet 2, so
that each of the K parts of a clip is 2 frames = 1 time slot), a batch for it, and a stub video encoder.

``make_model(sort_head="pointer", output="kway", **video)``: a fresh tiny model (seeded).
``make_batch(b=2, order=None, caption=False)``: frames ``[B, 8, 3, 16, 16]``, K = 4 distinct transcripts per
sample, ``order`` ``[B, 4]``, ``keep`` ``[B, 4, 2]`` (2 of the 4 patches of each slot); ``caption=True``: one
text per sample and no ``order`` (a caption batch).
"""

from __future__ import annotations

import pytest
import torch

from tvts.models import build_model
from tvts.testing import make_tiny_bert, tiny_model_config

WORDS = ["red square", "blue circle grows", "the star turns", "a green line", "two dots", "um a cross moves",
         "yellow ring", "it stops"]


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture
def make_model(bert_dir):
    def make(sort_head: str = "pointer", output: str = "kway", **video):
        torch.manual_seed(0)
        cfg = tiny_model_config(bert_dir, sort_head=sort_head, **{"num_frames": 8, **video})
        cfg.sort_head.output = output
        return build_model(cfg)

    return make


@pytest.fixture
def make_batch():
    def make(b: int = 2, order: torch.Tensor | None = None, caption: bool = False) -> dict:
        g = torch.Generator().manual_seed(7)
        frames = torch.randn(b, 8, 3, 16, 16, generator=g)
        keep = torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(b * 4)]).reshape(b, 4, 2)
        if caption:
            return {"frames": frames, "keep": keep, "texts": [[WORDS[i % 8]] for i in range(b)]}
        if order is None:
            order = torch.stack([torch.randperm(4, generator=g) for _ in range(b)])
        # texts[s][i] is the transcript at time order[s, i]: distinct strings per sample and position.
        texts = [[f"{WORDS[(s + int(order[s, i])) % 8]} {s}" for i in range(4)] for s in range(b)]
        return {"frames": frames, "keep": keep, "texts": texts, "order": order}

    return make

