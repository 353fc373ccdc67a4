"""The CLIP text transformer (TVTSv2's text encoder), through open_clip.

Causal attention; the feature of a text is its end-of-text token (the highest token id) after the
final norm, times ``text_projection``: ``[n, E]``, not normalised. Texts are tokenised with the CLIP
BPE that ships inside open_clip (offline): ``max_length`` tokens, truncated with the end-of-text token
kept in the last slot. Weights start random; pretrained ones come from ``tvts convert``.

The tower is ``open_clip.transformer.TextTransformer`` held as ``clip``, so its keys are OpenAI CLIP's
text keys under ``text_model.clip.`` (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.i``, ``ln_final``, ``text_projection``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn

from tvts.config import TextEncoderConfig
from tvts.deps import require
from tvts.models.divided_vit import ACTIVATIONS


def _open_clip():
    return require("open_clip", "the CLIP text encoder", field="model.text.kind")


@lru_cache(maxsize=4)
def clip_tokenizer(context_length: int):
    """The CLIP BPE tokenizer (``SimpleTokenizer``); building it reads the vocabulary, so it is cached."""
    return _open_clip().tokenizer.SimpleTokenizer(context_length=context_length)


class ClipTextEncoder(nn.Module):
    """Texts → features ``[n, E]``.

    ``trainable_layers`` (L_tune): -1: everything trains. 0: the whole tower is frozen (runs without
    autograd). n > 0: the first ``layers - n`` blocks are frozen (no gradient, left out of the
    optimiser); the last n blocks, the embeddings, the final norm and the projection train, as in the
    published TVTSv2 (where the latter learn at the small lr of CLIP-inherited parameters).
    """

    def __init__(self, cfg: TextEncoderConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        self.clip = _open_clip().transformer.TextTransformer(
            context_length=cfg.max_length, vocab_size=cfg.vocab_size, width=cfg.width, heads=cfg.heads,
            layers=cfg.layers, output_dim=embed_dim, act_layer=ACTIVATIONS[cfg.act])
        self.width = embed_dim
        n = cfg.trainable_layers
        if n == 0:
            self.clip.requires_grad_(False)
        elif n > 0:
            for block in self.clip.transformer.resblocks[: cfg.layers - n]:
                block.requires_grad_(False)

    @property
    def frozen(self) -> bool:
        return self.cfg.trainable_layers == 0

    def tokenize(self, texts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """n strings → token ids ``[n, max_length]`` (long)."""
        return clip_tokenizer(self.cfg.max_length)(list(texts)).to(device)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """n strings → ``[n, E]``."""
        tokens = self.tokenize(texts, self.clip.positional_embedding.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.clip(tokens)
