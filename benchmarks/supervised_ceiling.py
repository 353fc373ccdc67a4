"""The supervised ceiling: the main job's video backbone trained with action labels, for a wall-clock budget.

What the self-supervised numbers of the main job are read against. The same model (``--config``, the main
job's recipe: architecture, input size, frames, optimiser, batch, data pipeline and frame store) is trained
from scratch with the *labels* of the events of the training videos: every event (5 s, one action) is a
clip of ``num_frames`` TSN frames over its span, classified into the 8 actions by a linear layer on the
L2-normalised video embedding (cross-entropy, AdamW at the recipe's lr, warmup then cosine). After ``--minutes``
of training the held-out clips are encoded as the main job encodes them and go through the same frozen-feature
protocols: linear probe and kNN (train list -> test list) and video-to-video retrieval by class; the trained
classifier's own accuracy on the held-out test clips is printed too. Text protocols do not apply.

    .venv/bin/python benchmarks/supervised_ceiling.py                  # the demo recipe, 6.5 minutes
    .venv/bin/python benchmarks/supervised_ceiling.py --minutes 2 model.video.depth=2

Writes ``<report>.json`` and ``<report>.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from tvts.config import load_recipe
from tvts.data.datasets import TranscriptVideoDataset, yt_paths
from tvts.data.samples import sample_rng
from tvts.data.sampling import tsn_timestamps
from tvts.data.synthetic import ACTIONS
from tvts.data.transforms import VideoTransform
from tvts.models import build_model
from tvts.train.distributed import init_distributed
from tvts.recipe_data import data_paths
from tvts.train.trainer import attach_frame_store, reseed

from _report import write_report  # noqa: E402  (benchmarks/ is on the path when run as a script)


SCALE = 10.0  # logit scale of the classifier on normalised embeddings


class EventClips(Dataset):
    """Every event of the training videos as a labelled clip: ``frames`` ``[M, 3, size, size]`` (TSN over the
    event, random times and crop from (seed, draw)), ``label``. ``draw`` indexes an endless stream: draw ``d``
    is event ``perm[d % n]`` of a seeded permutation per pass."""

    def __init__(self, videos: TranscriptVideoDataset, seed: int):
        self.videos, self.seed = videos, seed
        self.events = []
        for i in range(len(videos)):
            ann = json.loads(Path(yt_paths(videos.root, videos.names[i])[1]).read_text())
            self.events += [(i, ev["start"], ev["end"], ACTIONS.index(ev["action"])) for ev in ann["events"]]

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, draw: int) -> dict:
        n = len(self.events)
        perm = np.random.default_rng([self.seed, draw // n]).permutation(n)
        i, start, end, label = self.events[perm[draw % n]]
        rng = sample_rng(self.seed, draw // n, int(perm[draw % n]), 0)
        times = tsn_timestamps(start, end, self.videos.num_frames, rng)
        frames, resized = self.videos.builder.reader.frames(i, self.videos.video_path(i), times)  # the frame store's
        return {"frames": self.videos.transform(frames, rng, resized=resized), "label": label}


def encode_heldout(model, cfg, heldout: Path) -> dict:
    """The main job's held-out clips through the main job's frozen-feature protocols, plus the labels."""
    from tvts.eval.main_job import heldout_protocols
    from tvts.eval.protocols import Encoder

    from tvts.recipe_data import processor

    tmp = Path(cfg.train.out_dir)
    shutil.rmtree(tmp / "eval_features", ignore_errors=True)
    enc = Encoder(model, str(tmp / "model"), processor(cfg), batch_size=cfg.eval.batch_size, workers=cfg.data.workers, device=torch.device("cpu"),
                  cache_dir=tmp / "eval_features", progress=False)
    return heldout_protocols(enc, heldout), enc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--minutes", type=float, default=6.5, help="wall-clock training budget (the main job trains ~6.5 min)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/supervised_ceiling")
    p.add_argument("--report", default="benchmarks/results/supervised_ceiling")
    p.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    args = p.parse_args(argv)
    cfg = load_recipe(args.config, [f"train.out_dir={args.out}", f"train.seed={args.seed}", "train.progress=false",
                                    *args.overrides])
    info = init_distributed("cpu")
    t = cfg.train
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    root, train_list, _ = data_paths(cfg)
    heldout = Path(cfg.data.synthetic.out) / "heldout"
    v = cfg.model.video
    videos = TranscriptVideoDataset(root, train_list, num_frames=v.num_frames,
                                    transform=VideoTransform(v.img_size, cfg.data.resize_ratio, train=True), seed=t.seed)
    attach_frame_store(cfg, videos, info)
    data = EventClips(videos, t.seed)
    loader = iter(DataLoader(data, batch_size=t.batch_size, num_workers=cfg.data.workers,
                             sampler=range(1 << 40), persistent_workers=cfg.data.workers > 0))
    reseed(t.seed, 0, 0)
    model = build_model(cfg.model).train()
    head = torch.nn.Linear(cfg.model.embed_dim, len(ACTIONS))
    params = [q for q in model.video_model.parameters()] + list(model.vid_proj.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    budget = args.minutes * 60
    # The cosine needs a step count: measured from the first 50 steps' speed.
    planned, step, t0, losses, accs = None, 0, time.time(), [], []
    while time.time() - t0 < budget and (planned is None or step < planned):
        if step == 50:
            planned = max(51, int(50 * budget / (time.time() - t0)))
        horizon = planned or 10 * t.warmup_steps
        lr = t.lr * min(1.0, (step + 1) / t.warmup_steps) * (
            t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / horizon))))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = next(loader)
        # On the L2-normalised embedding (what every protocol sees), scaled as a cosine classifier.
        logits = SCALE * head(F.normalize(model.encode_video(batch["frames"]), dim=-1))
        loss = F.cross_entropy(logits, batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        step += 1
        losses.append(loss.item())
        accs.append((logits.argmax(1) == batch["label"]).float().mean().item())
        if step % 200 == 0:
            print(f"step {step}  {time.time() - t0:.0f} s  loss {np.mean(losses[-200:]):.3f}  "
                  f"train acc {np.mean(accs[-200:]):.3f}", flush=True)
    seconds = time.time() - t0
    model.eval()
    model.save_pretrained(Path(cfg.train.out_dir) / "model")
    results, enc = encode_heldout(model, cfg, heldout)
    meta = json.loads((heldout / "msrvtt" / "MSRVTT_data.json").read_text())["videos"]
    test = [m for m in meta if m["split"] == "test"]
    # The classifier on the held-out test clips: the features heldout_protocols encoded (the encoder's cache).
    clips = enc.videos("heldout", [str(heldout / "videos" / "all" / f"{m['video_id']}.mp4") for m in meta],
                       [m["video_id"] for m in meta])
    x, kept = clips.rows([m["video_id"] for m in test])
    with torch.no_grad():
        head_acc = 100.0 * ((SCALE * head(x)).argmax(1) == torch.tensor([test[j]["category"] for j in kept])).float().mean().item()
    report = {
        "config": args.config, "overrides": args.overrides, "minutes": args.minutes, "steps": step,
        "clips_seen": step * t.batch_size, "seconds": round(seconds, 1), "clips_per_s": round(step * t.batch_size / seconds, 1),
        "final_train_loss": float(np.mean(losses[-100:])), "classifier_top1": head_acc,
        "linear_probe": results["linear_probe"]["top1"], "knn": results["knn"]["top1"], "v2v_R@1": results["v2v"]["R@1"],
        "chance_top1": results["linear_probe"]["chance_top1"],
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
    }
    md = "\n".join([
        f"Supervised ceiling of `{args.config}`: {step} steps of {t.batch_size} labelled events in {seconds:.0f} s "
        f"({report['clips_per_s']} clips/s), then the main job's held-out protocols (top-1 %, chance {report['chance_top1']:.1f})",
        "", "| classifier | linear probe | kNN | v2v R@1 |", "|---|---|---|---|",
        f"| {head_acc:.1f} | {report['linear_probe']:.1f} | {report['knn']:.1f} | {report['v2v_R@1']:.1f} |", "",
        f"Command: `python benchmarks/supervised_ceiling.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
    ])
    write_report(args.report, report, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
