"""Reading foreign checkpoints without running their code, and converting them into tvts models.

Why this matters: ``.pth``/``.pt``/``.bin`` files are Python pickles, and unpickling can call any
function the file names (a checkpoint can, say, run a shell command when loaded). So:

* Pickles are read with ``torch.load(weights_only=True)``: only tensors and plain containers are
  built. Published training checkpoints also pickle other objects (TVTS/TVTSv2 store their
  ``ConfigParser`` under ``config``); those are replaced by inert :class:`Placeholder` objects (the
  named class is never imported or called), and only the tensors are used. A placeholder where
  weights were expected is an error.
* TorchScript archives (the OpenAI CLIP ``.pt`` files) hold TorchScript code, which ``torch.jit.load``
  compiles and may run (PyTorch refuses them under ``weights_only=True`` for that reason). We read
  only their tensor data, through the same tensors-only unpickler, without the code.
* ``.safetensors`` files hold tensors only.
* ``unsafe=True`` (``tvts convert --unsafe``) uses ``torch.load(weights_only=False)`` or
  ``torch.jit.load``: for files you trust that the safe readers cannot parse.

Converters map a foreign state dict onto a model's keys strictly: every key of the model must come
from the checkpoint (unless it is new in that conversion, e.g. the temporal attention when starting
from CLIP), and every checkpoint key must be used or be on a short list of known non-weights;
anything else is a :class:`~tvts.errors.CheckpointError` listing the keys.
"""

from __future__ import annotations

import copy
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from tvts.config import ModelConfig, canonical_family, load_model_config
from tvts.errors import CheckpointError, ConfigError
from tvts.models.video_bert import VideoBert
from tvts.models.video_clip import VideoClip, is_new_parameter


# ------------------------------------------------------------------------------------------ reading
class Placeholder:
    """Stands in for a pickled object of a class that is not loaded (``origin`` names it). Building
    one runs nothing: the constructor arguments and pickled state are kept as they are."""

    origin = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.origin}, not loaded>"


def _placeholder_class(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (Placeholder,), {"origin": name})


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") for n in z.namelist())


def _refused(source: str, e: Exception) -> CheckpointError:
    return CheckpointError(source, unexpected=[
        f"not a plain-tensor checkpoint ({type(e).__name__}: {str(e)[:300]}); "
        "if you trust the file, load it with unsafe=True (tvts convert --unsafe)"])


def _load_tensors_only(f: io.BytesIO | str, source: str) -> Any:
    """``torch.load(weights_only=True)``, with placeholders for the globals it does not allow."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as first:  # any refusal: retry with placeholders, or explain
        if hasattr(f, "seek"):
            f.seek(0)
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(f)
        except Exception:  # not a zip checkpoint: its globals cannot be listed
            names = []
        if not names:
            raise _refused(source, first) from first
        if hasattr(f, "seek"):
            f.seek(0)
        try:
            with torch.serialization.safe_globals([(_placeholder_class(n), n) for n in names]):
                return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:
            raise _refused(source, e) from e


def _torchscript_data(path: Path) -> io.BytesIO:
    """The data part of a TorchScript archive (``data.pkl`` and the tensor storages), repacked as a
    plain ``torch.save`` archive; the ``code/`` and ``constants.pkl`` records are left behind."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            rel = name.split("/", 1)[1] if "/" in name else name
            if rel in ("data.pkl", "version", "byteorder", ".data/version") or rel.startswith("data/"):
                dst.writestr(name, src.read(name))
    buf.seek(0)
    return buf


