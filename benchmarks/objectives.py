"""The pretraining objectives side by side: the same small backbone, the same data, the same budget.

Each variant pretrains the main job's backbone as it was for the version-4 table (``tvts/configs/demo.yaml`` with
``TABLE_BACKBONE``: joint ViT 4x128 on 32x32x8 clips in tubelets of 2, no
token dropping, frozen MiniLM text encoder with precomputed features, batch 32 holding the embedded
dataset's direction pairs, AdamW 5e-4) on narrated shapes for ``--steps`` steps, for every seed in
``--seeds``; then the main job's evaluation runs on the held-out data: zero-shot text-to-video retrieval
and zero-shot recognition, multiple choice among the 8 action captions, the direction test (a caption
against its reversed twin), the linear probe, and transcript-sort accuracy on the validation videos where
the variant trains the sort head. ``appearance_only`` is the control: TVTS on frames shown in random order
(training and evaluation), which keeps every frame and removes the motion's direction and timing.

Baseline: ``contrastive`` (L_base only, TVTS's M_base); every other row also prints its difference to it.

    .venv/bin/python benchmarks/objectives.py                       # the default variants, 3 seeds
    .venv/bin/python benchmarks/objectives.py --variants tvts cpd --seeds 0

Runs are cached (``<out>/<variant>/seed<k>/results.json``): an interrupted benchmark resumes where it
stopped, and ``--report-only`` rebuilds the table and plot from what is there. Writes
``<report>.md`` (the table), ``<report>.json`` (every run's numbers) and ``<report>.png`` (the plot).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASELINE = "contrastive"

# Every variant changes only what its objective needs; the backbone, data and schedule are the main job's as the
# version-4 table measured them: 8 frames in tubelets of 2 and the MiniLM features in float32. The main job has
# since moved to 12 frames in tubelets of 3 and bf16 text features (README, "Three frames a part"); pinned here so
# that the table, its cached runs and a rerun stay one backbone.
TABLE_BACKBONE = ["model.video.num_frames=8", "model.video.tubelet=2", "model.text.precision=fp32"]
COMMON = ["train.time_limit_minutes=0", "train.progress=false"] + TABLE_BACKBONE
CPD = ["objective.contrastive=clip", "objective.name=cpd", "model.sort_head.kind=none", "model.text_proj=mlp_bn",
       "model.text.trainable_layers=0", "objective.cpd.num_noise=512", "train.curriculum.trigger=steps", "train.curriculum.text_trainable_layers=1"]
# The demo recipe matches each part of a clip with its own segment (``contrastive: frame``); every other variant
# takes the paper's clip-level video-transcript InfoNCE (Eq. 3), the ``objective.contrastive`` default.
CLIP = ["objective.contrastive=clip", "model.sort_head.video=clip"]  # and the sort head reads the clip, as in the paper
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "tvts": ("TVTS (K-way sort, video-transcript InfoNCE)", CLIP),
    "contrastive": ("contrastive only (M_base)", CLIP + ["objective.sort_weight=0"]),
    "pairwise": ("TVTS pairwise sort", CLIP + ["model.sort_head.output=pairwise"]),
    "factorial": ("TVTS factorial (K!-way) sort", CLIP + ["model.sort_head.output=factorial"]),
    "frame": ("TVTS, frame-transcript contrastive (the main job)", []),
    "frame_only": ("frame-transcript contrastive only, no sorting", ["objective.sort_weight=0"]),
    "merlot_like": ("MERLOT-like (sort video parts)", CLIP + ["objective.name=merlot_like"]),
    "vcop": ("VCOP-like (order clips, no text)", CLIP + ["objective.name=vcop"]),
    "cpd": ("CPD (cross-pair NCE, curriculum)", CPD),
    "cpd_self": ("CPD baseline: self-instance NCE", CPD + ["objective.cpd.loss=self_instance"]),
    "cpd_ranking": ("CPD baseline: ranking loss", CPD + ["objective.cpd.loss=ranking"]),
    "svilm": ("S-ViLM (grouping, grounding)", CLIP + [
        "objective.name=svilm", "model.sort_head.kind=none", "model.video.num_groups=8",
        "model.video.group_layers=[2,3,4]", "model.video.pool=groups"]),
    "appearance_only": ("control: TVTS on frames in random order", CLIP + ["data.time_order=shuffle"]),
}
# S-ViLM taken apart (the ablation of its terms): only the global contrastive loss, with the group-token or the
# [CLS] embedding; then temporal grouping (with cut-and-paste), then spatial grounding added back.
_SVILM = VARIANTS["svilm"][1]
_NO_TERMS = ["objective.svilm.grouping_weight=0", "objective.svilm.grounding_weight=0", "objective.svilm.cut_and_paste=false"]
VARIANTS.update({
    "svilm_contrastive_groups": ("S-ViLM, contrastive only, group-token embedding", _SVILM + _NO_TERMS),
    "svilm_contrastive_cls": ("S-ViLM, contrastive only, [CLS] embedding", _SVILM + _NO_TERMS + ["model.video.pool=cls"]),
    "svilm_grouping_cls": ("S-ViLM, + temporal grouping, [CLS] embedding",
                           _SVILM + ["objective.svilm.grounding_weight=0", "model.video.pool=cls"]),
    "svilm_all_cls": ("S-ViLM, + spatial grounding, [CLS] embedding", _SVILM + ["model.video.pool=cls"]),
})
# CPD and S-ViLM trained on M_base's text instead of the caption: each clip's K transcript segments, their
# embeddings averaged (objective.clip_text=transcript); everything else as in their rows.
TRANSCRIPT = ["objective.clip_text=transcript"]
# CPD's softmax over bank scores with M_base's negatives (the batch's other pairs) and temperature, M_base's text head
_CPD_BATCH_NOISE = CPD + TRANSCRIPT + ["objective.cpd.estimator=softmax", "objective.cpd.noise=batch",
                                       "objective.cpd.temperature=0.05", "model.text_proj=minimal", "train.curriculum.trigger=none"]
VARIANTS.update({
    "cpd_transcript": ("CPD on transcript segments", CPD + TRANSCRIPT),
    "svilm_transcript": ("S-ViLM on transcript segments", _SVILM + TRANSCRIPT),
    "svilm_transcript_cls": ("S-ViLM on transcript segments, [CLS] embedding", _SVILM + TRANSCRIPT + ["model.video.pool=cls"]),
    # M_base plus one change: with its own terms off, S-ViLM on transcripts at TVTS's temperature is M_base
    # (tests/objectives/test_svilm.py); this row keeps S-ViLM's video embedding, the mean of the group tokens.
    "svilm_transcript_groups": ("M_base with S-ViLM's group-token embedding", _SVILM + _NO_TERMS + TRANSCRIPT + [
        "objective.svilm.temperature=0.05"]),
    # ... and the same with the group assignment taken apart: one-hot without the Gumbel noise, or the soft weights
    "svilm_transcript_groups_argmax": ("M_base with the group-token embedding, argmax assignment", _SVILM + _NO_TERMS + TRANSCRIPT + [
        "objective.svilm.temperature=0.05", "model.video.group_assign=argmax"]),
    "svilm_transcript_groups_soft": ("M_base with the group-token embedding, soft assignment", _SVILM + _NO_TERMS + TRANSCRIPT + [
        "objective.svilm.temperature=0.05", "model.video.group_assign=soft"]),
    # ... and with one grouping block only, on the last layer's tokens (the paper's setting has three, at 6, 9, 12 of 12)
    "svilm_transcript_groups_last": ("M_base with the group-token embedding, one grouping block after the last layer",
                                     _SVILM + _NO_TERMS + TRANSCRIPT + ["objective.svilm.temperature=0.05", "model.video.group_layers=[4]"]),
    # ... and both at once: soft weights in one block on the last layer (the nearest to a mean-pool of its tokens)
    "svilm_transcript_groups_soft_last": ("M_base with the group-token embedding, soft assignment, one block after the last layer",
                                          _SVILM + _NO_TERMS + TRANSCRIPT + ["objective.svilm.temperature=0.05",
                                                                             "model.video.group_assign=soft", "model.video.group_layers=[4]"]),
    # ... and with the group tokens fed into the encoder with the video tokens (S-ViLM Sec. 3.1; GroupViT's layout):
    # they join every layer's self-attention, so the backbone reads them as it reads the [CLS]
    "svilm_transcript_groups_attend": ("M_base with the group-token embedding, group tokens in every layer's self-attention",
                                       _SVILM + _NO_TERMS + TRANSCRIPT + ["objective.svilm.temperature=0.05",
                                                                          "model.video.group_self_attention=true"]),
    # ... and S-ViLM as in its row (captions, grouping, grounding) with that layout
    "svilm_attend": ("S-ViLM (grouping, grounding), group tokens in every layer's self-attention",
                     _SVILM + ["model.video.group_self_attention=true"]),
    # CPD with m = N - 1 noise draws per sample (of the 2,400 training videos; uniform, with replacement): every
    # other pair once on average, the direction twin among the negatives in 63 % of the steps (M_base: in every batch)
    "cpd_all_noise": ("CPD, m = N - 1 noise draws (every other pair once on average)", CPD + ["objective.cpd.num_noise=2399"]),
    # CPD's in-batch ranking baseline (no memory bank; the twin is in every batch) on M_base's text
    "cpd_ranking_transcript": ("CPD ranking loss on transcript segments", CPD + ["objective.cpd.loss=ranking"] + TRANSCRIPT),
    # ... and both with M_base's text head and no curriculum (the text tower frozen throughout)
    "cpd_plain_head": ("CPD on transcripts, M_base's text head, no curriculum", CPD + TRANSCRIPT + [
        "model.text_proj=minimal", "train.curriculum.trigger=none"]),
    "cpd_ranking_plain_head": ("CPD ranking on transcripts, M_base's text head, no curriculum", CPD + TRANSCRIPT + [
        "objective.cpd.loss=ranking", "model.text_proj=minimal", "train.curriculum.trigger=none"]),
    # ... and its bank scored by a softmax over the positive and the m noise pairs instead of NCE
    "cpd_softmax_plain_head": ("CPD softmax over the bank, transcripts, M_base's text head, no curriculum", CPD + TRANSCRIPT + [
        "objective.cpd.estimator=softmax", "model.text_proj=minimal", "train.curriculum.trigger=none"]),
    # ... and with the positive pair scored as it is in this batch (both towers train on it), the noise from the bank
    "cpd_softmax_current": ("CPD softmax, positive from the batch, noise from the bank, transcripts, M_base's text head", CPD + TRANSCRIPT + [
        "objective.cpd.estimator=softmax", "objective.cpd.positive=current", "model.text_proj=minimal",
        "train.curriculum.trigger=none"]),
    # ... and the softmax over (in expectation) the whole bank: m = N - 1 draws, each other pair once on average
    "cpd_softmax_all_noise": ("CPD softmax over the bank, m = N - 1, transcripts, M_base's text head, no curriculum", CPD + TRANSCRIPT + [
        "objective.cpd.estimator=softmax", "objective.cpd.num_noise=2399", "model.text_proj=minimal", "train.curriculum.trigger=none"]),
    # ... and with a fixed window per video (data.windows=fixed): a memory-bank entry is one video's pair, but a
    # random window gives that video a new clip and a new text every epoch, so the entry averages its events
    "cpd_softmax_fixed": ("CPD softmax over the bank, one fixed window per video, transcripts, M_base's text head", CPD + TRANSCRIPT + [
        "objective.cpd.estimator=softmax", "model.text_proj=minimal", "train.curriculum.trigger=none", "data.windows=fixed"]),
    "cpd_plain_head_fixed": ("CPD on transcripts, one fixed window per video, M_base's text head, no curriculum", CPD + TRANSCRIPT + [
        "model.text_proj=minimal", "train.curriculum.trigger=none", "data.windows=fixed"]),
    "cpd_fixed": ("CPD (cross-pair NCE, curriculum), one fixed window per video", CPD + ["data.windows=fixed"]),
    # ... and M_base's negatives (the other pairs of the batch, the twin among them) at M_base's temperature,
    # scored by their bank entries: what is left between this row and M_base is the bank as the source of scores
    "cpd_softmax_batch": ("CPD softmax, the batch's other pairs as noise, scored by the bank, tau = 0.05", _CPD_BATCH_NOISE),
    # ... and the same on one fixed window per video, so that a pair's bank entries are of the clip and text it scores
    "cpd_softmax_batch_fixed": ("CPD softmax, the batch's other pairs as noise, tau = 0.05, one fixed window per video",
                                _CPD_BATCH_NOISE + ["data.windows=fixed"]),
    # ... and with each bank entry replaced by the latest embedding (momentum 0): at most one epoch (75 steps) old
    "cpd_softmax_batch_fixed_fresh": ("CPD softmax, the batch's other pairs as noise, tau = 0.05, one fixed window per video, "
                                      "bank momentum 0", _CPD_BATCH_NOISE + ["data.windows=fixed", "objective.cpd.momentum=0.0"]),
    # ... and scored against the batch's current embeddings of the other tower, detached, instead of the bank: the
    # keys are as fresh as M_base's, each term still trains only its query's tower (stale keys or one-sided gradients?)
    "cpd_softmax_batch_keys": ("CPD softmax, the batch's other pairs as noise, tau = 0.05, scored by the batch's detached "
                               "embeddings", _CPD_BATCH_NOISE + ["objective.cpd.keys=batch"]),
    "cpd_softmax_batch_keys_fixed": ("CPD softmax, the batch's other pairs as noise, tau = 0.05, scored by the batch's "
                                     "detached embeddings, one fixed window per video",
                                     _CPD_BATCH_NOISE + ["objective.cpd.keys=batch", "data.windows=fixed"]),
    # ... and between the two: the batch's keys plus a queue of the last Q keys, Q / 32 steps old at most (1 and 8
    # steps; a bank row of the 2,400 training videos was written 75 steps ago on average): how old may the keys be
    "cpd_softmax_queue_32": ("CPD softmax, the batch's detached embeddings and a queue of the last 32 as keys",
                             _CPD_BATCH_NOISE + ["objective.cpd.keys=queue", "objective.cpd.queue_size=32"]),
    "cpd_softmax_queue_256": ("CPD softmax, the batch's detached embeddings and a queue of the last 256 as keys",
                              _CPD_BATCH_NOISE + ["objective.cpd.keys=queue", "objective.cpd.queue_size=256"]),
    # ... and M_base with twice the batch: fresh keys only, but 63 negatives as with a queue of 32, so the direction
    # twin is one negative in 63 (is it the keys' age or their number that the queue rows pay for?)
    "contrastive_b64": ("M_base, batch 64", VARIANTS["contrastive"][1] + ["train.batch_size=64"]),
    # ... and M_base on the same fixed windows (what the fixed windows alone cost or give)
    "contrastive_fixed": ("M_base, one fixed window per video", VARIANTS["contrastive"][1] + ["data.windows=fixed"]),
    # ... and M_base at a temperature ten times its own, where the softmax weighs its negatives more evenly
    # (the hardest, the direction twin, no longer dominates the gradient): what CPD's hinge ranking loss does
    "contrastive_warm": ("M_base at temperature 0.5", VARIANTS["contrastive"][1] + ["objective.temperature=0.5"]),
    # ... and M_base with a plain mean-pool of the video tokens, to tell pooling apart from grouping
    "contrastive_mean": ("M_base with the mean of the video tokens as embedding", VARIANTS["contrastive"][1] + [
        "model.video.pool=mean"]),
})
# S-ViLM taken apart with the group tokens in the encoder: M_base with the group-token embedding (which learns the
# motion) plus one of what the paper's S-ViLM changes, and the paper's S-ViLM less one of them.
_GROUPS_ATTEND = VARIANTS["svilm_transcript_groups_attend"][1]
_ATTEND = VARIANTS["svilm_attend"][1]
VARIANTS.update({
    "svilm_attend_plus_captions": ("M_base + groups in the encoder, + S-ViLM's captions as the text",
                                   [o for o in _GROUPS_ATTEND if o not in TRANSCRIPT]),
    "svilm_attend_plus_tau": ("M_base + groups in the encoder, + S-ViLM's temperature 0.07",
                              _GROUPS_ATTEND + ["objective.svilm.temperature=0.07"]),
    "svilm_attend_plus_cut": ("M_base + groups in the encoder, + cut-and-paste",
                              _GROUPS_ATTEND + ["objective.svilm.cut_and_paste=true"]),
    "svilm_attend_plus_grouping": ("M_base + groups in the encoder, + cut-and-paste and temporal grouping",
                                   _GROUPS_ATTEND + ["objective.svilm.cut_and_paste=true", "objective.svilm.grouping_weight=1.0"]),
    "svilm_attend_plus_grounding": ("M_base + groups in the encoder, + spatial grounding",
                                    _GROUPS_ATTEND + ["objective.svilm.grounding_weight=1.0"]),
    "svilm_attend_less_captions": ("S-ViLM, groups in the encoder, transcripts instead of captions", _ATTEND + TRANSCRIPT),
    "svilm_attend_less_tau": ("S-ViLM, groups in the encoder, temperature 0.05", _ATTEND + ["objective.svilm.temperature=0.05"]),
    "svilm_attend_less_cut": ("S-ViLM, groups in the encoder, no cut-and-paste (so no temporal grouping)",
                              _ATTEND + ["objective.svilm.cut_and_paste=false"]),
    "svilm_attend_less_grouping": ("S-ViLM, groups in the encoder, no temporal grouping", _ATTEND + ["objective.svilm.grouping_weight=0"]),
    "svilm_attend_less_grounding": ("S-ViLM, groups in the encoder, no spatial grounding", _ATTEND + ["objective.svilm.grounding_weight=0"]),
})
# CPD and M_base on the first 200 training videos (an epoch of 6 steps, so each bank entry is at most 6 steps old)
VARIANTS.update({
    "cpd_200": ("CPD (cross-pair NCE, curriculum), 200 training videos", CPD + ["data.max_videos=200"]),
    "cpd_softmax_batch_fixed_200": ("CPD softmax, the batch's other pairs as noise, tau = 0.05, fixed windows, 200 training videos",
                                    VARIANTS["cpd_softmax_batch_fixed"][1] + ["data.max_videos=200"]),
    "contrastive_200": ("M_base, 200 training videos", VARIANTS["contrastive"][1] + ["data.max_videos=200"]),
})
# The main table's rows, run by default; every other variant (the taken-apart rows) only when named with --variants.
DEFAULT = ["tvts", "contrastive", "frame", "frame_only", "merlot_like", "vcop", "cpd", "svilm", "appearance_only"]
OPTIONAL = set(VARIANTS) - set(DEFAULT)
# Variants whose objective trains the transcript-sort head (the others leave it untrained or have none).
SORTS = {"tvts", "pairwise", "factorial", "frame", "appearance_only"}

# (column, results.json path, path of its chance level, scale to %)
METRICS = [
    ("sort acc. (T+V)", ("sort", "text_video", "segment_acc"), ("sort", "chance_segment_acc"), 100.0),
    ("t2v R@1", ("retrieval", "t2v_R@1"), ("retrieval", "chance_R@1"), 1.0),
    ("t2v R@10", ("retrieval", "t2v_R@10"), ("retrieval", "chance_R@1"), 1.0),  # chance: 10 x R@1's
    ("multiple choice", ("multiple_choice", "top1"), ("multiple_choice", "chance_top1"), 1.0),
    ("direction test", ("direction", "top1"), ("direction", "chance_top1"), 1.0),
    ("zero-shot rec.", ("recognition", "top1"), ("recognition", "chance_top1"), 1.0),
    ("linear probe", ("linear_probe", "top1"), ("linear_probe", "chance_top1"), 1.0),
]


def _get(d: dict, path) -> float | None:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return float(d)


def recipe_overrides(variant: str, seed: int, steps: int, run_dir: Path, threads: int = 0,
                     extra: list[str] | None = None) -> list[str]:
    """The overrides of the ``demo`` recipe that make one (variant, seed) run, in the order a cached run recorded."""
    overrides = COMMON + VARIANTS[variant][1] + [
        f"train.steps={steps}", f"train.seed={seed}", f"train.out_dir={run_dir}", f"train.ckpt_every={steps}"]
    if threads:
        overrides.append(f"train.threads={threads}")
    if variant.startswith("cpd"):
        overrides.append(f"train.curriculum.at_step={2 * steps // 3}")
    return overrides + list(extra or [])


def cached_run(variant: str, seed: int, steps: int, out: Path, threads: int = 0, extra: list[str] | None = None) -> dict | None:
    """The results of an earlier (variant, seed) run in ``out`` when it ran with the same overrides (the thread
    count aside) on the same generator version; else None."""
    from tvts.data.synthetic import VERSION

    cached = out / variant / f"seed{seed}" / "results.json"
    if not cached.is_file():
        return None
    old = json.loads(cached.read_text())
    overrides = recipe_overrides(variant, seed, steps, cached.parent, threads, extra)
    same = [o for o in old.get("overrides", []) if not o.startswith("train.threads=")] == \
        [o for o in overrides if not o.startswith("train.threads=")]
    return old if same and old.get("data_version") == VERSION else None


def prepare_caches(variant: str, out: Path, threads: int, extra: list[str]) -> None:
    """Build the dataset, frame store and text-feature table that ``variant``'s runs share, by a 2-step
    pretraining in a scratch folder, so that parallel runs find them instead of each building its own."""
    from tvts.config import load_recipe
    from tvts.train.trainer import pretrain

    scratch = out / ".prepare"
    shutil.rmtree(scratch, ignore_errors=True)
    pretrain(load_recipe("demo", recipe_overrides(variant, 0, 2, scratch, threads, extra)), resume=False)
    shutil.rmtree(scratch, ignore_errors=True)


def run_parallel(jobs: list[tuple[str, int]], args, launch=subprocess.Popen, poll_s: float = 2.0) -> set[tuple[str, int]]:
    """Run each (variant, seed) of ``jobs`` as its own process of this script, ``args.parallel`` at a time
    (in ``jobs``' order), each writing its log to ``<out>/.logs/``; returns the jobs that failed. Many of
    these small runs fit one GPU at once: 15 ran side by side on one H200 (``results/objectives_gpu_seeds.md``)."""
    out = Path(args.out)
    (out / ".logs").mkdir(parents=True, exist_ok=True)
    threads = args.threads or 1  # N processes on the machine's cores: one thread each unless told otherwise
    pending, running, failed = list(jobs), {}, set()
    while pending or running:
        while pending and len(running) < args.parallel:
            variant, seed = job = pending.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--variants", variant, "--seeds", str(seed),
                   "--steps", str(args.steps), "--out", str(out), "--report", str(out / ".logs" / f"{variant}_seed{seed}"),
                   "--threads", str(threads)] + (["--set", *args.extra] if args.extra else [])
            log = open(out / ".logs" / f"{variant}_seed{seed}.log", "w")
            running[job] = (launch(cmd, stdout=log, stderr=subprocess.STDOUT), log)
            print(f"[objectives] started {variant} seed {seed} ({len(running)} running, {len(pending)} waiting)", flush=True)
        time.sleep(poll_s)
        for job, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[job]
            if proc.returncode != 0:
                failed.add(job)
                tail = (out / ".logs" / f"{job[0]}_seed{job[1]}.log").read_text().splitlines()[-15:]
                print(f"[objectives] {job[0]} seed {job[1]} failed (exit {proc.returncode}):\n  " + "\n  ".join(tail), flush=True)
    return failed


def run_one(variant: str, seed: int, steps: int, out: Path, threads: int = 0, extra: list[str] | None = None) -> dict:
    """Pretrain + evaluate one (variant, seed); cached in ``out/variant/seed<k>/results.json``, and reused only
    when it ran with the same overrides on the same generator version (else the run is done again). ``extra``:
    recipe overrides applied after the variant's (``--set``)."""
    from tvts.config import load_recipe
    from tvts.data.synthetic import VERSION
    from tvts.eval.main_job import evaluate_run
    from tvts.train.trainer import pretrain

    run_dir = out / variant / f"seed{seed}"
    cached = run_dir / "results.json"
    overrides = recipe_overrides(variant, seed, steps, run_dir, threads, extra)
    old = cached_run(variant, seed, steps, out, threads, extra)
    if old is not None:
        return old
    if cached.is_file():
        print(f"[objectives] {cached}: another recipe or dataset version; running it again", flush=True)
        shutil.rmtree(run_dir)
    cfg = load_recipe("demo", overrides)
    t0 = time.time()
    pretrain(cfg, resume=True)
    t1 = time.time()
    results = evaluate_run(cfg, run_dir / "model", progress=False)
    results.update(variant=variant, seed=seed, steps=steps, overrides=overrides, data_version=VERSION,
                   pretrain_s=t1 - t0, eval_s=time.time() - t1)
    cached.write_text(json.dumps(results, indent=1))
    return results


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """variant -> column -> (mean, sample std (0 for one seed), number of seeds)."""
    table = {}
    for variant, rs in runs.items():
        row = {}
        for name, path, _, scale in METRICS:
            if path[0] == "sort" and variant not in SORTS:
                continue
            vals = [v * scale for v in (_get(r, path) for r in rs) if v is not None]
            if vals:
                row[name] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))
        row["minutes"] = (statistics.mean(r["pretrain_s"] / 60 for r in rs), 0.0, len(rs))
        table[variant] = row
    return table


