"""Training speed of the main job, side by side with the code before the step-speed work, in one run.

Every row runs ``tvts pretrain`` for ``--steps`` steps in a fresh process and a fresh run folder on this
machine and reads the training clips/s from its ``metrics.jsonl`` (the steps after ``--warmup`` only, so
process start, model building and the first DataLoader fill do not count). One-off costs that a run pays
before its first step (encoding the corpus's segment texts, building the frame store) are timed apart.

Rows:

- ``before``: the library at ``--baseline`` (default: the last commit before this work), run from a git
  worktree with its own ``demo`` recipe: every step encodes its 64 segment texts with the frozen MiniLM and
  decodes its clips from the mp4 files (what a user ran until now);
- ``same recipe``: today's code on that same recipe (batch 16, 8 frames, half the tokens masked), first
  without, then with each reuse: per-step text encoding vs the precomputed text features; decoding vs the
  frame store;
- ``main job``: today's ``demo`` recipe as ``make demo`` runs it (batch 32, every token kept; the K parts of each
  clip encoded on their own, once, for the frame-transcript contrastive and, joined in time order, for the sort
  head: ``model.sort_head.video: parts``); the same with the sort head reading the clip's own encoding (two
  video forwards a step: the main job until narrated-shapes v4); and the paper's clip-level InfoNCE with the
  sort head on the clip (one forward of the clip).

    .venv/bin/python benchmarks/step_speed.py                  # every row (the README's five took ~12 minutes)
    .venv/bin/python benchmarks/step_speed.py --steps 120 --rows before main_job

Writes ``<report>.json`` and ``<report>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_report  # noqa: E402  (benchmarks/ is on the path when run as a script)

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "19a96b7"  # main before this work: per-step text encoding, per-sample decoding

# The recipe of `before` (its configs/demo.yaml, now tvts/configs/demo.yaml), written in today's fields.
OLD_RECIPE = ["train.batch_size=16", "model.video.mask_ratio=0.5", "model.video.mask_kind=random", "train.lr=1e-3",
              "train.warmup_steps=50", "data.workers=1", "data.group_size=1", "model.video.num_frames=8",
              "model.video.tubelet=2"]
ROWS = {
    "before": ("before (commit {rev}): text encoded every step, clips decoded", None),
    "same_recipe_plain": ("same recipe, today's code: text encoded every step, clips decoded",
                          OLD_RECIPE + ["data.text_features=false", "data.frame_store=false"]),
    "same_recipe_text": ("same recipe + precomputed text features", OLD_RECIPE + ["data.frame_store=false"]),
    "same_recipe_both": ("same recipe + text features + frame store", OLD_RECIPE),
    "main_job_clip": ("today's demo recipe with the paper's clip-level InfoNCE (the sort head reads the clip)",
                      ["objective.contrastive=clip", "model.sort_head.video=clip"]),
    "main_job_two_forwards": ("today's demo recipe, the sort head reading the clip: the clip and its K parts encoded",
                              ["model.sort_head.video=clip"]),
    "main_job": ("main job (today's demo recipe: the K parts of each clip encoded once, for both losses)", []),
}


def clips_per_s(run_dir: Path, warmup: int) -> tuple[float, int]:
    """Training clips/s over the logged rows after step ``warmup``: the clips of the steps between the first
    such row and the last, over the wall-clock time between them (``elapsed``), one process."""
    import yaml

    batch = yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["batch_size"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["step"] >= warmup]
    if len(rows) < 2:
        raise RuntimeError(f"{run_dir}: fewer than two log rows after step {warmup}")
    first, last = rows[0], rows[-1]
    steps = last["step"] - first["step"]
    return steps * batch / (last["elapsed"] - first["elapsed"]), steps


def run(cmd: list[str], env: dict, log: Path, cwd: Path) -> float:
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=cwd)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}")
    return time.time() - t0


def one_off(log: Path) -> dict:
    """Seconds the run spent building text features / the frame store before its first step (from its log;
    a run that only read files built by an earlier row reports nothing)."""
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        for key, marker in (("text_features_s", "[tvts] text features"), ("frame_store_s", "[tvts] frame store")):
            if line.startswith(marker) and line.rstrip().endswith(" s") and " read from " not in line:
                out[key] = float(line.rstrip()[:-2].rsplit(" ", 1)[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=40, help="steps left out of the clips/s")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--baseline", default=BASELINE, help="git revision of the `before` row")
    p.add_argument("--data", default="data/narrated_shapes", help="today's embedded dataset (built if missing)")
    p.add_argument("--out", default="runs/step_speed")
    p.add_argument("--report", default="benchmarks/results/step_speed")
    args = p.parse_args(argv)
    out = Path(args.out).absolute()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    python = sys.executable
    common = [f"train.steps={args.steps}", "train.log_every=10", f"train.ckpt_every={args.steps}", "train.progress=false",
              "train.time_limit_minutes=0"]
    results = {}
    worktree = None
    try:
        for name in args.rows:
            label, overrides = ROWS[name]
            env = dict(os.environ)
            run_dir = out / name
            if name == "before":
                worktree = Path(tempfile.mkdtemp(prefix="tvts-baseline-"))
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.baseline],
                               check=True, capture_output=True)
                # Run from the worktree: its tvts package (the current directory) comes before the installed one.
                cmd = [python, "-m", "tvts.cli", "pretrain", "--config", "demo", f"train.out_dir={run_dir}",
                       f"data.synthetic.out={out / 'data_before'}", *common]
                label = label.format(rev=args.baseline)
                cwd = worktree
            else:
                cmd = [python, "-m", "tvts.cli", "pretrain", "--config", "demo", f"train.out_dir={run_dir}",
                       f"data.synthetic.out={Path(args.data).absolute()}", f"data.cache_dir={out / 'cache'}",
                       *common, *overrides]
                cwd = ROOT
            log = out / f"{name}.log"
            wall = run(cmd, env, log, cwd)
            if name == "before" and "[tvts] text features" in log.read_text(errors="replace"):
                raise RuntimeError(f"the `before` row ran today's code, not {args.baseline}; see {log}")
            cps, steps = clips_per_s(run_dir, args.warmup)
            results[name] = {"label": label, "clips_per_s": round(cps, 1), "measured_steps": steps,
                             "wall_s": round(wall, 1), **one_off(log), "command": " ".join(cmd[1:]), "cwd": str(cwd)}
            print(f"{label}: {cps:.1f} clips/s", flush=True)
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True)
    base = results.get("before", {}).get("clips_per_s")
    lines = [f"Training clips/s on this machine ({os.cpu_count()} CPUs), steps {args.warmup}-{args.steps} of each run; "
             "one-off costs are paid once per corpus (later runs read the files)", "",
             "| setup | clips/s | vs before | text features (one-off) | frame store (one-off) |", "|---|---|---|---|---|"]
    for r in results.values():
        ratio = f"{r['clips_per_s'] / base:.2f}x" if base else ""
        lines.append(f"| {r['label']} | {r['clips_per_s']:.1f} | {ratio} | {r.get('text_features_s', '')} | "
                     f"{r.get('frame_store_s', '')} |")
    md = "\n".join(lines + ["", f"Command: `python benchmarks/step_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`"])
    write_report(args.report, results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
