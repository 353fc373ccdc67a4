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
from safetensors.torch import load_file, save_file

from tvts.errors import CheckpointError
from tvts.models.base import load_state_strict, replace_dir

STATE_NAME = "trainer_state.pt"
OBJECTIVE_NAME = "objective.safetensors"  # the objective's own parameters and state (e.g. CPD's memory bank)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(out_dir: str | os.PathLike, step: int, model, state: dict, objective: torch.nn.Module | None = None,
                    keep: int = 2) -> Path:
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    try:
        model.save_pretrained(tmp)
        torch.save(state, tmp / STATE_NAME)
        objective_state = {k: v.detach().contiguous().cpu() for k, v in (objective.state_dict() if objective is not None else {}).items()}
        if objective_state:
            save_file(objective_state, str(tmp / OBJECTIVE_NAME))
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


def load_objective_state(objective: torch.nn.Module, ckpt: str | os.PathLike) -> None:
    """Restore the objective's parameters and state saved with checkpoint ``ckpt`` (strictly)."""
    path = Path(ckpt) / OBJECTIVE_NAME
    if not objective.state_dict():
        return
    if not path.is_file():
        raise CheckpointError(str(ckpt), missing=[OBJECTIVE_NAME])
    device = next(iter(objective.state_dict().values())).device
    load_state_strict(objective, load_file(str(path), device=str(device)), str(path))
