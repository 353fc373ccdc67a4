"""TVTSv2 test helpers: a tiny model config, and state dicts in the published key layouts.

The published layouts are written here from the facts about the released checkpoints (key names and
shapes), independently of the model code, so that tests check the converters against them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tvts.testing import tiny_tvtsv2_config


def published_tvtsv2_shapes(w: int, layers: int, patch: int, grid: int, wt: int, text_layers: int, e: int,
                            context: int = 77, vocab: int = 49408, frames: int = 12, sort_head: bool = False) -> dict:
    """Key → shape of a released TVTSv2 ``state_dict`` (after removing ``module.``)."""
    s = {"text_positional_embedding": (context, wt), "text_projection": (wt, e), "text_token_embedding.weight": (vocab, wt),
         "text_ln_final.weight": (wt,), "text_ln_final.bias": (wt,)}
    for i in range(text_layers):
        p = f"text_model.resblocks.{i}."
        s.update({p + "attn.in_proj_weight": (3 * wt, wt), p + "attn.in_proj_bias": (3 * wt,),
                  p + "attn.out_proj.weight": (wt, wt), p + "attn.out_proj.bias": (wt,),
                  p + "ln_1.weight": (wt,), p + "ln_1.bias": (wt,), p + "ln_2.weight": (wt,), p + "ln_2.bias": (wt,),
                  p + "mlp.c_fc.weight": (4 * wt, wt), p + "mlp.c_fc.bias": (4 * wt,),
                  p + "mlp.c_proj.weight": (wt, 4 * wt), p + "mlp.c_proj.bias": (wt,)})
    v = "video_model."
    s.update({v + "class_embedding": (w,), v + "positional_embedding": (grid * grid + 1, w),
              v + "temporal_embedding": (frames, w), v + "conv1.weight": (w, 3, patch, patch),
              v + "ln_pre.weight": (w,), v + "ln_pre.bias": (w,), v + "ln_post.weight": (w,), v + "ln_post.bias": (w,),
              v + "proj": (w, e)})
    for i in range(layers):
        p = f"{v}transformer.resblocks.{i}."
        for a in ("attn", "timeattn"):
            s.update({p + f"{a}.qkv.weight": (3 * w, w), p + f"{a}.qkv.bias": (3 * w,),
                      p + f"{a}.proj.weight": (w, w), p + f"{a}.proj.bias": (w,)})
        for ln in ("ln_1", "ln_2", "ln_3"):
            s.update({p + f"{ln}.weight": (w,), p + f"{ln}.bias": (w,)})
        s.update({p + "mlp.c_fc.weight": (4 * w, w), p + "mlp.c_fc.bias": (4 * w,),
                  p + "mlp.c_proj.weight": (w, 4 * w), p + "mlp.c_proj.bias": (w,)})
    if sort_head:
        s.update(published_sort_head_shapes(e, "pred_model."))
    return s


def published_sort_head_shapes(d: int, prefix: str, k: int = 4) -> dict:
    """The published ``pred_model`` (29 tensors): type embedding, 2 timm blocks, norm, K-way head."""
    s = {prefix + "type_embed": (1, 2, d), prefix + "norm.weight": (d,), prefix + "norm.bias": (d,),
         prefix + "head.weight": (k, d), prefix + "head.bias": (k,)}
    for i in range(2):
        p = f"{prefix}blocks.{i}."
        s.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "attn.qkv.weight": (3 * d, d),
                  p + "attn.qkv.bias": (3 * d,), p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                  p + "norm2.weight": (d,), p + "norm2.bias": (d,), p + "mlp.fc1.weight": (4 * d, d),
                  p + "mlp.fc1.bias": (4 * d,), p + "mlp.fc2.weight": (d, 4 * d), p + "mlp.fc2.bias": (d,)})
    return s


# Published TVTSv2 text keys from ours: the inverse of the converter's renames, written out.
_OURS_TO_PUBLISHED = (
    ("text_model.clip.transformer.resblocks.", "text_model.resblocks."),
    ("text_model.clip.token_embedding.", "text_token_embedding."),
    ("text_model.clip.positional_embedding", "text_positional_embedding"),
    ("text_model.clip.ln_final.", "text_ln_final."),
    ("text_model.clip.text_projection", "text_projection"),
)


def to_published_tvtsv2(state: dict[str, torch.Tensor], with_head: bool) -> dict[str, torch.Tensor]:
    """Our TVTSv2 state dict in the released layout (``module.`` prefixes, as written under DDP)."""
    out = {}
    for k, v in state.items():
        if k.startswith("pred_model.") and not with_head:
            continue
        for ours, theirs in _OURS_TO_PUBLISHED:
            if k.startswith(ours):
                k = theirs + k[len(ours):]
                break
        out["module." + k] = v.clone()
    return out


@pytest.fixture(scope="session")
def tiny_v2():
    """``tiny_v2(**video_overrides) -> ModelConfig``."""
    return tiny_tvtsv2_config


@pytest.fixture(scope="session")
def published():
    """The published layouts: ``tvtsv2_shapes(...)``, ``sort_head_shapes(...)``, ``to_tvtsv2(state, with_head)``."""
    return SimpleNamespace(tvtsv2_shapes=published_tvtsv2_shapes, sort_head_shapes=published_sort_head_shapes,
                           to_tvtsv2=to_published_tvtsv2)
