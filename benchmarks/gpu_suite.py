"""The GPU check: one command, one table, a few minutes on one GPU.

    python benchmarks/gpu_suite.py                 # the paper's sizes on the first CUDA device
    python benchmarks/gpu_suite.py --cpu-smoke     # the same code paths at toy sizes on the CPU (CI runs it)

Sections (each guarded: an error or the time budget ends that section, not the suite):

- ``peak``: the device's bf16 matrix rate measured here (an 8192^3 product) beside its datasheet peak.
- ``encoder``: the TVTSv2-B/16 video encoder at the paper's setting (12 frames of 224^2, tube mask 0.5,
  bf16 autocast), forward + backward clips/s and MFU (model FLOPs counted analytically by
  :func:`divided_vit_flops`, over the datasheet bf16 peak), tvts's encoder against the same encoder with
  the published plain attention (``benchmarks/encoder_throughput.py``), each eager and ``torch.compile``d.
- ``pretrain``: ``tvts pretrain`` itself (the trainer, its DataLoader workers, bf16 autocast, AdamW,
  checkpoints) for 50 steps of the ``tvtsv2_vitb16`` and ``tvts_vitb16`` recipes from random weights on
  generated 224^2 videos (narrated shapes at 256^2): loss finite and falling, clips/s, peak memory.
- ``workers``: clips/s of one data worker (decode, crop, mask) on this machine's CPU, the clips/s of the
  TVTSv2-B/16 training step fed from memory, and so how many workers keep this GPU fed.
- ``vith14``: the TVTSv2-H/14 recipe (gradient checkpointing, tube mask 0.7) with AdamW: the largest
  batch that fits (doubling up to ``--max-batch``), and its clips/s.

Random weights everywhere (nothing is downloaded); the TVTS v1 text tower is a DistilBERT-base of random
weights built locally with the offline WordPiece tokenizer (``--tokenizer`` names another folder).
The table is printed last and written to ``--out`` as ``gpu_suite.json`` / ``gpu_suite.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402
from encoder_throughput import PlainDividedAttention  # noqa: E402

from tvts.config import (ModelConfig, RecipeConfig, SyntheticConfig, DividedViTConfig, load_model_config,  # noqa: E402
                         load_recipe, validate_recipe)
from tvts import recipe_data  # noqa: E402
from tvts.data.samples import collate  # noqa: E402
from tvts.data.masking import tube_mask  # noqa: E402
from tvts.models import build_model  # noqa: E402
from tvts.models.divided_vit import DividedSpaceTimeViT  # noqa: E402
from tvts.objectives import Pretrainer, build_objective  # noqa: E402
from tvts.train import trainer  # noqa: E402
from tvts.train.optim import build_optimizer, build_scheduler  # noqa: E402

# Dense bf16 tensor-core peak by the vendors' datasheets (SXM parts), in FLOP/s; matched on the device name.
# The suite's sections, in the order they run (the most telling first: a short budget drops the last).
SECTIONS = ("peak", "encoder", "pretrain", "workers", "vith14", "compile")
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


# ---------------------------------------------------------------------------------------------- FLOPs
def divided_vit_flops(cfg: DividedViTConfig, embed_dim: int, frames: int, kept: int) -> float:
    """Forward FLOPs of one clip through :class:`DividedSpaceTimeViT` (a multiply-add is 2 FLOPs).

    ``frames`` T, ``kept`` n patches per frame after tube masking, L = 1 + T*n tokens, width W, MLP width
    M. Patch embedding on all P patches of every frame 2*T*P*3p^2*W; per block: the Linears of the two
    attentions 2 * 8*L*W^2 and of the MLP 4*L*W*M; attention scores and weighted sums 4*W per
    (query, key) pair: the [CLS] against all L tokens in both attentions, a patch against [CLS] + its
    frame's n patches (space) and [CLS] + the T patches at its position (time); the final projection
    2*L*W*E. Norms, activations and softmax are left out (the MFU convention)."""
    w, p = cfg.width, cfg.patch
    patches = (cfg.img_size // p) ** 2
    length = 1 + frames * kept
    hidden = int(w * cfg.mlp_ratio)
    embed = 2 * frames * patches * 3 * p * p * w
    linears = 16 * length * w * w + 4 * length * w * hidden
    pairs = 2 * length + frames * kept * (kept + 1) + frames * kept * (frames + 1)
    return float(embed + cfg.depth * (linears + 4 * w * pairs) + 2 * length * w * embed_dim)


def training_flops(forward: float, embed_share: float = 0.0) -> float:
    """Model FLOPs of forward + backward: 3x the forward, the patch embedding 2x (frames get no gradient).
    Recomputation by gradient checkpointing is not counted (MFU counts the model's FLOPs, not the work done)."""
    return 3 * forward - embed_share


# ---------------------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bf16(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in BF16_PEAK.items() if k in name), None)


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class Budget:
    """The suite's wall-clock budget: a section starts only while enough of it is left."""

    def __init__(self, seconds: float):
        self.end = time.time() + seconds

    def left(self) -> float:
        return self.end - time.time()


# ---------------------------------------------------------------------------------------------- sections
def section_peak(args, device) -> dict:
    name, peak = device_peak(device)
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    s = timed(lambda: a @ b, steps=10, warmup=3, device=device)
    return {"device": name, "datasheet_bf16_tflops": peak and peak / 1e12, "measured_bf16_tflops": 2 * n**3 / s / 1e12,
            "torch": torch.__version__}


def encoder_config(args) -> tuple[DividedViTConfig, int]:
    m = load_model_config("tvtsv2_vitb16") if not args.cpu_smoke else smoke_model("video_clip")
    return replace(m.video, grad_checkpointing=False), m.embed_dim


def section_encoder(args, device, budget: Budget, peak: float | None, compiled: bool) -> list[dict]:
    """tvts's divided ViT against the published plain attention, forward + backward, eager or compiled."""
    import numpy as np

    cfg, embed_dim = encoder_config(args)
    torch.manual_seed(0)
    ours = DividedSpaceTimeViT(cfg, embed_dim)
    with torch.no_grad():  # a trained-looking temporal branch, so that both attentions do real work
        for blk in ours.transformer.resblocks:
            torch.nn.init.normal_(blk.timeattn.qkv.weight, std=0.02)
            torch.nn.init.normal_(blk.timeattn.proj.weight, std=0.02)
    plain = DividedSpaceTimeViT(cfg, embed_dim)
    for blk in plain.transformer.resblocks:
        blk.attn = PlainDividedAttention(cfg.width, cfg.heads, "space")
        blk.timeattn = PlainDividedAttention(cfg.width, cfg.heads, "time")
    plain.load_state_dict(ours.state_dict())
    ours, plain = ours.to(device).train(), plain.to(device).train()
    b, t, patches = args.encoder_batch, cfg.num_frames, (cfg.img_size // cfg.patch) ** 2
    frames = torch.randn(b, t, 3, cfg.img_size, cfg.img_size, device=device)
    rng = np.random.default_rng(0)
    keep = torch.stack([tube_mask(t, patches, cfg.mask_ratio, rng) for _ in range(b)]).to(device)
    kept = keep.shape[2]
    fwd = divided_vit_flops(cfg, embed_dim, t, kept)
    flops = training_flops(fwd, embed_share=2 * t * patches * 3 * cfg.patch**2 * cfg.width)

    def make_step(model):
        def step():
            model.zero_grad(set_to_none=True)
            with bf16(device):
                out = model(frames, keep).tokens
            out.float().square().mean().backward()
        return step

    # Same function first: the outputs of both attentions agree (bf16 rounding aside).
    with torch.no_grad(), bf16(device):
        a, c = ours(frames[:2], keep[:2]).tokens.float(), plain(frames[:2], keep[:2]).tokens.float()
    rel = ((a - c).norm() / c.norm()).item()
    if not rel < 2e-2:
        raise AssertionError(f"tvts and the plain reference disagree: relative difference {rel:.2e}")
    rows = []
    suffix = " + torch.compile" if compiled else ""
    for name, model in ((f"tvts (SDPA){suffix}", ours), (f"plain attention (published){suffix}", plain)):
        if budget.left() < (90 if compiled and device.type == "cuda" else 10):
            rows.append({"variant": name, "skipped": "time budget"})
            continue
        reset_memory(device)
        t0 = time.time()
        try:
            m = torch.compile(model) if compiled else model
            s = timed(make_step(m), steps=args.steps, warmup=args.warmup + (2 if compiled else 0), device=device)
        except Exception as e:  # noqa: BLE001 -- a variant that fails is reported, the others still run
            rows.append({"variant": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            continue
        clips = b / s
        rows.append({"variant": name, "batch": b, "tokens": 1 + t * kept, "clips_per_s": clips, "ms_per_step": 1000 * s,
                     "tflops": clips * flops / 1e12, "mfu": peak and clips * flops / peak,
                     "peak_mem_gib": peak_memory(device), "wall_s": time.time() - t0})
    return rows


def smoke_model(family: str) -> ModelConfig:
    from tvts.testing import tiny_model_config, tiny_tvtsv2_config

    if family == "video_clip":
        return tiny_tvtsv2_config(img_size=32, patch=8)
    return tiny_model_config(SMOKE_TEXT["dir"], sort_head="transformer", img_size=32, patch=8)


SMOKE_TEXT: dict = {}


def distilbert_folder(out: Path, tokenizer: str | None, smoke: bool) -> Path:
    """A DistilBERT of random weights (the published TVTS text tower's architecture; base size unless
    ``smoke``) with a real uncased WordPiece tokenizer, written once under ``out``."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from tvts.models.text import resolve_text_model

    d = out / ("distilbert_tiny" if smoke else "distilbert_base_random")
    if (d / "config.json").is_file():
        return d
    tok = AutoTokenizer.from_pretrained(tokenizer or resolve_text_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    sizes = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64) if smoke else {}
    DistilBertModel(DistilBertConfig(vocab_size=tok.vocab_size, **sizes)).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


def recipe_for(name: str, args, out: Path, steps: int, batch: int, workers: int) -> RecipeConfig:
    """A named recipe made runnable here: generated videos, random weights at one lr, ``steps`` steps."""
    if args.cpu_smoke:
        family = "video_clip" if name.startswith("tvtsv2") else "video_bert"
        cfg = load_recipe("demo")
        cfg = replace(cfg, model=smoke_model(family), objective=replace(cfg.objective, contrastive="clip"))
        size, num_train = 40, 12
    else:
        cfg = load_recipe(name)
        size, num_train = 256, args.videos
        if cfg.model.text.kind != "clip":
            cfg = replace(cfg, model=replace(cfg.model, text=replace(cfg.model.text, name=SMOKE_TEXT["dir"])))
    data = replace(cfg.data, root="", synthetic=SyntheticConfig(out=str(out / f"shapes{size}"), num_train=num_train,
                                                                num_val=2, num_heldout=8, size=size),
                   workers=workers, frame_store=False, text_features=False, cache_dir=str(out / "cache"))
    train = replace(cfg.train, out_dir=str(out / f"run_{name}"), steps=steps, batch_size=batch, warmup_steps=5,
                    pretrained_lr=0.0, lr=1e-4, time_limit_minutes=0.0, ckpt_every=steps, log_every=1,
                    precision="bf16", progress=False, device="auto", threads=0)
    cfg = replace(cfg, data=data, train=train)
    validate_recipe(cfg, f"gpu_suite:{name}")
    if args.repeat > 1:
        # The generated videos listed `--repeat` times: an epoch of many batches, as on a real corpus (the
        # DataLoader's workers restart at every epoch, and one batch per epoch would measure only that).
        root, train_list, _ = recipe_data.data_paths(cfg)
        lines = train_list.read_text().splitlines()
        repeated = out / f"train_x{args.repeat}.csv"
        repeated.write_text("\n".join([lines[0]] + lines[1:] * args.repeat) + "\n")
        cfg = replace(cfg, data=replace(cfg.data, synthetic=None, root=str(root), train_list=str(repeated)))
    return cfg


def section_pretrain(args, device, budget: Budget, out: Path) -> list[dict]:
    rows = []
    for name in args.recipes.split(","):
        batch = args.v2_batch if name.startswith("tvtsv2") else args.v1_batch
        if budget.left() < 60 and not args.cpu_smoke:
            rows.append({"recipe": name, "skipped": "time budget"})
            continue
        cfg = recipe_for(name, args, out, args.pretrain_steps, batch, args.workers)
        reset_memory(device)
        t0 = time.time()
        run = trainer.pretrain(cfg, overwrite=True)
        wall = time.time() - t0
        log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in log]
        k = max(1, len(losses) // 5)
        first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
        steady = [r["clips_per_s"] for r in log[len(log) // 2:]]
        rows.append({"recipe": name, "batch": batch, "steps": len(log), "loss_first": first, "loss_last": last,
                     "finite": all(math.isfinite(x) for x in losses), "falling": last < first,
                     "clips_per_s": sorted(steady)[len(steady) // 2], "peak_mem_gib": peak_memory(device),
                     "workers": args.workers, "wall_s": wall})
        if not (rows[-1]["finite"] and rows[-1]["falling"]):
            rows[-1]["problem"] = "loss not finite or not falling"
    return rows


def fed_step_rate(cfg: RecipeConfig, batch: dict, device, steps: int, warmup: int, model=None) -> tuple[float, dict]:
    """Seconds per training step of ``cfg``'s model + objective + AdamW on ``batch`` held in GPU memory
    (no data loading), through the trainer's own :func:`~tvts.train.trainer.train_step`."""
    model = model or build_model(cfg.model, pretrained_text=False)
    model.to(device).train()
    objective = build_objective(cfg.objective, model, int(batch["index"].max()) + 1).to(device).train()
    net = Pretrainer(model, objective)
    opt = build_optimizer(model, cfg.train, extra=objective)
    sched = build_scheduler(opt, cfg.train)
    params = [p for p in net.parameters() if p.requires_grad]
    last = {}

    def step():
        loss, *_ = trainer.train_step(net, batch, opt, sched, params, "bf16", cfg.train.grad_clip, device)
        last["loss"] = loss

    s = timed(step, steps=steps, warmup=warmup, device=device)
    return s, {"loss": float(last["loss"].detach())}


def dataset_for(cfg: RecipeConfig):
    root, train_list, _ = recipe_data.data_paths(cfg)
    return recipe_data.transcript_dataset(cfg, root, train_list, train=True)


def section_workers(args, device, budget: Budget, out: Path) -> dict:
    cfg = recipe_for("tvtsv2_vitb16", args, out, 10, args.v2_batch, 0)
    ds = dataset_for(cfg)
    n = min(len(ds), args.worker_samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        ds[0]  # open files, warm caches
        t0 = time.perf_counter()
        samples = [ds[i % len(ds)] for i in range(n)]
        per_worker = n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    batch = collate([samples[i % n] for i in range(cfg.train.batch_size)])
    batch = trainer.to_device(batch, device)
    reset_memory(device)
    s, extra = fed_step_rate(cfg, batch, device, steps=args.steps, warmup=args.warmup)
    gpu = cfg.train.batch_size / s
    return {"recipe": "tvtsv2_vitb16", "one_worker_clips_per_s": per_worker, "fed_step_clips_per_s": gpu,
            "batch": cfg.train.batch_size, "workers_to_feed": math.ceil(gpu / per_worker), "peak_mem_gib": peak_memory(device),
            "fed_loss": extra["loss"]}


def section_vith(args, device, budget: Budget, out: Path) -> dict:
    """Doubling the batch of the H/14 recipe (gradient checkpointing on) until it no longer fits."""
    if args.cpu_smoke:
        cfg = recipe_for("tvtsv2_vith14", args, out, 10, 2, 0)
        cfg = replace(cfg, model=replace(cfg.model, video=replace(cfg.model.video, grad_checkpointing=True)))
    else:  # the H/14 model in the B/16 recipe (same objective and optimiser settings)
        cfg = recipe_for("tvtsv2_vitb16", args, out, 10, 8, 0)
        cfg = replace(cfg, model=load_model_config("tvtsv2_vith14"))
    if not cfg.model.video.grad_checkpointing:
        raise AssertionError("the H/14 recipe should train with gradient checkpointing")
    ds = dataset_for(cfg)
    samples = [ds[i % len(ds)] for i in range(min(len(ds), 16))]
    model = build_model(cfg.model, pretrained_text=False)
    best, tried = None, []
    b = args.vith_start
    while b <= args.max_batch and budget.left() > 45:
        batch = trainer.to_device(collate([samples[i % len(samples)] for i in range(b)]), device)
        reset_memory(device)
        try:
            s, _ = fed_step_rate(replace(cfg, train=replace(cfg.train, batch_size=b)), batch, device, steps=2, warmup=1, model=model)
        except torch.OutOfMemoryError:
            tried.append({"batch": b, "fits": False})
            break
        finally:
            del batch
            model.zero_grad(set_to_none=True)
        best = {"batch": b, "clips_per_s": b / s, "s_per_step": s, "peak_mem_gib": peak_memory(device)}
        tried.append({"batch": b, "fits": True, "clips_per_s": b / s, "peak_mem_gib": peak_memory(device)})
        b *= 2
    params = sum(p.numel() for p in model.parameters())
    return {"recipe": "tvtsv2_vith14", "params_m": params / 1e6, "largest_batch": best, "tried": tried,
            "limit": f"doubling from {args.vith_start} up to --max-batch {args.max_batch}"}


# ---------------------------------------------------------------------------------------------- table
def _gib(r: dict) -> str:
    return f"{r['peak_mem_gib']:.1f}" if r.get("peak_mem_gib") is not None else "-"


def _table(title: str, columns: list[str], rows: list[dict], done_key: str, cells) -> list[str]:
    """A markdown table: one row per result, named by its first field; ``cells(r)`` gives the other columns
    of a result that has ``done_key``; a skipped or failed one says why."""
    out = [f"## {title}", "", "| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    for r in rows:
        name = r.get("variant") or r.get("recipe")
        rest = [str(c) for c in cells(r)] if done_key in r else [str(r.get("skipped") or r.get("error"))] + [""] * (len(columns) - 2)
        out.append("| " + " | ".join([name, *rest]) + " |")
    return out + [""]


def markdown(res: dict) -> str:
    pk = res.get("peak", {})
    lines = [f"# GPU suite: {pk.get('device', '?')} (torch {pk.get('torch', torch.__version__)})", ""]
    if "measured_bf16_tflops" in pk:
        lines.append(f"bf16 matmul measured {pk['measured_bf16_tflops']:.0f} TFLOP/s; datasheet peak "
                     f"{pk['datasheet_bf16_tflops'] or float('nan'):.0f} TFLOP/s (the MFU denominator).\n")
    enc = [r for key in ("encoder", "compile") if isinstance(res.get(key), list) for r in res[key]]
    ref = next((r.get("clips_per_s") for r in enc if r["variant"] == "plain attention (published)"), None)
    for r in enc:
        if r.get("clips_per_s") and ref:
            r["vs_plain_eager"] = r["clips_per_s"] / ref
    if enc:
        lines += _table("TVTSv2-B/16 video encoder, 12x224^2, tube mask 0.5, bf16, forward + backward",
                        ["variant", "batch", "clips/s", "ms/step", "TFLOP/s", "MFU", "vs plain eager", "peak GiB"], enc,
                        "clips_per_s", lambda r: [r["batch"], f"{r['clips_per_s']:.1f}", f"{r['ms_per_step']:.1f}",
                                                  f"{r['tflops']:.1f}", f"{100 * r['mfu']:.1f} %" if r.get("mfu") else "-",
                                                  f"{r.get('vs_plain_eager', float('nan')):.2f}x", _gib(r)])
    pre = res.get("pretrain")
    if isinstance(pre, list):
        lines += _table("50-step pretraining through the trainer (random init, generated 224^2 clips, bf16)",
                        ["recipe", "batch", "steps", "loss first 1/5 -> last 1/5", "finite, falling", "clips/s",
                         "peak GiB", "workers", "wall s"], pre,
                        "loss_first", lambda r: [r["batch"], r["steps"], f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}",
                                                 f"{r['finite']}, {r['falling']}", f"{r['clips_per_s']:.1f}", _gib(r),
                                                 r["workers"], f"{r['wall_s']:.0f}"])
    wk = res.get("workers")
    if isinstance(wk, dict) and "one_worker_clips_per_s" in wk:
        lines += [f"Data workers: one worker gives {wk['one_worker_clips_per_s']:.1f} clips/s; the TVTSv2-B/16 step fed from "
                  f"memory takes {wk['fed_step_clips_per_s']:.1f} clips/s (batch {wk['batch']}): "
                  f"**{wk['workers_to_feed']} workers** keep this GPU fed.", ""]
    vh = res.get("vith14")
    if isinstance(vh, dict) and "tried" in vh:
        best = vh["largest_batch"]
        tried = ", ".join(f"{t['batch']}{'' if t['fits'] else ' (out of memory)'}" for t in vh["tried"])
        if best:
            lines.append(f"TVTSv2-H/14 ({vh['params_m']:.0f} M parameters, gradient checkpointing, AdamW, bf16): largest batch "
                         f"tried that fits **{best['batch']}** ({vh['limit']}; tried {tried}), {best['clips_per_s']:.1f} clips/s, "
                         f"peak {best['peak_mem_gib'] or 0:.1f} GiB.")
        lines.append("")
    for key in SECTIONS:
        if isinstance(res.get(key), dict) and "error" in res[key]:
            lines.append(f"- {key}: **error** {res[key]['error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU: every code path, in seconds")
    p.add_argument("--out", default="runs/gpu_suite", help="where runs, data and the report go")
    p.add_argument("--budget", type=float, default=480.0, help="seconds; a section starts only while enough is left")
    p.add_argument("--sections", default=",".join(SECTIONS), help="a comma-separated subset, run in the order given")
    p.add_argument("--smoke-compile", action="store_true", help="with --cpu-smoke: the torch.compile rows too")
    p.add_argument("--tokenizer", default=None, help="a WordPiece tokenizer folder for the TVTS v1 text tower "
                   "(default: the offline all-MiniLM-L6-v2 one)")
    p.add_argument("--encoder-batch", type=int, default=32)
    p.add_argument("--v2-batch", type=int, default=96, help="per-GPU batch of the tvtsv2_vitb16 recipe")
    p.add_argument("--v1-batch", type=int, default=128, help="per-GPU batch of the tvts_vitb16 recipe")
    p.add_argument("--pretrain-steps", type=int, default=50)
    p.add_argument("--videos", type=int, default=96, help="generated training videos")
    p.add_argument("--repeat", type=int, default=20, help="times the training list names each generated video")
    p.add_argument("--recipes", default="tvtsv2_vitb16,tvts_vitb16", help="the pretraining section's recipes")
    p.add_argument("--workers", type=int, default=12, help="DataLoader workers of the pretraining runs")
    p.add_argument("--worker-samples", type=int, default=48)
    p.add_argument("--vith-start", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.encoder_batch, args.v2_batch, args.v1_batch, args.pretrain_steps = 2, 4, 4, 6
        args.workers, args.worker_samples, args.vith_start, args.max_batch, args.steps, args.warmup = 0, 4, 2, 4, 2, 1
        args.repeat = 2
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        p.error("no CUDA device: run on a GPU, or use --cpu-smoke")
    else:
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget)
    SMOKE_TEXT["dir"] = str(distilbert_folder(out, args.tokenizer, args.cpu_smoke))
    wanted = args.sections.split(",")
    res: dict = {"args": vars(args)}
    peak = None
    if args.cpu_smoke and "compile" in wanted and not args.smoke_compile:
        wanted.remove("compile")  # Inductor on the CPU compiles C++ for ~45 s: not in CI's smoke run
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)} (known: {', '.join(SECTIONS)})")
    for name in wanted:
        t0 = time.time()
        print(f"[gpu_suite] {name} ({budget.left():.0f} s of the budget left)", flush=True)
        try:
            if name == "peak":
                res[name] = section_peak(args, device)
                peak = res[name]["datasheet_bf16_tflops"] and res[name]["datasheet_bf16_tflops"] * 1e12
            elif name in ("encoder", "compile"):
                res[name] = section_encoder(args, device, budget, peak, compiled=name == "compile")
            elif name == "pretrain":
                res[name] = section_pretrain(args, device, budget, out)
            elif name == "workers":
                res[name] = section_workers(args, device, budget, out)
            else:
                res[name] = section_vith(args, device, budget, out)
        except Exception as e:  # noqa: BLE001 -- one section's failure is reported; the others still run
            traceback.print_exc()
            res[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        print(f"[gpu_suite] {name} done in {time.time() - t0:.0f} s: {json.dumps(res[name], default=str)[:600]}", flush=True)
        (out / "gpu_suite.partial.json").write_text(json.dumps(res, indent=2, default=str))
        with contextlib.suppress(Exception):
            reset_memory(device)
    write_report(str(out / "gpu_suite"), res, markdown(res))
    return res


if __name__ == "__main__":
    main()
