"""Training checkpoints: ``<out>/checkpoints/step_XXXXXXXX/`` holds the model (``model.safetensors`` +
``config.json``) and ``trainer_state.pt`` (optimiser, scheduler, step, RNG, counters; plain tensors
and numbers, so it loads with ``weights_only=True``). Each folder is written beside its final name
and renamed into place; ``latest`` names the newest complete one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from tvts.models.tvts import replace_dir

STATE_NAME = "trainer_state.pt"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(out_dir: str | os.PathLike, step: int, model, state: dict, keep: int = 2) -> Path:
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    try:
        model.save_pretrained(tmp)
        torch.save(state, tmp / STATE_NAME)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_text_atomic(root / "latest", final.name)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    marker = Path(out_dir) / "checkpoints" / "latest"
    if not marker.is_file():
        return None
    path = marker.parent / marker.read_text().strip()
    return path if (path / STATE_NAME).is_file() else None


def load_trainer_state(ckpt: str | os.PathLike) -> dict:
    return torch.load(Path(ckpt) / STATE_NAME, map_location="cpu", weights_only=True)
