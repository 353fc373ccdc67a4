"""Which torch device a run uses (``train.device`` / ``--device``): shared by training and evaluation."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the process's GPU (``local_rank``) when CUDA is available, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    return torch.device("cuda", local_rank)