def _module_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensor attributes of a tree of (placeholder) TorchScript module objects, by dotted name."""
    out: dict[str, torch.Tensor] = {}
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return out
    for k, v in state.items():
        if torch.is_tensor(v):
            out[prefix + k] = v
        elif isinstance(v, Placeholder):
            out.update(_module_tensors(v, f"{prefix}{k}."))
    return out


def read_torch_checkpoint(path: str | os.PathLike, unsafe: bool = False) -> Any:
    """The object stored in ``path`` (a pickle, a TorchScript archive → its ``{name: tensor}``, or a
    safetensors file), read as the module docstring describes."""
    path, source = Path(path), str(path)
    if not path.is_file():
        raise FileNotFoundError(source)
    if path.suffix == ".safetensors":
        return load_file(source)
    if _is_torchscript(path):
        if unsafe:
            return torch.jit.load(source, map_location="cpu").state_dict()
        tensors = _module_tensors(_load_tensors_only(_torchscript_data(path), source))
        if not tensors:
            raise CheckpointError(source, unexpected=["no tensors found in the TorchScript archive; "
                                                      "if you trust the file, load it with unsafe=True"])
        return tensors
    if unsafe:
        return torch.load(source, map_location="cpu", weights_only=False)
    return _load_tensors_only(source, source)


def checkpoint_state_dict(ckpt: Any, source: str, keys: tuple[str, ...] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """The weights in a loaded checkpoint: ``ckpt[key]`` for the first of ``keys`` that holds a mapping,
    else ``ckpt`` itself; a DDP ``module.`` prefix is removed. Every value must be a tensor."""
    state = ckpt
    if isinstance(ckpt, dict):
        state = next((ckpt[k] for k in keys if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(source, unexpected=[f"not a plain-tensor checkpoint: it holds {state!r}"])
    bad = [f"{k}: {v!r}" for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(source, unexpected=[f"not a plain-tensor checkpoint: {', '.join(bad[:5])}"])
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_state_dict(path: str | os.PathLike, unsafe: bool = False) -> dict[str, torch.Tensor]:
    """``checkpoint_state_dict(read_torch_checkpoint(path))``."""
    return checkpoint_state_dict(read_torch_checkpoint(path, unsafe), str(path))


# ------------------------------------------------------------------------------------------ matching
@dataclass
class Conversion:
    """Result of mapping a checkpoint onto a model: the model's ``state`` (a subset of its keys), the
    model keys left at their initialisation (``fresh``), and the checkpoint keys dropped (``ignored``)."""

    state: dict[str, torch.Tensor]
    fresh: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def match_state(src: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: str,
                may_stay_fresh: Callable[[str], bool] = lambda k: False, ignored: tuple[str, ...] = ()) -> Conversion:
    """Strictly map renamed checkpoint tensors ``src`` onto the model's ``own`` state (cast to its dtypes).

    Model keys missing from ``src`` are errors unless ``may_stay_fresh(key)``; ``src`` keys the model does
    not have are errors unless listed in ``ignored``; shapes must agree."""
    missing = sorted(k for k in own if k not in src and not may_stay_fresh(k))
    unexpected = sorted(k for k in src if k not in own and k not in ignored)
    mismatched = [f"{k} {tuple(src[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(src) if k in own and src[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(source, missing, unexpected, mismatched)
    return Conversion(state={k: v.to(own[k].dtype) for k, v in src.items() if k in own},
                      fresh=sorted(k for k in own if k not in src), ignored=sorted(k for k in src if k not in own))


def _rename(state: dict[str, torch.Tensor], renames: tuple[tuple[str, str], ...]) -> dict[str, torch.Tensor]:
    """Replace the first matching key prefix of each key."""
    out = {}
    for k, v in state.items():
        new = next((to + k[len(frm):] for frm, to in renames if k.startswith(frm)), k)
        out[new] = v
    return out


# ------------------------------------------------------------------------------------------ CLIP → TVTSv2
# Entries of OpenAI CLIP / OpenCLIP state dicts that are not weights of either tower (TorchScript
# archives also carry the causal mask).
CLIP_NON_WEIGHTS = ("logit_scale", "input_resolution", "context_length", "vocab_size", "attn_mask")


def _clip_non_weight(key: str) -> bool:
    return key in CLIP_NON_WEIGHTS or key.endswith(".attn_mask")


def clip_to_tvtsv2(clip: dict[str, torch.Tensor], model, source: str) -> Conversion:
    """An OpenAI CLIP or OpenCLIP ViT state dict (``visual.*`` and the text keys) → TVTSv2 (``model``).

    The image tower's attention becomes the spatial attention (``attn.in_proj_*`` → ``attn.qkv.*``,
    ``attn.out_proj`` → ``attn.proj``: MultiheadAttention's [q; k; v] rows are the qkv layout), the
    text keys go under ``text_model.clip.``. New parameters (temporal attention and embedding, sort
    head) keep their initialisation, so the video encoder starts as the CLIP image encoder."""
    renamed = {}
    for k, v in clip.items():
        if _clip_non_weight(k):
            pass
        elif k.startswith("visual."):
            k = "video_model." + k[len("visual."):]
            k = k.replace(".attn.in_proj_weight", ".attn.qkv.weight").replace(".attn.in_proj_bias", ".attn.qkv.bias")
            k = k.replace(".attn.out_proj.", ".attn.proj.")
        else:
            k = "text_model.clip." + k
        renamed[k] = v
    ignored = tuple(k for k in renamed if _clip_non_weight(k))
    return match_state(renamed, model.state_dict(), source, may_stay_fresh=is_new_parameter, ignored=ignored)


# ------------------------------------------------------------------------------------------ published TVTSv2
# Published TVTSv2 text keys → ours (the CLIP text tower was split into attributes of the model).
TVTSV2_TEXT_RENAMES = (
    ("text_model.resblocks.", "text_model.clip.transformer.resblocks."),
    ("text_token_embedding.", "text_model.clip.token_embedding."),
    ("text_positional_embedding", "text_model.clip.positional_embedding"),
    ("text_ln_final.", "text_model.clip.ln_final."),
    ("text_projection", "text_model.clip.text_projection"),
)


def tvtsv2_to_tvtsv2(published: dict[str, torch.Tensor], model, source: str) -> Conversion:
    """A published TVTSv2 state dict (``module.`` already removed) → TVTSv2. ``video_model.*`` and
    ``pred_model.*`` keep their names. The released checkpoints carry no sort head: when no
    ``pred_model.*`` key is present the head keeps its initialisation (listed in ``fresh``)."""
    renamed = _rename(published, TVTSV2_TEXT_RENAMES)
    has_head = any(k.startswith("pred_model.") for k in renamed)
    return match_state(renamed, model.state_dict(), source, may_stay_fresh=lambda k: not has_head and k.startswith("pred_model."))


# ------------------------------------------------------------------------------------------ published TVTS
def tvts_v1_to_tvts(published: dict[str, torch.Tensor], model, source: str) -> Conversion:
    """A published TVTS state dict (``module.`` already removed) → TVTS. The DistilBERT keys move under
    ``text_model.model.``; ``video_model``, ``vid_proj``, ``txt_proj`` and ``pred_model`` map 1:1. A
    ``position_ids`` buffer (saved by older transformers) is dropped when the model has none."""
    renamed = _rename(published, (("text_model.", "text_model.model."),))
    own = model.state_dict()
    ignored = tuple(k for k in renamed if k.endswith(".position_ids") and k not in own)
    return match_state(renamed, own, source, ignored=ignored)


# ------------------------------------------------------------------------------------------ ImageMAE → TVTS
def mae_to_video_state(mae: dict[str, torch.Tensor], video_state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Map an ImageMAE ViT encoder (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.*``,
    ``norm``; decoder and ``mask_token`` keys are ignored) onto the TVTS video encoder.

    The 2-D patch kernel ``[W, 3, p, p]`` is repeated over the ``tubelet`` frames of a cube and divided
    by ``tubelet``, so a static clip gives the image response. (The published code did not divide,
    which doubles the first-layer response of a static clip; we prefer the inflation that preserves it.)
    ``temporal_embed`` and S-ViLM's grouping (``group_token``, ``grouping.*``, ``group_norm.*``) are new and
    keep their initialisation. Every other encoder key must be present.
    """
    mae = {k.removeprefix("module."): v for k, v in mae.items()}
    out, missing, mismatched = {}, [], []
    for k, own in video_state.items():
        if k == "temporal_embed" or k == "group_token" or k.startswith(("grouping.", "group_norm.")):
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
    mae = checkpoint_state_dict(read_torch_checkpoint(path), str(path), keys=("model",))
    video = model.video_model
    state = mae_to_video_state(mae, video.state_dict(), str(path))
    video.load_state_dict(state, strict=False)
    return sorted(set(mae) - set(state))