def chance_row(runs: dict[str, list[dict]]) -> dict[str, float]:
    some = next(r for rs in runs.values() for r in rs)
    out = {name: _get(some, c) * scale for name, _, c, scale in METRICS if _get(some, c) is not None}
    if "t2v R@10" in out:
        out["t2v R@10"] *= 10
    return out


def markdown(table: dict, chance: dict, steps: int, seeds: list[int], command: str) -> str:
    cols = [m[0] for m in METRICS]
    lines = [f"Objectives side by side: {steps} steps each, seeds {', '.join(map(str, seeds))}; mean ± std over seeds "
             f"(%); Δ = difference of the means to `{BASELINE}`. Produced by `{command}`.", "",
             "| variant | " + " | ".join(cols) + " | minutes | seeds |", "|---|" + "---|" * (len(cols) + 2)]
    base = table.get(BASELINE, {})
    for variant, row in table.items():
        cells = []
        for c in cols:
            if c not in row:
                cells.append("–")
                continue
            m, s, _ = row[c]
            delta = f" ({m - base[c][0]:+.1f})" if variant != BASELINE and c in base else ""
            cells.append(f"{m:.1f} ± {s:.1f}{delta}")
        lines.append(f"| {VARIANTS[variant][0]} | " + " | ".join(cells) + f" | {row['minutes'][0]:.1f} | {row['minutes'][2]} |")
    shown = {c for row in table.values() for c in row}  # a column no row fills (sort accuracy) shows no chance either
    lines.append("| chance | " + " | ".join(f"{chance[c]:.1f}" if c in chance and c in shown else "–" for c in cols) + " | | |")
    return "\n".join(lines) + "\n"


