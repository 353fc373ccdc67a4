"""How much of the transcript order a trained model knows, read three ways on the main job's sort data.

Transcript sorting (TVTS Eq. 2) is scored by the model's sort head. A model trained with the frame-transcript
contrastive (``objective.contrastive: frame``) has a second way to place a segment: the part of the clip whose
own embedding is most similar to the segment's text embedding. This prints per-segment and whole-order
accuracy on the held-out sort videos (the main job's ``sort`` protocol: centred segments, a fixed shuffle
per video) for

- ``sort head``: the model's sort logits (what ``results.json`` reports);
- ``part embeddings``: logit(text j, position k) = <text embedding j, embedding of part k encoded alone>;
- ``both``: the sum of the two log-softmaxes (the part similarities at the recipe's temperature).

It tells whether a low sort accuracy is the sort head's or the representation's.

    .venv/bin/python benchmarks/sort_diagnostic.py runs/demo          # the main job's run folder

Writes ``<report>.json`` and ``<report>.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from _report import write_report  # noqa: E402  (benchmarks/ is on the path when run as a script)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder with model/ and recipe.yaml (e.g. runs/demo)")
    p.add_argument("--report", default="benchmarks/results/sort_diagnostic")
    args = p.parse_args(argv)

    from tvts.config import load_recipe
    from tvts.data.samples import collate
    from tvts.models import load_model
    from tvts.objectives.sorting import sort_metrics
    from tvts.objectives.video_order import encode_transcripts, part_embeddings
    from tvts.recipe_data import data_paths, transcript_dataset

    run = Path(args.run)
    cfg = load_recipe(str(run / "recipe.yaml"))
    model = load_model(run / "model").eval()
    root, _, val_list = data_paths(cfg)
    dataset = transcript_dataset(cfg, root, val_list, train=False)
    parts_logits, head_logits, orders = [], [], []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=collate):
            k = len(batch["texts"][0])
            feats = encode_transcripts(model, batch["texts"])  # [B, K, W_t], shuffled
            segments = model.text_embedding(feats)  # [B, K, D]
            parts = part_embeddings(model, batch["frames"], batch.get("keep"), k)  # [B, K, D], time order
            parts_logits.append(torch.einsum("bjd,bkd->bjk", segments, parts) / cfg.objective.temperature)
            head_logits.append(model.sort_logits(model.sort_video(batch["frames"]), feats))
            orders.append(batch["order"])
    order = torch.cat(orders)
    parts_l, head_l = torch.cat(parts_logits), torch.cat(head_logits)
    rows = {"sort head": head_l, "part embeddings": parts_l,
            "both": torch.log_softmax(parts_l, -1) + torch.log_softmax(head_l, -1)}
    results = {"run": str(run), "num_videos": len(order), "K": order.shape[1], "dataset": str(val_list)}
    lines = [f"Transcript order on {len(order)} held-out videos (K={order.shape[1]}), run {run}", "",
             "| read from | segment acc | order acc |", "|---|---|---|"]
    for name, logits in rows.items():
        m = {n: v.item() for n, v in sort_metrics(logits, order, "kway").items()}
        results[name] = m
        lines.append(f"| {name} | {m['segment_acc']:.3f} | {m['order_acc']:.3f} |")
    md = "\n".join(lines)
    write_report(args.report, results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
