"""benchmarks/gpu_suite.py: its FLOP count (the MFU numerator) and its CPU smoke run, so the GPU check cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tvts.config import DividedViTConfig
from tvts.data.masking import tube_mask
from tvts.models.divided_vit import DividedSpaceTimeViT


@pytest.fixture(scope="module")
def suite():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.py"
    spec = importlib.util.spec_from_file_location("gpu_suite", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("frames,mask,mlp_ratio", [(4, 0.5, 4.0), (3, 0.0, 2.0), (5, 0.75, 4.0)])
def test_analytic_flops_equal_torchs_operator_count(suite, frames, mask, mlp_ratio):
    """divided_vit_flops / training_flops against torch's FlopCounterMode over the real forward and backward
    (SDPA's math backend, so the attention products are counted too), for several clip shapes."""
    torch.manual_seed(0)
    cfg = DividedViTConfig(img_size=32, num_frames=frames, tubelet=1, patch=8, width=64, depth=2,
                             heads=4, mlp_ratio=mlp_ratio, max_slots=8, mask_ratio=mask, mask_kind="tube", act="quick_gelu")
    model = DividedSpaceTimeViT(cfg, 24)
    b, patches = 2, 16
    x = torch.randn(b, frames, 3, 32, 32)
    keep = None
    if mask > 0:
        rng = np.random.default_rng(0)
        keep = torch.stack([tube_mask(frames, patches, mask, rng) for _ in range(b)])
    kept = keep.shape[2] if keep is not None else patches
    fwd = suite.divided_vit_flops(cfg, 24, frames, kept)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(x, keep).tokens.sum()
    assert fc.get_total_flops() / b == fwd
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(x, keep).tokens.square().mean().backward()
    embed = 2 * frames * patches * 3 * 8 * 8 * 64
    assert fc.get_total_flops() / b == suite.training_flops(fwd, embed_share=embed)


def test_cpu_smoke_runs_every_section(suite, tmp_path):
    """--cpu-smoke: every section runs the library's real code paths at toy sizes and reports sane figures."""
    res = suite.main(["--cpu-smoke", "--out", str(tmp_path)])
    for key in ("peak", "encoder", "pretrain", "workers", "vith14"):
        assert not (isinstance(res[key], dict) and "error" in res[key]), res[key]
    assert res["peak"]["measured_bf16_tflops"] > 0
    assert [r["variant"] for r in res["encoder"]] == ["tvts (SDPA)", "plain attention (published)"]
    assert all(r["clips_per_s"] > 0 and r["tflops"] > 0 for r in res["encoder"])
    assert [r["recipe"] for r in res["pretrain"]] == ["tvtsv2_vitb16", "tvts_vitb16"]
    for r in res["pretrain"]:  # the trainer ran every step; the loss is finite and went down on repeated clips
        assert r["steps"] == 6 and r["finite"] and r["falling"], r
    w = res["workers"]
    assert w["workers_to_feed"] == math.ceil(w["fed_step_clips_per_s"] / w["one_worker_clips_per_s"]) >= 1
    assert math.isfinite(w["fed_loss"])
    v = res["vith14"]
    assert v["largest_batch"]["batch"] == max(t["batch"] for t in v["tried"] if t["fits"])
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert report["pretrain"] == res["pretrain"]
    assert "| tvts (SDPA) |" in (tmp_path / "gpu_suite.md").read_text()