# ------------------------------------------------------------------------------------------ whole files
TVTSV2_SIZES = {"b32": "tvtsv2_vitb32", "b16": "tvtsv2_vitb16", "h14": "tvtsv2_vith14"}  # → model config
SOURCES = ("openai-clip", "open-clip", "tvtsv2", "tvts-v1")
# (video width, patch) of the three published sizes
_SIZE_BY_PATCH_EMBED = {(768, 32): "b32", (768, 16): "b16", (1280, 14): "h14"}


def detect_tvtsv2_size(state: dict[str, torch.Tensor], source: str) -> str:
    """``b32`` | ``b16`` | ``h14``, from the shape of the image/video patch embedding."""
    for key in ("visual.conv1.weight", "video_model.conv1.weight"):
        if key in state:
            w, _, p, _ = state[key].shape
            if (w, p) in _SIZE_BY_PATCH_EMBED:
                return _SIZE_BY_PATCH_EMBED[(w, p)]
            raise CheckpointError(source, mismatched=[f"{key} {tuple(state[key].shape)} is none of the published sizes "
                                                      f"(width, patch) {sorted(_SIZE_BY_PATCH_EMBED)}"])
    raise CheckpointError(source, missing=["visual.conv1.weight or video_model.conv1.weight (to tell the size)"])


