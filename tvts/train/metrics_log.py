"""The one logging path: a JSONL file of metric rows (one per ``log_every`` steps), on process 0, mirrored to
TensorBoard when the package is installed and to Weights & Biases when a project is named; the curves PNG
of a run."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path


class MetricsLog:
    """Appends rows to ``path``. On resume (``truncate_after=step``) rows logged after that step by the
    interrupted run are dropped first, so the file reads as one uninterrupted run. ``tensorboard_dir``: also
    write every numeric field as a TensorBoard scalar there (``bad`` as ``bad/<reason>``), with the events
    after ``truncate_after`` purged on resume; skipped (with one note) when ``tensorboard`` is not installed.
    ``wandb_project``: also log the same scalars to that W&B project, as one W&B run per tvts run (its id is
    kept in ``wandb_run_id`` beside ``path``, so a resumed run continues it; W&B only takes increasing steps,
    so rows the interrupted run logged after the checkpoint stay there), with ``run_config`` as its config."""

    def __init__(self, path: str | Path, enabled: bool = True, truncate_after: int = 0, tensorboard_dir: str | Path | None = None,
                 wandb_project: str = "", run_config: dict | None = None):
        self.path = Path(path)
        self.enabled = enabled
        self.board = None
        self.wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after and self.path.exists():
            rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= truncate_after]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif not truncate_after:
            self.path.write_text("")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("[tvts] TensorBoard logging is off: pip install 'tvts[tensorboard]' to get it")
            else:
                self.board = SummaryWriter(str(tensorboard_dir), purge_step=truncate_after + 1 if truncate_after else None)
        if wandb_project:
            self.wandb = _wandb_run(wandb_project, self.path.parent, run_config or {}, resume=bool(truncate_after))

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        scalars = _scalars(row)
        step = int(row["step"])
        if self.board is not None:
            for key, value in scalars.items():
                self.board.add_scalar(key, value, step)
            self.board.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _scalars(row: dict) -> dict[str, float]:
    """The finite numbers of a row, by name (``step`` left out; a dict field ``bad`` gives ``bad/<reason>``)."""
    out = {}
    for key, value in row.items():
        if key == "step":
            continue
        if isinstance(value, dict):
            out.update({f"{key}/{sub}": float(v) for sub, v in value.items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def _wandb_run(project: str, run_dir: Path, config: dict, resume: bool):
    """A W&B run for the tvts run in ``run_dir``: a new one, or (``resume``) the one named in ``wandb_run_id``."""
    from tvts.deps import require

    wandb = require("wandb", "train.wandb_project", field="train.wandb_project")
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else uuid.uuid4().hex[:16]
    id_file.write_text(run_id)
    return wandb.init(project=project, id=run_id, resume="allow", dir=str(run_dir), name=run_dir.name, config=config)


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_training_curves(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Four panels against the step: the loss terms; the in-batch accuracies with their chance levels
    (1/B for retrieval in a batch of B, 1/K for a segment's position); the learning rate; gradient norm
    and clips/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for key in sorted(k for k in keys if k == "loss" or k.startswith("loss_")):
        axes[0].plot(steps, [r.get(key, float("nan")) for r in rows], label=key)
    axes[0].set_ylabel("loss"), axes[0].set_title("training losses")
    for key in sorted(k for k in keys if k.endswith("_acc")):
        axes[1].plot(steps, [r.get(key, float("nan")) for r in rows], label=key)
    for name, level in chance_levels(rows).items():
        axes[1].axhline(level, ls=":", lw=1, color="grey")
        axes[1].annotate(name, (steps[0] if steps else 0, level), fontsize=7, color="grey", va="bottom")
    axes[1].set_ylabel("accuracy (training batch)"), axes[1].set_title("training accuracies (dotted: chance)")
    axes[2].plot(steps, [r.get("lr", float("nan")) for r in rows], label="lr")
    axes[2].set_ylabel("learning rate"), axes[2].set_title("learning rate")
    axes[3].plot(steps, [r.get("grad_norm", float("nan")) for r in rows], label="grad norm")
    twin = axes[3].twinx()
    twin.plot(steps, [r.get("clips_per_s", float("nan")) for r in rows], color="tab:orange", label="clips/s")
    axes[3].set_ylabel("gradient norm (before clipping)"), twin.set_ylabel("clips/s"), axes[3].set_title("gradient norm, throughput")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def chance_levels(rows: list[dict]) -> dict[str, float]:
    """Chance of the in-batch accuracies the rows log: ``batch`` (B clips: 1/B) and ``num_segments`` (K: 1/K)
    when the rows carry them."""
    out = {}
    if rows and rows[0].get("batch"):
        out["retrieval chance 1/B"] = 1.0 / rows[0]["batch"]
    if rows and rows[0].get("num_segments"):
        out["segment position chance 1/K"] = 1.0 / rows[0]["num_segments"]
    return out
