"""Pictures of evaluation results (PNG, matplotlib Agg): a confusion matrix, the top-5 class scores of a
few videos (as TVTS Figure 4) and retrieval examples (a query and its top-3 videos as frame strips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tvts.data.decode import decode_frames, probe
from tvts.data.sampling import tsn_timestamps


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def frame_strip(path: str, num_frames: int = 4) -> np.ndarray:
    """uint8 ``[H, num_frames * W, 3]``: TSN-midpoint frames of the video side by side."""
    frames = decode_frames(path, tsn_timestamps(0.0, probe(path).duration, num_frames, None), threads=1)
    return np.concatenate(list(frames), axis=1)


def confusion_matrix_png(matrix, class_names: list[str], out: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted) with the counts written in."""
    plt = _plt()
    m = np.asarray(matrix, dtype=np.float64)
    frac = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = min(4 + 0.45 * n, 30)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    per_class = np.diag(frac)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=8 if n <= 30 else 4)
    ax.set_yticks(range(n), [f"{c} ({100 * a:.0f} %)" for c, a in zip(class_names, per_class)], fontsize=8 if n <= 30 else 4)
    ax.set_xlabel("predicted"), ax.set_ylabel("true (per-class accuracy)")
    ax.set_title(f"{title or 'confusion matrix'}: mean per-class accuracy {100 * per_class.mean():.1f} %")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def top5_png(logits: torch.Tensor, labels: list[int], class_names: list[str], paths: list[str], out: str | Path,
             scale: float = 100.0) -> Path:
    """One row per video: its frames, then the 5 highest class probabilities (softmax of ``scale`` x
    logits: 100 for cosine similarities, as the published zero-shot code scales them; 1 for a trained
    classifier's logits) as bars; the true class in green. ``logits`` ``[n, C]`` for the ``n`` videos of
    ``paths``."""
    plt = _plt()
    n = len(paths)
    probs = torch.softmax(logits.float() * scale, dim=1)
    fig, axes = plt.subplots(n, 2, figsize=(11, 1.9 * n), gridspec_kw={"width_ratios": [3, 2]}, squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(frame_strip(paths[r]))
        axes[r, 0].set_axis_off()
        axes[r, 0].set_title(f"true: {class_names[labels[r]]}", fontsize=9, loc="left")
        p, idx = probs[r].topk(min(5, probs.shape[1]))
        colours = ["tab:green" if i == labels[r] else "tab:gray" for i in idx.tolist()]
        axes[r, 1].barh(range(len(idx)), p.tolist(), color=colours)
        axes[r, 1].set_yticks(range(len(idx)), [class_names[i] for i in idx.tolist()], fontsize=8)
        axes[r, 1].invert_yaxis()
        axes[r, 1].set_xlim(0, 1)
        axes[r, 1].set_xlabel("probability", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def retrieval_examples_png(examples: list[dict], out: str | Path) -> Path:
    """One row per query (``{"query", "truth", "rank", "top": [3 paths]}``): the caption, then its top-3 videos
    as frame strips, the right video framed in green; when it is not among them, a last column shows it
    with its rank."""
    plt = _plt()
    examples = [dict(e, top=list(e["top"])) for e in examples]
    for e in examples:
        if e["truth"] not in e["top"]:
            e["top"].append(e["truth"])  # shown last, labelled with its rank
    n, k = len(examples), max(len(e["top"]) for e in examples)
    fig, axes = plt.subplots(n, k, figsize=(4.5 * k, 1.8 * n + 0.4), squeeze=False)
    for r, e in enumerate(examples):
        for c in range(k):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(e["top"]):
                ax.set_axis_off()
                continue
            ax.imshow(frame_strip(e["top"][c]))
            hit = e["top"][c] == e["truth"]
            for side in ax.spines.values():
                side.set_color("tab:green" if hit else "lightgray")
                side.set_linewidth(4 if hit else 1)
            label = f"#{e.get('rank', c + 1) if hit else c + 1}" + (" (the right video)" if hit else "")
            ax.set_title(f"query: {e['query'][:80]}   {label}" if c == 0 else label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