def _model_config(config: str | ModelConfig, family: str) -> ModelConfig:
    cfg = copy.deepcopy(config) if isinstance(config, ModelConfig) else load_model_config(config)
    cfg.family = canonical_family(cfg.family)
    if cfg.family != family:
        raise ConfigError(f"this checkpoint converts into a {family} model, the config is a {cfg.family} one", field="--config")
    return cfg


def convert_checkpoint(source_kind: str, path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                       size: str = "", unsafe: bool = False, text_model: str = "", config: str | ModelConfig = ""):
    """Read a published checkpoint and return ``(model, conversion)``; with ``out_dir``, also save the
    model there (``save_pretrained``: ``model.safetensors`` + ``config.json``).

    ``source_kind``: ``openai-clip`` / ``open-clip`` (CLIP weights to start TVTSv2 pretraining from),
    ``tvtsv2`` (a released TVTSv2 model), ``tvts-v1`` (a released TVTS model; ``text_model`` is a local
    DistilBERT folder with its tokenizer and config.json). ``size``: the TVTSv2 size, read from the
    checkpoint when empty. ``config``: the model config to convert into (a name, a path or a
    ModelConfig) instead of the published one, for checkpoints of other sizes."""
    if source_kind not in SOURCES:
        raise ConfigError(f"unknown source '{source_kind}' (known: {', '.join(SOURCES)})", field="--from")
    if not Path(path).is_file():
        raise ConfigError(f"no such file: {path}", field="SRC")
    source = str(path)
    state = read_state_dict(path, unsafe)
    if source_kind == "tvts-v1":
        if size not in ("", "b16"):
            raise ConfigError("the published TVTS model is a ViT-B/16", field="--size")
        if not text_model:
            raise ConfigError("converting TVTS needs --text-model: a local DistilBERT folder (tokenizer + config.json)",
                              field="--text-model")
        cfg = _model_config(config or "tvts_vitb16", "video_bert")
        cfg.text.name = text_model
        model = VideoBert(cfg, pretrained_text=False)
        conversion = tvts_v1_to_tvts(state, model, source)
    else:
        if not config:
            size = size or detect_tvtsv2_size(state, source)
            if size not in TVTSV2_SIZES:
                raise ConfigError(f"unknown size '{size}' (known: {', '.join(TVTSV2_SIZES)})", field="--size")
        model = VideoClip(_model_config(config or TVTSV2_SIZES[size], "video_clip"))
        convert = tvtsv2_to_tvtsv2 if source_kind == "tvtsv2" else clip_to_tvtsv2
        conversion = convert(state, model, source)
    model.load_state_dict(conversion.state, strict=False)  # strictness was checked by match_state
    if out_dir is not None:
        model.save_pretrained(out_dir)
    return model, conversion
