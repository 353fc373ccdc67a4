"""What every tvts model family shares: the pretraining forward, encoding, and saving/loading.

A model holds ``video_model`` (frames → :class:`~tvts.models.vit.VideoTokens`), ``text_model`` (n
strings → features ``[n, W_t]``) and ``pred_model`` (the sort head); a family says how encoder outputs
become embeddings of the common space (``video_embedding``, ``text_embedding``) and which parameters
come from a pretrained model (``inherited``, for the optimiser's lr groups).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from tvts.config import ModelConfig, model_config_from_dict, to_dict
from tvts.files import CONFIG_NAME, PREPROCESSOR_NAME, WEIGHTS_NAME
from tvts.errors import CheckpointError, ConfigError
from tvts.models.vit import VideoTokens


def _split(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, T, ...]`` → ``[B*K, T/K, ...]``: row ``b*K + k`` holds the k-th run of T/K steps of sample b."""
    return x.reshape(x.shape[0] * k, x.shape[1] // k, *x.shape[2:])


class VideoTextModel(nn.Module):
    """Base class of the model families (``tvts.models.registry.FAMILIES``)."""

    config: ModelConfig
    video_model: nn.Module
    text_model: nn.Module
    pred_model: nn.Module | None  # None: no sort head (sort_head.kind none)

    # ------------------------------------------------------------------ family-specific
    def video_embedding(self, video: VideoTokens) -> torch.Tensor:
        """Encoder output → video embedding ``[B, D]`` (not normalised)."""
        raise NotImplementedError

    def text_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """Text features ``[..., W_t]`` → embeddings ``[..., D]`` (not normalised)."""
        raise NotImplementedError

    def inherited(self, name: str) -> bool:
        """Whether parameter ``name`` comes from a pretrained model (trained at ``train.pretrained_lr``)."""
        return False

    # ------------------------------------------------------------------ encoding
    def encode_video(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, 3, H, W]`` → video embedding ``[B, D]``. A 4-D ``[B, 3, H, W]`` batch of images is one frame
        each (as the released code treats images; repeated ``tubelet`` times for a cube embedding). Frames are float, normalised, ``img_size`` square:
        the model folder's video processor makes them from a file (``tvts.load_model_and_processor``)."""
        return self.video_embedding(self.video_model(self.check_frames(frames), keep))

    def check_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` as the video encoder takes them, or a :class:`ConfigError` that says what is wrong."""
        v = self.config.video
        if not torch.is_tensor(frames):
            raise ConfigError(f"frames must be a torch tensor [B, T, 3, H, W], not {type(frames).__name__}", field="frames")
        if frames.ndim == 4:  # [B, 3, H, W]: images, one frame each (repeated to fill one tubelet of a cube embedding)
            frames = frames.unsqueeze(1).repeat(1, v.tubelet if v.arch != "r3d_slow" else 1, 1, 1, 1)
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ConfigError(f"frames must be [B, T, 3, H, W] (or [B, 3, H, W] images), got {list(frames.shape)}",
                              field="frames")
        if not frames.is_floating_point():
            raise ConfigError(f"frames are {frames.dtype}: the model takes float frames, divided by 255 and normalised "
                              "(the model's video processor makes them: tvts.load_model_and_processor)", field="frames")
        if tuple(frames.shape[-2:]) != (v.img_size, v.img_size):
            raise ConfigError(f"frames are {frames.shape[-2]}x{frames.shape[-1]}, this model takes {v.img_size}x{v.img_size}",
                              field="frames")
        if v.arch != "r3d_slow" and (frames.shape[1] % v.tubelet or frames.shape[1] // v.tubelet > v.max_slots):
            raise ConfigError(f"{frames.shape[1]} frames: this model takes a multiple of {v.tubelet}, at most "
                              f"{v.max_slots * v.tubelet}", field="frames")
        return frames

    def encode_parts(self, frames: torch.Tensor, keep: torch.Tensor | None, k: int) -> VideoTokens:
        """Encode the K temporal parts of each clip on their own.

        A clip of T frames is TSN-sampled over the span of its K transcript segments (TVTS Section 3.1), so
        its k-th run of T/K frames (its *part* k) lies over segment k. Each part runs through the video
        encoder as a short video of its own: it sees no other part, and its time slots are numbered from 0,
        so its features carry nothing of where it came from in the clip.

        ``frames`` ``[B, T, 3, H, W]``; ``keep`` ``[B, S, N]`` or None (part k keeps the rows of its own S/K
        slots). Returns the encoder's output for ``B*K`` videos of T/K frames, row ``b*K + k`` being part k
        of clip b.
        """
        tubelet = self.config.video.tubelet
        if frames.shape[1] % k or (frames.shape[1] // k) % tubelet:
            raise ValueError(f"{frames.shape[1]} frames do not split into K={k} parts of whole time slots (tubelet {tubelet})")
        return self.video_model(_split(frames, k), None if keep is None else _split(keep, k))

    def sort_video(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> VideoTokens:
        """The video tokens the sort head reads (``sort_head.video``): the clip's (``clip``), or its K parts'
        encoded on their own and joined in time order (``parts``)."""
        if self.config.sort_head.video == "parts":
            k = self.config.num_segments
            return self.encode_parts(frames, keep, k).join_parts(k)
        return self.video_model(frames, keep)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """n strings → text embeddings ``[n, D]``."""
        return self.text_embedding(self.text_model(texts))

    def transcript_features(self, texts: list[list[str]]) -> torch.Tensor:
        """B lists of K transcript segments → text-encoder features ``[B, K, W_t]`` (before ``text_embedding``)."""
        b, k = len(texts), len(texts[0])
        return self.text_model([t for sample in texts for t in sample]).reshape(b, k, -1)

    def forward(self, frames: torch.Tensor, texts: list[list[str]], keep: torch.Tensor | None = None,
                stop_gradient: bool = True, sort: bool = True, sort_with_video: bool = True) -> dict[str, torch.Tensor]:
        """One pretraining forward.

        ``frames`` ``[B, T, 3, H, W]``; ``texts``: B lists of K shuffled transcripts; ``keep``: kept patch
        indices ``[B, S, N]``. Returns ``video_embed`` ``[B, D]``, ``text_embed`` ``[B, D]`` (mean of the
        K transcript embeddings), ``segment_embed`` ``[B, K, D]`` and, when ``sort``, ``sort_logits``
        (``[B, K, K]`` for the K-way output; see ``SortHeadConfig.output``). With ``stop_gradient`` the sort head gets detached text features, so L_sort
        sends no gradient into the text encoder.
        """
        if sort and self.pred_model is None:
            raise ValueError("this model has no sort head (model.sort_head.kind: none)")
        video = self.video_model(frames, keep)
        feats = self.transcript_features(texts)  # [B, K, W_t]
        segment_embed = self.text_embedding(feats)
        out = {"video_embed": self.video_embedding(video), "segment_embed": segment_embed, "text_embed": segment_embed.mean(1)}
        if sort:
            if sort_with_video and self.config.sort_head.video != "clip":
                video = self.sort_video(frames, keep)
            out["sort_logits"] = self.sort_logits(video if sort_with_video else None, feats.detach() if stop_gradient else feats)
        return out

    def sort_logits(self, video: VideoTokens | None, text_feats: torch.Tensor) -> torch.Tensor:
        """``text_feats`` ``[B, K, W_t]`` → sort logits (``[B, K, K]`` K-way, ``[B, K(K-1)/2]`` pairwise, ``[B, K!]``
        factorial); ``video=None``: the head sees no video token."""
        return self.pred_model(video, text_feats)

    # ------------------------------------------------------------------ persistence
    def _save_assets(self, directory: Path) -> None:
        """Write what the family needs besides weights and config (e.g. a tokenizer) into ``directory``."""

    @classmethod
    def _config_for_folder(cls, cfg: ModelConfig, directory: Path) -> ModelConfig:
        """The config to rebuild a model saved in ``directory`` (e.g. pointing at its saved tokenizer)."""
        return cfg

    def save_pretrained(self, directory: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None,
                        preprocessor: dict | None = None) -> None:
        """Write ``model.safetensors`` + ``config.json`` (+ assets), replacing ``directory`` atomically
        (written beside it, then renamed). ``state_dict``: the weights to write instead of this module's own
        (e.g. gathered from FSDP shards). ``preprocessor``: the video processor's settings
        (``tvts.data.processor.VideoProcessor.to_dict()``), written as ``preprocessor.json``."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            state = {k: v.detach().contiguous().cpu() for k, v in (state_dict or self.state_dict()).items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "tvts_family": self.config.family})
            (tmp / CONFIG_NAME).write_text(json.dumps(to_dict(self.config), indent=2))
            if preprocessor is not None:
                (tmp / PREPROCESSOR_NAME).write_text(json.dumps(preprocessor, indent=2))
            self._save_assets(tmp)
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> "VideoTextModel":
        """Rebuild from ``config.json`` and load ``model.safetensors`` strictly."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(str(directory), missing=[CONFIG_NAME])
        cfg = model_config_from_dict(json.loads((directory / CONFIG_NAME).read_text()), str(directory / CONFIG_NAME))
        model = cls(cls._config_for_folder(cfg, directory), pretrained_text=False)
        load_state_strict(model, load_file(str(directory / WEIGHTS_NAME), device=str(map_location)), str(directory / WEIGHTS_NAME))
        return model


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place: the old one is renamed away first, so a crash leaves either
    the old or the new folder, never a half-written one. Its permissions become the usual ones (``mkdtemp``
    makes 0700 folders): readable by the group and others as the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(src):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that reports every missing, unexpected or mis-shaped key in one error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
                  if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(source, missing, unexpected, mismatched)
    model.load_state_dict(state, strict=True)
