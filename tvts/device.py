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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware: a CUDA GPU that supports bf16, or a
    CPU with AVX512-BF16 or AMX (where oneDNN ran the demo's MiniLM 2.3x as fast as float32; without them bf16
    is converted in software and not expected to be faster)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private but long-standing; absent: say no
    return any(getattr(cpu, name, lambda: False)() for name in checks)
