"""Training throughput and memory of the TVTSv2 video encoder: tvts's divided attention (grouped
batches through ``F.scaled_dot_product_attention``) against the same block written the plain way, as
the published code does (explicit ``softmax(q k^T) v`` per group), in one run on one machine.

Both encoders hold the same weights (random, with a non-zero temporal attention so that both branches
do work); the script first asserts that they give the same outputs and gradients, then times
forward + backward on masked clips and prints clips/s, memory and the ratios.

Memory: on CUDA, the peak memory allocated during the timed steps above what was resident before
(the weights of both encoders and the batch); on CPU (no allocator statistics), the bytes of
activations saved for the backward pass, which is what grows with clip length and batch.

Paper setting (a GPU):   python benchmarks/encoder_throughput.py --device cuda
CPU smoke size:          python benchmarks/encoder_throughput.py --width 192 --depth 2 --frames 4 --img 112 --batch 2
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn as nn

from tvts.config import DividedViTConfig
from tvts.data.masking import tube_mask
from tvts.models.divided_vit import DividedAttention, DividedSpaceTimeViT


class PlainDividedAttention(DividedAttention):
    """The published formulation: q scaled, the [CLS] row computed over every token, then the patches
    regrouped per frame (space) or per position (time) with the [CLS] key prepended, each group
    through an explicit ``softmax(q k^T) v``. Same parameters as :class:`DividedAttention`."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        b, length, w = x.shape
        h, d = self.heads, w // self.heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, length, h, d).permute(0, 2, 1, 3).reshape(b * h, length, d) for z in (q, k, v))
        q = q * d ** -0.5
        cls_out = (q[:, :1] @ k.transpose(1, 2)).softmax(-1) @ v  # [B*H, 1, d]
        t, n = num_frames, (length - 1) // num_frames

        def regroup(z: torch.Tensor) -> torch.Tensor:  # [(B H), T*n, d] -> [(B H G), S, d]
            z = z.reshape(b * h, t, n, d)
            if self.axis == "time":
                z = z.transpose(1, 2)
            return z.reshape(-1, z.shape[2], d)

        groups = t if self.axis == "space" else n
        q_, k_, v_ = regroup(q[:, 1:]), regroup(k[:, 1:]), regroup(v[:, 1:])
        k_ = torch.cat([k[:, :1].repeat_interleave(groups, 0), k_], dim=1)
        v_ = torch.cat([v[:, :1].repeat_interleave(groups, 0), v_], dim=1)
        out = (q_ @ k_.transpose(1, 2)).softmax(-1) @ v_  # [(B H G), S, d]
        out = out.reshape(b * h, groups, -1, d)
        if self.axis == "time":
            out = out.transpose(1, 2)
        out = torch.cat([cls_out, out.reshape(b * h, t * n, d)], dim=1)
        return self.proj(out.reshape(b, h, length, d).permute(0, 2, 1, 3).reshape(b, length, w))


def build_pair(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, nn.Module]:
    cfg = DividedViTConfig(img_size=args.img, num_frames=args.frames, tubelet=1, patch=args.patch,
                           width=args.width, depth=args.depth, heads=args.heads, max_slots=max(12, args.frames),
                           mask_ratio=args.mask, mask_kind="tube", act="quick_gelu", grad_checkpointing=args.checkpointing)
    torch.manual_seed(args.seed)
    ours = DividedSpaceTimeViT(cfg, args.embed_dim)
    with torch.no_grad():  # a trained-looking temporal branch, so that both attentions do real work
        for blk in ours.transformer.resblocks:
            nn.init.normal_(blk.timeattn.qkv.weight, std=0.02)
            nn.init.normal_(blk.timeattn.proj.weight, std=0.02)
        nn.init.normal_(ours.temporal_embedding, std=0.02)
    plain = DividedSpaceTimeViT(cfg, args.embed_dim)
    for blk in plain.transformer.resblocks:
        blk.attn = PlainDividedAttention(args.width, args.heads, "space")
        blk.timeattn = PlainDividedAttention(args.width, args.heads, "time")
    plain.load_state_dict(ours.state_dict())
    return ours.to(device).train(), plain.to(device).train()