def plot(table: dict, chance: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [m[0] for m in METRICS]
    rows = (len(cols) + 2) // 3
    fig, axes = plt.subplots(rows, 3, figsize=(13, 4.3 * rows), squeeze=False)
    names = list(table)
    for ax in axes.flat[len(cols):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, cols):
        xs = [i for i, v in enumerate(names) if c in table[v]]
        ax.bar(xs, [table[names[i]][c][0] for i in xs], yerr=[table[names[i]][c][1] for i in xs], capsize=3,
               color=["#c44e52" if names[i] == BASELINE else "#4c72b0" for i in xs])
        if c in chance:
            ax.axhline(chance[c], color="grey", ls="--", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=70, fontsize=8)
        ax.set_title(c, fontsize=10)
    fig.suptitle("pretraining objectives on narrated shapes (mean ± std over seeds; dashed: chance)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=DEFAULT, choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2100)
    p.add_argument("--out", default="runs/objectives")
    p.add_argument("--report", default="benchmarks/results/objectives")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table and plot from cached runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: the recipe's); e.g. 1 to run "
                   "two benchmarks with different --seeds side by side on 2 cores")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="extra",
                   help="recipe overrides for every run, after the variant's (e.g. train.device=cuda data.workers=2)")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="run N (variant, seed) runs at once, each its own process with one thread unless --threads says "
                        "otherwise (on a GPU: --parallel 15 --set train.device=cuda train.precision=fp32 data.workers=0)")
    args = p.parse_args(argv)
    out = Path(args.out)
    command = f"python benchmarks/objectives.py --steps {args.steps} --seeds {' '.join(map(str, args.seeds))}"
    if set(args.variants) != set(DEFAULT):
        command += " --variants " + " ".join(args.variants)
    if args.extra:
        command += " --set " + " ".join(args.extra)
    if args.parallel > 1:
        command += f" --parallel {args.parallel}"
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    failed: set[tuple[str, int]] = set()
    if args.parallel > 1 and not args.report_only:
        jobs = [(v, s) for s in args.seeds for v in args.variants
                if cached_run(v, s, args.steps, out, args.threads, args.extra) is None]
        if jobs:
            prepare_caches(jobs[0][0], out, args.threads or 1, args.extra)
            failed = run_parallel(jobs, args)
    # Seeds outermost: an interrupted benchmark has every variant on the first seeds.
    for seed in args.seeds:
        for variant in args.variants:
            cached = out / variant / f"seed{seed}" / "results.json"
            if (args.report_only and not cached.is_file()) or (variant, seed) in failed:
                continue
            t0 = time.time()
            r = json.loads(cached.read_text()) if args.report_only else run_one(variant, seed, args.steps, out, args.threads, args.extra)
            runs[variant].append(r)
            print(f"[objectives] {variant} seed {seed}: t2v R@1 {r['retrieval']['t2v_R@1']:.1f}, linear probe "
                  f"{r['linear_probe']['top1']:.1f} ({time.time() - t0:.0f} s)", flush=True)
    runs = {v: rs for v, rs in runs.items() if rs}
    if not runs:
        print("no runs to report", file=sys.stderr)
        return 1
    table = summarise(runs)
    chance = chance_row(runs)
    md = markdown(table, chance, args.steps, args.seeds, command)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".md").write_text(md)
    report.with_suffix(".json").write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "runs": runs}, indent=1))
    plot(table, chance, report.with_suffix(".png"))
    print(md)
    print(f"[objectives] wrote {report.with_suffix('.md')}, .json, .png")
    if failed:
        print(f"[objectives] failed, not in the table: {', '.join(f'{v} seed {s}' for v, s in sorted(failed))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
