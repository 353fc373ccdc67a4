"""Training checkpoints: ``<out>/checkpoints/step_XXXXXXXX/`` holds the model (``model.safetensors`` +
``config.json``) and ``trainer_state.pt`` (optimiser, scheduler, step, RNG, counters; plain tensors
and numbers, so it loads with ``weights_only=True``). Each folder is written beside its final name
and renamed into place; ``latest`` names the newest complete one.

With ``train.strategy: fsdp`` a checkpoint is sharded instead: ``sharded/`` is a
``torch.distributed.checkpoint`` folder with each process's shard of the model, objective and optimiser
state (written by every process in parallel, read back under any number of processes), beside
``config.json`` and ``trainer_state.pt`` (everything but the optimiser). The run's final ``model/`` is
one ``model.safetensors`` either way."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tvts.files import CONFIG_NAME
from tvts.errors import CheckpointError
from tvts.models.base import load_state_strict, replace_dir

STATE_NAME = "trainer_state.pt"
SHARDED_NAME = "sharded"  # FSDP: the torch.distributed.checkpoint folder
OBJECTIVE_NAME = "objective.safetensors"  # the objective's own parameters and state (e.g. CPD's memory bank)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(out_dir: str | os.PathLike, step: int, model, state: dict, objective: torch.nn.Module | None = None,
                    keep: int = 2, preprocessor: dict | None = None) -> Path:
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    try:
        model.save_pretrained(tmp, preprocessor=preprocessor)
        torch.save(state, tmp / STATE_NAME)
        objective_state = {k: v.detach().contiguous().cpu() for k, v in (objective.state_dict() if objective is not None else {}).items()}
        if objective_state:
            save_file(objective_state, str(tmp / OBJECTIVE_NAME))
        _finish(root, tmp, final, keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _finish(root: Path, tmp: Path, final: Path, keep: int) -> None:
    replace_dir(tmp, final)
    _write_text_atomic(root / "latest", final.name)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def save_sharded_checkpoint(out_dir: str | os.PathLike, step: int, net: torch.nn.Module, opt: torch.optim.Optimizer,
                            state: dict, config_json: str, is_main: bool, keep: int = 2) -> Path:
    """FSDP: every process writes its shards of ``net`` (model + objective) and ``opt`` into a folder beside
    the final one; process 0 adds ``state`` (without the optimiser) and ``config.json``, then renames the
    folder into place once all have written. Collective: every process calls it."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(out_dir) / "checkpoints"
    final, tmp = root / f"step_{step:08d}", root / f".tmp_step_{step:08d}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(net, opt)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / SHARDED_NAME))
    if is_main:
        torch.save(state, tmp / STATE_NAME)
        (tmp / CONFIG_NAME).write_text(config_json)
    dist.barrier()
    if is_main:
        _finish(root, tmp, final, keep)
    dist.barrier()
    return final


def load_sharded_checkpoint(ckpt: str | os.PathLike, net: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """FSDP: read the shards of :func:`save_sharded_checkpoint` into ``net`` and ``opt`` (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(ckpt) / SHARDED_NAME
    if not path.is_dir():
        raise CheckpointError(str(ckpt), missing=[SHARDED_NAME])
    model_state, optim_state = get_state_dict(net, opt)
    dcp.load({"model": model_state, "optim": optim_state}, checkpoint_id=str(path))
    set_state_dict(net, opt, model_state_dict=model_state, optim_state_dict=optim_state)


def is_sharded(ckpt: str | os.PathLike) -> bool:
    return (Path(ckpt) / SHARDED_NAME).is_dir()


def full_model_state(net: torch.nn.Module, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """FSDP: the whole state dict of ``net``'s submodule under ``prefix``, gathered onto the CPU of process 0
    (empty on the others). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}


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
