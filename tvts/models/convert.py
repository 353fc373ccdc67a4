"""Converters from foreign checkpoints into tvts models.

Loading never unpickles arbitrary objects: checkpoints are read with ``torch.load(weights_only=True)``
(tensors and plain containers only), because a pickle can run any code when it is loaded.
"""

from __future__ import annotations

import os

import torch

from tvts.errors import CheckpointError


def read_torch_checkpoint(path: str | os.PathLike) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # pickle refused by weights_only, or a corrupt file
        raise CheckpointError(str(path), unexpected=[f"not a plain-tensor checkpoint ({type(e).__name__}: {str(e)[:200]})"]) from e


def mae_to_video_state(mae: dict[str, torch.Tensor], video_state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Map an ImageMAE ViT encoder (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.*``,
    ``norm``; decoder and ``mask_token`` keys are ignored) onto the TVTS video encoder.

    The 2-D patch kernel ``[W, 3, p, p]`` is repeated over the ``tubelet`` frames of a cube and divided
    by ``tubelet``, so a static clip gives the image response. (The published code did not divide,
    which doubles the first-layer response of a static clip; we prefer the inflation that preserves it.)
    ``temporal_embed`` is new and keeps its zero initialisation. Every other encoder key must be present.
    """
    mae = {k.removeprefix("module."): v for k, v in mae.items()}
    out, missing, mismatched = {}, [], []
    for k, own in video_state.items():
        if k == "temporal_embed":
            continue
        if k not in mae:
            missing.append(k)
            continue
        v = mae[k]
        if k == "patch_embed.proj.weight" and v.ndim == 4:
            t = own.shape[2]
            v = v.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        if v.shape != own.shape:
            mismatched.append(f"{k} {tuple(v.shape)} vs {tuple(own.shape)}")
            continue
        out[k] = v.to(own.dtype)
    if missing or mismatched:
        raise CheckpointError(source, missing=missing, mismatched=mismatched)
    return out


def init_video_from_mae(model, path: str | os.PathLike) -> list[str]:
    """Load an ImageMAE checkpoint (``{'model': state_dict}`` or a bare state dict) into
    ``model.video_model``. Returns the ignored MAE keys (decoder, mask token)."""
    ckpt = read_torch_checkpoint(path)
    mae = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    video = model.video_model
    state = mae_to_video_state(mae, video.state_dict(), str(path))
    video.load_state_dict(state, strict=False)
    return sorted(set(k.removeprefix("module.") for k in mae) - set(state))