def make_batch(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    import numpy as np

    g = torch.Generator().manual_seed(args.seed)
    frames = torch.randn(args.batch, args.frames, 3, args.img, args.img, generator=g)
    p = (args.img // args.patch) ** 2
    if args.mask == 0:
        return frames.to(device), None
    rng = np.random.default_rng(args.seed)
    keep = torch.stack([tube_mask(args.frames, p, args.mask, rng) for _ in range(args.batch)])
    return frames.to(device), keep.to(device)


def autocast(args: argparse.Namespace, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()


def step(model: nn.Module, frames: torch.Tensor, keep: torch.Tensor | None, args, device) -> torch.Tensor:
    """One forward + backward; returns the output tokens ``[B, 1 + T*n, E]`` (detached)."""
    model.zero_grad(set_to_none=True)
    with autocast(args, device):
        tokens = model(frames, keep).tokens
    tokens.float().square().mean().backward()
    return tokens.detach().float()


def check_same(ours: nn.Module, plain: nn.Module, frames, keep, args, device) -> float:
    """Assert equal outputs and gradients; returns the largest output difference."""
    a, b = step(ours, frames, keep, args, device), step(plain, frames, keep, args, device)
    tol = 5e-2 if args.bf16 else 1e-4
    diff = (a - b).abs().max().item()
    assert torch.allclose(a, b, atol=tol, rtol=tol), f"outputs differ by {diff}"
    for (name, pa), pb in zip(ours.named_parameters(), plain.parameters()):
        if pa.grad is not None:
            scale = pa.grad.abs().max().item() + 1e-12
            assert (pa.grad - pb.grad).abs().max().item() <= (20 * tol) * scale, f"gradient of {name} differs"
    return diff


def saved_activation_bytes(model: nn.Module, frames, keep, args, device) -> int:
    """Bytes of the distinct storages autograd saves for backward in one step."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(model, frames, keep, args, device)
    return sum(seen.values())


def measure(model: nn.Module, frames, keep, args, device) -> dict:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step(model, frames, keep, args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()  # weights of both encoders and the batch
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(model, frames, keep, args, device)
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    if device.type == "cuda":
        memory, kind = torch.cuda.max_memory_allocated() - resident, "peak allocated above the resident weights"
    else:
        memory, kind = saved_activation_bytes(model, frames, keep, args, device), "saved for backward"
    return {"clips_per_s": args.batch / seconds, "s_per_step": seconds, "memory": memory, "memory_kind": kind}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--mask", type=float, default=0.5, help="tube mask ratio (TVTSv2-B/16: 0.5)")
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps per implementation")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing per block")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.width % args.heads:
        p.error("width must be divisible by heads")
    ours, plain = build_pair(args, device)
    frames, keep = make_batch(args, device)
    diff = check_same(ours, plain, frames, keep, args, device)
    n_keep = keep.shape[2] if keep is not None else (args.img // args.patch) ** 2
    print(f"device={device.type} width={args.width} depth={args.depth} heads={args.heads} frames={args.frames} "
          f"img={args.img} patch={args.patch} mask={args.mask} (tokens 1+{args.frames}x{n_keep}) batch={args.batch} "
          f"bf16={args.bf16} checkpointing={args.checkpointing} threads={torch.get_num_threads()}")
    print(f"same outputs and gradients: max |diff| = {diff:.2e}")
    results = {"sdpa": measure(ours, frames, keep, args, device), "plain": measure(plain, frames, keep, args, device)}
    for name, r in results.items():
        print(f"{name:>6}: {r['clips_per_s']:8.2f} clips/s ({r['s_per_step'] * 1000:8.1f} ms/step), "
              f"memory {r['memory'] / 2**20:9.1f} MiB ({r['memory_kind']})")
    speed = results["sdpa"]["clips_per_s"] / results["plain"]["clips_per_s"]
    memory = results["sdpa"]["memory"] / max(1, results["plain"]["memory"])
    print(f"ratio sdpa/plain: throughput x{speed:.2f}, memory x{memory:.2f}")
    results["ratio"] = {"throughput": speed, "memory": memory, "max_abs_diff": diff}
    return results


if __name__ == "__main__":
    main()
