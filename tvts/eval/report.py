"""Results of the main job: a printed table, ``results.json`` and a PNG of the training curves."""

from __future__ import annotations

import json
from pathlib import Path

from tvts.train.metrics_log import read_metrics

RESULTS_VERSION = 1


def results_table(results: dict) -> str:
    """A plain-text table of the headline numbers of ``results.json``."""
    lines = []
    s = results.get("sort")
    if s:
        lines += [
            f"Transcript sorting on {s['num_videos']} held-out videos (K={s['K']})",
            f"  {'input':<16}{'segment acc':>12}{'order acc':>12}",
            f"  {'text + video':<16}{s['text_video']['segment_acc']:>12.3f}{s['text_video']['order_acc']:>12.3f}",
            f"  {'text only':<16}{s['text_only']['segment_acc']:>12.3f}{s['text_only']['order_acc']:>12.3f}",
            f"  {'chance':<16}{s['chance_segment_acc']:>12.3f}{s['chance_order_acc']:>12.3f}",
        ]
    r = results.get("retrieval")
    if r:
        lines += [
            f"Zero-shot retrieval: {r['num_queries']} captions x {r['num_videos']} held-out clips",
            f"  {'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MedR':>8}",
            *(f"  {name:<16}{r[p + 'R@1']:>8.1f}{r[p + 'R@5']:>8.1f}{r[p + 'R@10']:>8.1f}{r[p + 'MedR']:>8.1f}"
              for name, p in (("text->video", "t2v_"), ("video->text", "v2t_"))),
            f"  {'chance R@1':<16}{r['chance_R@1']:>8.1f}",
        ]
    tm = results.get("timing")
    if tm:
        lines.append("Time: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in tm.items()))
    return "\n".join(lines)


def write_results(run_dir: str | Path, results: dict) -> Path:
    path = Path(run_dir) / "results.json"
    path.write_text(json.dumps({"version": RESULTS_VERSION, **results}, indent=2))
    return path


def plot_training_curves(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Loss terms and in-batch accuracies against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in [k for k in rows[0] if k == "loss" or k.startswith("loss_")]:
        ax1.plot(steps, [r.get(key) for r in rows], label=key)
    ax1.set_xlabel("step"), ax1.set_ylabel("loss"), ax1.legend(), ax1.set_title("training losses")
    for key in [k for k in rows[0] if k.endswith("_acc")]:
        ax2.plot(steps, [r.get(key) for r in rows], label=key)
    ax2.set_xlabel("step"), ax2.set_ylabel("accuracy (training batch)"), ax2.legend(), ax2.set_title("training accuracies")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
