"""Can a trained model tell a held-out video's transcript from its direction twin's? The appearance test.

Narrated shapes comes in direction pairs (:mod:`tvts.data.synthetic`, ``scene_group``): two videos with the same
scene, the same actors at the same moments, and opposite actions. Their transcripts name the same shapes and
colours; only the actions differ. So an embedding that holds appearance but not motion matches a video to its
own transcript and to its twin's equally well (50 %), however well it retrieves among other scenes.

For each run folder this encodes the held-out narrated videos (the main job's validation split: centred
segments, middle frames; one video embedding and one transcript embedding, the mean of its K segments', as the
clip-level InfoNCE, TVTS Eq. 3, scores them) and prints

- ``self beats twin``: the fraction of videos whose own transcript scores above the twin's (chance 50 %);
- ``v2t R@1`` among all held-out transcripts, and ``pair R@1``: the top transcript is its own or the twin's;
- ``twin errors``: of the videos whose top transcript is wrong, the fraction where it is the twin's.

The twins are read from the annotations (the same actors, every action the opposite), not assumed.

    .venv/bin/python benchmarks/twin_diagnostic.py runs/objectives_v4/contrastive/seed0 runs/objectives_v4/frame/seed0

Writes ``<report>.json`` and ``<report>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from _report import write_report  # noqa: E402  (benchmarks/ is on the path when run as a script)


def twins(root, names) -> torch.Tensor:
    """``[n]``: the index in ``names`` (YT-Temporal split-list names under ``root``) of each video's direction
    twin, -1 where it has none there; read from the annotations: the same acting shapes in the same order,
    every action the opposite."""
    from tvts.data.datasets import yt_paths
    from tvts.data.synthetic import OPPOSITE

    events = []
    for name in names:
        annotation = json.loads(Path(yt_paths(root, name)[1]).read_text())
        events.append(tuple((e["colour"], e["shape"], e["action"]) for e in annotation["events"]))
    row = {e: i for i, e in enumerate(events)}
    return torch.tensor([row.get(tuple((c, s, OPPOSITE[a]) for c, s, a in e), -1) for e in events])


@torch.no_grad()
def measure(run: Path) -> dict:
    from tvts.config import load_recipe
    from tvts.data.samples import collate
    from tvts.eval.metrics import retrieval_metrics
    from tvts.models import load_model
    from tvts.recipe_data import data_paths, transcript_dataset

    cfg = load_recipe(str(run / "recipe.yaml"))
    model = load_model(run / "model").eval()
    root, _, val_list = data_paths(cfg)
    dataset = transcript_dataset(cfg, root, val_list, train=False)
    videos, texts = [], []
    for batch in DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=collate):
        out = model(batch["frames"], batch["texts"], sort=False)
        videos.append(F.normalize(out["video_embed"], dim=-1))
        texts.append(F.normalize(out["text_embed"], dim=-1))
    sim = torch.cat(videos) @ torch.cat(texts).T  # [n videos, n transcripts]
    twin = twins(root, dataset.names)
    has = twin >= 0
    n, idx = len(sim), torch.arange(len(sim))
    top = sim.argmax(1)
    wrong = (top != idx) & has
    return {"run": str(run), "videos": n, "with_twin": int(has.sum()),
            "self_beats_twin": (sim[idx[has], idx[has]] > sim[idx[has], twin[has]]).float().mean().item() * 100,
            "v2t_R@1": retrieval_metrics(sim.T, idx)["v2t_R@1"],  # transcript i is video i's
            "pair_R@1": ((top == idx) | (top == twin))[has].float().mean().item() * 100,
            "twin_errors": (top[wrong] == twin[wrong]).float().mean().item() * 100 if wrong.any() else float("nan"),
            "chance_R@1": 100 / n}


@torch.no_grad()
def text_separation(recipe: str = "demo", overrides: list[str] | None = None) -> list[dict]:
    """How far apart the frozen text encoder puts a held-out video's text and its twin's, before any training.

    For each text side a clip-level loss can use (``caption``: the clip's one caption, as CPD and S-ViLM train;
    ``transcript``: the mean of its K segments' features, as M_base's L_base does): the mean cosine between a
    video's text and its twin's, the mean cosine between unrelated videos' texts, and the ratio of the two
    distances ``(1 - twin) / (1 - unrelated)``: the share of the usual gap between two videos' texts that is
    left to tell a video from its twin (the smaller, the less the text says about the motion)."""
    from tvts.config import load_recipe
    from tvts.models import build_model
    from tvts.recipe_data import data_paths, transcript_dataset

    cfg = load_recipe(recipe, overrides or [])
    root, _, val_list = data_paths(cfg)
    dataset = transcript_dataset(cfg, root, val_list, train=False)
    tower = build_model(cfg.model).text_model.eval()
    samples = [dataset[i] for i in range(len(dataset))]
    k = len(samples[0]["texts"])
    segments = tower([t for s in samples for t in s["texts"]]).reshape(len(samples), k, -1).mean(1)
    sides = {"caption": tower([s["caption"] for s in samples]), "transcript": segments}
    twin = twins(root, dataset.names)
    has, n = twin >= 0, len(samples)
    rows = []
    for side, feats in sides.items():
        f = F.normalize(feats.float(), dim=-1)
        sim = f @ f.T
        twin_cos = sim[torch.arange(n)[has], twin[has]].mean().item()
        other = sim[~torch.eye(n, dtype=torch.bool)].mean().item()
        rows.append({"text": side, "videos": n, "twin_cos": twin_cos, "unrelated_cos": other,
                     "twin_share": (1 - twin_cos) / (1 - other)})
    return rows


def _mean_std(values: list[float]) -> str:
    m = statistics.fmean(values)
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="run folders with model/ and recipe.yaml (e.g. runs/demo)")
    p.add_argument("--report", help="report path without suffix (default: benchmarks/results/twin_diagnostic, or "
                   "benchmarks/results/twin_texts with --texts)")
    p.add_argument("--texts", action="store_true", help="only the text side: how far the frozen text encoder puts a "
                   "video's caption / transcript from its twin's (no trained model needed)")
    args = p.parse_args(argv)
    if args.texts:
        rows = text_separation()
        lines = [f"The frozen text encoder (the demo model's MiniLM, before any training) on the {rows[0]['videos']} "
                 "held-out narrated videos: cosine between a video's text and its direction twin's, and between "
                 "unrelated videos' texts; twin share = (1 - twin) / (1 - unrelated), the part of the usual distance "
                 "between two videos' texts that separates a video from its twin. Produced by `python "
                 "benchmarks/twin_diagnostic.py --texts`.", "",
                 "| text | twin cosine | unrelated cosine | twin share |", "|---|---|---|---|"]
        lines += [f"| {r['text']} | {r['twin_cos']:.3f} | {r['unrelated_cos']:.3f} | {r['twin_share']:.2f} |" for r in rows]
        write_report(args.report or "benchmarks/results/twin_texts", {"texts": rows}, "\n".join(lines))
        return 0
    if not args.runs:
        p.error("give run folders, or --texts")
    rows = [measure(Path(r)) for r in args.runs]
    # Runs of one benchmark variant (``<out>/<variant>/seed<k>``) make one line: mean ± std over their seeds.
    groups: dict[str, list[dict]] = {}
    for r in rows:
        run = Path(r["run"])
        groups.setdefault(str(run.parent) if run.name.startswith("seed") else str(run), []).append(r)
    lines = [f"Clip-level video-transcript matching on the {rows[0]['videos']} held-out narrated videos "
             f"({rows[0]['with_twin']} with their direction twin among them), in %; mean ± std over the runs of a line. "
             f"Produced by `python benchmarks/twin_diagnostic.py {' '.join(args.runs)}`.", "",
             "| runs | seeds | self beats twin | v2t R@1 | pair R@1 (self or twin) | twin errors |", "|---|---|---|---|---|---|"]
    for name, rs in groups.items():
        cells = [_mean_std([r[m] for r in rs]) for m in ("self_beats_twin", "v2t_R@1", "pair_R@1", "twin_errors")]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    lines.append(f"| chance | | 50.0 | {rows[0]['chance_R@1']:.1f} | {2 * rows[0]['chance_R@1']:.1f} | |")
    write_report(args.report or "benchmarks/results/twin_diagnostic", {"runs": rows}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
