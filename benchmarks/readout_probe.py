"""Where does a trained encoder keep the actions? The linear probe at several read-outs of one model.

The main job's linear probe (the 8 actions of the held-out clips, train list -> test list, on l2-normalised
features) reads a model's video embedding. This reads the same encoder at other places too:

- ``embedding``: what the model uses (``video.pool``: [CLS], token mean or group tokens);
- ``cls`` and ``token_mean``: the projected [CLS] and the projected mean of the other output tokens, whatever
  the model pools; so a model whose embedding is at chance shows whether its backbone learned the actions
  and the read-out lost them, or the backbone never learned them;
- ``groups``: the concatenated group tokens, when the encoder has them (S-ViLM).

For an encoder with grouping blocks it also prints, per block, how the video tokens are assigned on the
held-out clips: the spread of the assignment logits over the M groups (std, mean over tokens), the mean
largest softmax weight (1/M when uniform), and how often a Gumbel-sampled assignment (what training sees)
picks the noise-free argmax (what evaluation uses; 1/M when the logits are flat).

    .venv/bin/python benchmarks/readout_probe.py runs/objectives_scale/contrastive/seed0 runs/objectives_scale/svilm/seed0

Writes ``<report>.json`` and ``<report>.md`` (default ``benchmarks/results/readout_probe``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from tvts import load_model_and_processor
from tvts.config import load_recipe
from tvts.eval.annotations import read_ucf101
from tvts.eval.main_job import heldout_root
from tvts.eval.protocols import frozen_feature_protocols

from _report import write_report  # noqa: E402  (benchmarks/ is on the path when run as a script)

READOUTS = ("embedding", "cls", "token_mean", "groups")


def readouts(model, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """``frames`` ``[B, T, 3, S, S]`` -> each read-out ``[B, *]`` of :data:`READOUTS` the model has."""
    video = model.video_model(frames)
    out = {"embedding": model.video_embedding(video), "cls": model.vid_proj(video.cls),
           "token_mean": model.vid_proj(video.tokens[:, 1:].mean(1))}
    if video.groups is not None:
        out["groups"] = video.groups.flatten(1)
    return out


def assignment_stats(block, groups: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator) -> dict:
    """How one grouping block assigns ``tokens`` ``[B, N, W]`` to ``groups`` ``[B, M, W]``."""
    logits = block.logits(groups, tokens)
    soft = (logits / block.tau).softmax(-1)
    gumbel = -torch.empty_like(logits).exponential_(generator=generator).log()
    return {"logit_std": logits.std(-1).mean().item(), "max_weight": soft.max(-1).values.mean().item(),
            "gumbel_is_argmax": ((logits + gumbel).argmax(-1) == logits.argmax(-1)).float().mean().item(),
            "uniform": 1.0 / logits.shape[-1]}


def measure(run: Path, batch_size: int = 32) -> dict:
    model, proc = load_model_and_processor(run / "model")
    heldout = heldout_root(load_recipe(str(run / "recipe.yaml")))  # the main job's held-out clips
    meta = json.loads((heldout / "msrvtt" / "MSRVTT_data.json").read_text())["videos"]
    ucf_to_id = {v["ucf_path"]: v["video_id"] for v in meta}
    blocks = list(getattr(model.video_model, "grouping", []))
    captured: list[list[dict]] = [[] for _ in blocks]
    g = torch.Generator().manual_seed(0)
    hooks = [b.register_forward_hook(lambda blk, inp, out, j=j: captured[j].append(assignment_stats(blk, *inp, g)))
             for j, b in enumerate(blocks)]

    def encode(split) -> dict[str, torch.Tensor]:
        paths = [str(heldout / "videos" / "all" / f"{ucf_to_id[v]}.mp4") for v in split.video_ids]
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, len(paths), batch_size):
            with torch.no_grad():
                for k, x in readouts(model, torch.cat([proc(p) for p in paths[i:i + batch_size]])).items():
                    parts.setdefault(k, []).append(x)
        return {k: torch.cat(v) for k, v in parts.items()}

    train, test = read_ucf101(heldout / "ucf", "train"), read_ucf101(heldout / "ucf", "test")
    xtr, xte = encode(train), encode(test)
    for h in hooks:
        h.remove()
    ytr, yte = torch.tensor(train.labels), torch.tensor(test.labels)
    probe = {}
    for k in xtr:
        r = frozen_feature_protocols((F.normalize(xtr[k], dim=-1), ytr), (F.normalize(xte[k], dim=-1), yte),
                                     len(test.class_names), protocols=("linear-probe",))
        probe[k] = r["linear-probe"].metrics["top1"]
    # every batch weighs the same in the per-block means (the last one may be smaller; close enough for a diagnostic)
    grouping = [{key: sum(s[key] for s in stats) / len(stats) for key in stats[0]} for stats in captured]
    return {"run": str(run), "linear_probe": probe, "chance": 100.0 / len(test.class_names), "grouping": grouping}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders with model/ (e.g. runs/objectives_scale/svilm/seed0)")
    p.add_argument("--report", default="benchmarks/results/readout_probe")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    results = [measure(Path(r)) for r in args.runs]
    lines = ["Linear probe (top-1 %, held-out clips, chance 12.5) of each model at several read-outs of its encoder. "
             f"Produced by `python benchmarks/readout_probe.py {' '.join(args.runs)}`.", "",
             "| run | " + " | ".join(READOUTS) + " |", "|---|" + "---|" * len(READOUTS)]
    for r in results:
        lines.append(f"| {r['run']} | " + " | ".join(f"{r['linear_probe'][k]:.1f}" if k in r["linear_probe"] else "–"
                                                    for k in READOUTS) + " |")
    grouped = [r for r in results if r["grouping"]]
    if grouped:
        lines += ["", "Grouping blocks on the held-out clips: spread of the assignment logits over the groups, mean "
                  "largest softmax weight, and how often a Gumbel sample picks the argmax (both 1/M when the logits "
                  "are flat).", "", "| run | block | logit std | largest weight | Gumbel = argmax | 1/M |",
                  "|---|---|---|---|---|---|"]
        for r in grouped:
            for j, s in enumerate(r["grouping"]):
                lines.append(f"| {r['run']} | {j} | {s['logit_std']:.2f} | {s['max_weight']:.2f} | "
                             f"{s['gumbel_is_argmax']:.2f} | {s['uniform']:.3f} |")
    write_report(args.report, {"runs": results}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
