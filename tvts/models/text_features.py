"""Precomputed features of a frozen text tower: each distinct text is encoded once, not once per step.

With the text encoder frozen (``model.text.trainable_layers: 0``, the main job's MiniLM), a transcript
segment's features are a fixed function of its words. Eq. 1 can only produce finitely many segment
texts per video (:func:`tvts.data.transcripts.reachable_segment_texts`), so the trainer encodes all of
them before the first step and the text tower then looks its features up (:meth:`HFTextEncoder.forward`).
A text that is not in the table (a caption, a noun phrase) is encoded as before and counted in ``misses``.

The table is written to a file named by a hash of the tower's weights and settings and of the texts, so
a second run on the same corpus loads it instead of encoding again, and a resumed run reads exactly the
features the interrupted one used. Features are computed in batches of texts sorted by length (little
padding); they equal a per-step encoding up to float rounding (matrix products of other shapes sum in
another order: ~1e-7 relative).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ["TextFeatureTable", "encoder_fingerprint"]


def encoder_fingerprint(encoder: torch.nn.Module, settings: str) -> str:
    """A hash of every parameter and buffer of ``encoder`` (names, shapes, bytes) and of ``settings``."""
    h = hashlib.sha256(settings.encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class TextFeatureTable:
    """``texts`` (N distinct strings) and their features ``[N, W_t]``; ``lookup`` maps strings to rows."""

    def __init__(self, texts: list[str], features: torch.Tensor):
        if features.ndim != 2 or features.shape[0] != len(texts):
            raise ValueError(f"{len(texts)} texts but features of shape {tuple(features.shape)}")
        self.texts = list(texts)
        self.features = features
        self.row = {t: i for i, t in enumerate(self.texts)}
        self.misses = 0  # texts asked for that the table does not hold

    def __len__(self) -> int:
        return len(self.texts)

    def lookup(self, texts: list[str]) -> tuple[torch.Tensor, list[int]]:
        """``(features [n, W_t], positions of the texts that are not in the table)``; the rows of missing
        texts are zeros for the caller to fill."""
        rows = [self.row.get(t, -1) for t in texts]
        missing = [i for i, r in enumerate(rows) if r < 0]
        self.misses += len(missing)
        index = torch.tensor([max(r, 0) for r in rows], dtype=torch.long)
        out = self.features.index_select(0, index)
        if missing:
            out[missing] = 0
        return out, missing

    @classmethod
    def build(cls, encode, texts, tokens_per_batch: int = 8192, progress: bool = False) -> "TextFeatureTable":
        """Encode the distinct ``texts`` with ``encode`` (list of strings → ``[n, W_t]``), in batches of
        texts of similar length (by characters, a proxy for tokens) holding about ``tokens_per_batch``
        characters' worth of tokens each. Rows keep the sorted order, so the same texts give the same table."""
        texts = sorted(set(texts), key=lambda t: (len(t), t))
        chunks, start = [], 0
        while start < len(texts):
            width = max(1, len(texts[min(len(texts) - 1, start + 63)]) // 4 + 2)  # rough tokens of the longest
            stop = min(len(texts), start + max(64, tokens_per_batch // width))
            chunks.append((start, stop))
            start = stop
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="text features", unit="text", dynamic_ncols=True)
        parts = []
        with torch.inference_mode():
            for a, b in chunks:
                parts.append(encode(texts[a:b]).float().cpu())
                if bar is not None:
                    bar.update(b - a)
        if bar is not None:
            bar.close()
        features = torch.cat(parts) if parts else torch.zeros(0, 0)
        return cls(texts, features.clone())

    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file (features, UTF-8 text bytes, offsets), written beside ``path`` then renamed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        encoded = [t.encode("utf-8") for t in self.texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        save_file({"features": self.features.contiguous(), "text_bytes": torch.from_numpy(blob),
                   "text_offsets": torch.from_numpy(offsets)}, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextFeatureTable":
        data = load_file(str(path))
        blob, offsets = data["text_bytes"].numpy().tobytes(), data["text_offsets"].tolist()
        texts = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]
        return cls(texts, data["features"])

    @classmethod
    def load_or_build(cls, folder: str | os.PathLike, fingerprint: str, encode, texts,
                      progress: bool = False) -> tuple["TextFeatureTable", Path, bool]:
        """The table of ``texts`` for the encoder named by ``fingerprint``: read from ``folder`` when an
        earlier run wrote it, else built and written there. Returns ``(table, file, loaded)``."""
        texts = sorted(set(texts))
        h = hashlib.sha256(fingerprint.encode())
        for t in texts:
            h.update(t.encode("utf-8") + b"\0")
        path = Path(folder) / f"text_features_{h.hexdigest()[:20]}.safetensors"
        if path.is_file():
            try:
                return cls.load(path), path, True
            except (OSError, KeyError, ValueError, UnicodeDecodeError, SafetensorError):
                path.unlink(missing_ok=True)  # a damaged file (e.g. from a full disk): encode again
        table = cls.build(encode, texts, progress=progress)
        table.save(path)
        return table, path, False
