"""How much of the transcript order a trained model knows, read three ways on the main job's sort data.

Transcript sorting (TVTS Eq. 2) is scored by the model's sort head. A model trained with the frame-transcript
contrastive (``objective.contrastive: frame``) has a second way to place a segment: the part of the clip whose
own embedding is most similar to the segment's text embedding. This prints per-segment and whole-order
accuracy on the held-out sort videos (the main job's ``sort`` protocol: centred segments, a fixed shuffle
per video) for

- ``sort head``: the model's sort logits (what ``results.json`` reports);
- ``part embeddings``: logit(text j, position k) = <text embedding j, embedding of part k encoded alone>;
- ``both``: the sum of the two log-softmaxes (the part similarities at the recipe's temperature).

It tells whether a low sort accuracy is the sort head's or the representation's. Two more readings of the
sort head's accuracy say where it is lost:

- ``by event coverage``: for each held-out segment, the largest share of its span that one event of the video
  covers (from the annotations: 1.0 when the segment lies inside one event, 0.5 when it straddles two halves).
  The protocol's centred start puts the K segments of a video at one phase of the 5 s event grid, so a
  video's segments are all aligned or all straddling;
- ``training videos``: the same protocol on the first ``--train-videos`` training videos; close to the held-out
  accuracy when the model did not overfit its training videos.

    .venv/bin/python benchmarks/sort_diagnostic.py runs/demo          # the main job's run folder

Writes ``<report>.json`` and ``<report>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from _report import write_report  # noqa: E402  (benchmarks/ is on the path when run as a script)


COVERAGE_BINS = ((0.0, 0.625), (0.625, 0.875), (0.875, 1.01))  # straddling ~halves, in between, inside one event


def event_coverage(root, name: str, bounds: torch.Tensor) -> list[float]:
    """For each segment ``bounds[k] = (S_k, E_k)`` of video ``name``, the largest share of ``[S_k, E_k]`` that
    one of its annotated events covers (0 with no event there)."""
    from tvts.data.datasets import yt_paths

    events = json.loads(Path(yt_paths(root, name)[1]).read_text())["events"]
    out = []
    for s, e in bounds.tolist():
        overlap = max((min(e, ev["end"]) - max(s, ev["start"]) for ev in events), default=0.0)
        out.append(max(overlap, 0.0) / (e - s))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder with model/ and recipe.yaml (e.g. runs/demo)")
    p.add_argument("--report", default="benchmarks/results/sort_diagnostic")
    p.add_argument("--train-videos", type=int, default=200, help="training videos read by the same protocol")
    args = p.parse_args(argv)

    from tvts.config import load_recipe
    from tvts.data.samples import collate
    from tvts.models import load_model
    from tvts.objectives.sorting import sort_metrics
    from tvts.objectives.video_order import part_embeddings
    from tvts.recipe_data import data_paths, transcript_dataset

    run = Path(args.run)
    cfg = load_recipe(str(run / "recipe.yaml"))
    model = load_model(run / "model").eval()
    root, train_list, val_list = data_paths(cfg)

    def read(split_list):
        """Sort-head logits, part-embedding logits ``[N, K, K]``, the true order ``[N, K]`` and each segment's
        event coverage ``[N, K]`` (time order) over the videos of ``split_list``, by the sort protocol."""
        dataset = transcript_dataset(cfg, root, split_list, train=False)
        head_logits, parts_logits, orders, coverage = [], [], [], []
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=collate):
                k = len(batch["texts"][0])
                feats = model.transcript_features(batch["texts"])  # [B, K, W_t], shuffled
                segments = model.text_embedding(feats)  # [B, K, D]
                parts = part_embeddings(model, batch["frames"], batch.get("keep"), k)  # [B, K, D], time order
                parts_logits.append(torch.einsum("bjd,bkd->bjk", segments, parts) / cfg.objective.temperature)
                head_logits.append(model.sort_logits(model.sort_video(batch["frames"]), feats))
                orders.append(batch["order"])
                coverage += [event_coverage(root, name, bounds) for name, bounds in zip(batch["video_id"], batch["bounds"])]
        return torch.cat(head_logits), torch.cat(parts_logits), torch.cat(orders), torch.tensor(coverage)

    head_l, parts_l, order, coverage = read(val_list)
    rows = {"sort head": head_l, "part embeddings": parts_l,
            "both": torch.log_softmax(parts_l, -1) + torch.log_softmax(head_l, -1)}
    results = {"run": str(run), "num_videos": len(order), "K": order.shape[1], "dataset": str(val_list)}
    lines = [f"Transcript order on {len(order)} held-out videos (K={order.shape[1]}), run {run}", "",
             "| read from | segment acc | order acc |", "|---|---|---|"]
    for name, logits in rows.items():
        m = {n: v.item() for n, v in sort_metrics(logits, order, "kway").items()}
        results[name] = m
        lines.append(f"| {name} | {m['segment_acc']:.3f} | {m['order_acc']:.3f} |")

    # Each transcript's predicted position, scored at the position it truly holds in time (coverage is in time order).
    right = (head_l.argmax(-1) == order).float()  # [N, K], shuffled order
    right_in_time = torch.zeros_like(right).scatter_(1, order, right)
    lines += ["", "The sort head's segment accuracy by event coverage (the largest share of a segment's span inside "
              "one event):", "", "| event coverage | segments | videos | segment acc |", "|---|---|---|---|"]
    results["by_event_coverage"] = []
    for lo, hi in COVERAGE_BINS:
        sel = (coverage >= lo) & (coverage < hi)
        if sel.any():
            row = {"from": lo, "to": hi, "segments": int(sel.sum()), "videos": int(sel.any(1).sum()),
                   "segment_acc": right_in_time[sel].mean().item()}
            results["by_event_coverage"].append(row)
            lines.append(f"| [{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'} | {row['segments']} | {row['videos']} | "
                         f"{row['segment_acc']:.3f} |")

    with tempfile.TemporaryDirectory() as tmp:  # the first training videos, as a split list of their own
        names = Path(train_list).read_text().splitlines()
        subset = Path(tmp) / "train_subset.csv"
        subset.write_text("\n".join(names[:1 + args.train_videos]) + "\n")  # the header, then the names
        train_head, _, train_order, _ = read(subset)
    m = {n: v.item() for n, v in sort_metrics(train_head, train_order, "kway").items()}
    results["training_videos"] = {"num_videos": len(train_order), **m}
    lines += ["", f"The same protocol on the first {len(train_order)} training videos: segment acc {m['segment_acc']:.3f}, "
              f"order acc {m['order_acc']:.3f} (held-out: {results['sort head']['segment_acc']:.3f}, "
              f"{results['sort head']['order_acc']:.3f})."]
    md = "\n".join(lines)
    write_report(args.report, results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
