"""Pretraining loop: one entry point for one process and for ``torchrun`` (DDP).

Read top to bottom: helpers that build the data streams, then :class:`Pretraining`, one run in named
steps: build (processes and seeds, data, model, objective, optimiser) → resume → loop (:meth:`step`: forward,
weighted loss sum, backward, clip, optimiser step; :meth:`log`; :meth:`checkpoint`) → :meth:`finish`.
A run folder holds ``recipe.yaml``, ``metrics.jsonl``, ``checkpoints/`` and the final ``model/``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from tvts.files import WEIGHTS_NAME
from tvts.config import RecipeConfig, to_dict
from tvts.recipe_data import cache_dir, data_paths, noun_spec, processor, train_datasets, transcript_dataset
from tvts.data.samples import collate
from tvts.data.frame_store import FrameStore
from tvts.deps import require
from tvts.errors import ConfigError, DataError
from tvts.models import build_model
from tvts.models.convert import init_video_from_mae
from tvts.models.text_features import TextFeatureTable
from tvts.models.video_bert import load_state_strict
from tvts.objectives import Pretrainer, build_objective
from tvts.train.checkpoint import (full_model_state, is_sharded, latest_checkpoint, load_objective_state,
                                   load_sharded_checkpoint, load_trainer_state, save_checkpoint, save_sharded_checkpoint)
from tvts.train.curriculum import Curriculum
from tvts.train.distributed import DistInfo, all_reduce_sum, full_tensor, init_distributed, main_process_first, shard_fsdp
from tvts.train.metrics_log import MetricsLog, plot_training_curves
from tvts.train.optim import build_optimizer, build_scheduler
from tvts.train.streams import BatchStream, is_caption_step


# ---------------------------------------------------------------------------------------- data
def train_streams(cfg: RecipeConfig, root: Path, train_list: Path, info: DistInfo) -> dict[str, BatchStream]:
    """A resumable batch stream over each training corpus of the recipe (:func:`tvts.recipe_data.train_datasets`)."""
    d, t = cfg.data, cfg.train
    common = dict(batch_size=t.batch_size, collate_fn=functools.partial(collate, nouns=noun_spec(cfg)),
                  workers=d.workers, seed=t.seed,
                  rank=info.rank, world_size=info.world_size, pin_memory=info.device.type == "cuda")
    return {name: BatchStream(ds, group_size=d.group_size if name == "main" else 1, **common)
            for name, ds in train_datasets(cfg, root, train_list, info.rank, info.world_size).items()}


def attach_frame_store(cfg: RecipeConfig, dataset, info: DistInfo, name: str = "training") -> None:
    """With ``data.frame_store``, decode every video of a map-style corpus once into a frame store
    (:mod:`tvts.data.frame_store`) in ``cache_dir`` and let the dataset read its frames from it. Process 0
    builds; the others open the finished files. Shard streams are left alone (nothing to index)."""
    if not cfg.data.frame_store or not dataset.frame_store_ok:
        return
    t0 = time.time()
    paths = [dataset.video_path(i) for i in range(len(dataset))]
    # a one-off decode of every video: as many processes as there are CPUs (up to 8)
    store, path, reused = main_process_first(info, lambda: FrameStore.open_or_build(
        cache_dir(cfg), paths, dataset.transform, workers=min(8, os.cpu_count() or 1),
        progress=cfg.train.progress and info.is_main))
    dataset.frame_store = store
    if info.is_main:
        print(f"[tvts] frame store of the {name} corpus ({len(paths)} videos) {'read from' if reused else 'written to'} "
              f"{path} in {time.time() - t0:.0f} s")


def attach_text_features(cfg: RecipeConfig, model: torch.nn.Module, streams: dict[str, BatchStream], info: DistInfo) -> None:
    """With a frozen text tower and ``data.text_features``, encode every text the training corpora can
    produce once (or load them from ``data.cache_dir``) and let the tower look them up
    (:mod:`tvts.models.text_features`). Process 0 builds the file; the others read it."""
    text = model.text_model
    if not (cfg.data.text_features and getattr(text, "frozen", False) and hasattr(text, "feature_table")):
        return
    t0 = time.time()
    datasets = [st.dataset.corpus for st in streams.values()]
    texts = set()
    for ds in datasets:
        for i in range(len(ds)):
            texts |= ds.sample_texts(i)
    fingerprint = text.fingerprint()
    table, path, loaded = main_process_first(info, lambda: TextFeatureTable.load_or_build(
        cache_dir(cfg), fingerprint, text.encode, texts, progress=cfg.train.progress and info.is_main))
    text.feature_table = table
    if info.is_main:
        print(f"[tvts] text features of {len(table)} texts {'read from' if loaded else 'encoded into'} {path} "
              f"in {time.time() - t0:.0f} s")


def validation_data(cfg: RecipeConfig, root: Path, val_list: Path, info: DistInfo):
    """What the curriculum's plateau trigger validates on: ``(dataset, batch size, device, clip text)`` over the
    validation split (evaluation mode), or None when the recipe does not need it."""
    if cfg.train.curriculum.trigger != "plateau":
        return None
    if not Path(val_list).is_file():
        raise ConfigError(f"the plateau trigger validates on {val_list}, which does not exist (set data.val_list)",
                          field="train.curriculum.trigger")
    return transcript_dataset(cfg, root, val_list, train=False), cfg.eval.batch_size, info.device, cfg.objective.clip_text


# ---------------------------------------------------------------------------------------- helpers
def uses_bf16(precision: str, device: torch.device) -> bool:
    """``train.precision`` on ``device``: bf16 when asked for, or with ``auto`` on a GPU that supports it."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())


def autocast_context(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(precision, device) else contextlib.nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_step(net: torch.nn.Module, batch: dict, opt: torch.optim.Optimizer, sched, params: list[torch.nn.Parameter],
               precision: str, grad_clip: float, device: torch.device):
    """One optimisation step on a batch already on ``device``: forward under ``precision``'s autocast, the
    loss terms summed, backward, gradient clipping of ``params`` (``grad_clip`` > 0), optimiser and
    scheduler step. Returns ``(loss, losses, metrics, grad_norm)``, tensors left on the device (nothing
    is synchronised)."""
    with autocast_context(precision, device):
        losses, metrics = net(batch)
    loss = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(params, grad_clip)) if grad_clip > 0 else torch.tensor(0.0)
    opt.step()
    sched.step()
    return loss, losses, metrics, grad_norm


def reseed(seed: int, rank: int, step: int) -> None:
    """Seed the global RNG (dropout etc.) from (seed, rank, step). Done at start and after every
    checkpoint, so a resumed run draws exactly the numbers the uninterrupted run drew."""
    torch.manual_seed((seed * 1_000_003 + step) * 1009 + rank)


RUN_FILES = ("recipe.yaml", "metrics.jsonl", "train_summary.json", "model", "checkpoints")  # what a run writes


def prepare_out_dir(cfg: RecipeConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Check, before any work, what a run needs on disk: ``train.out_dir`` writable (the folders left by a
    crash mid-checkpoint removed), not holding another run unless ``resume`` (continue it) or ``overwrite``
    (its files are removed; ``cache/`` is kept), and the files ``train.init_from`` / ``train.init_mae`` name
    present. One clear :class:`ConfigError` each, not a traceback later."""
    t = cfg.train
    out = Path(t.out_dir)
    previous = [name for name in RUN_FILES if (out / name).exists() and not (name == "checkpoints" and not
                                                                             any((out / name).glob("step_*")))]
    if previous and not resume:
        if not overwrite:
            raise ConfigError(f"{out} holds a run already ({', '.join(previous)}): --resume continues it, --overwrite "
                              "starts again in its place, or choose another train.out_dir", field="train.out_dir")
        for name in previous:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if t.init_from and not (Path(t.init_from) / WEIGHTS_NAME).is_file():
        raise ConfigError(f"no model.safetensors in {t.init_from} (a folder written by tvts pretrain or tvts convert)",
                          field="train.init_from")
    if t.init_mae and not Path(t.init_mae).is_file():
        raise ConfigError(f"no such file: {t.init_mae}", field="train.init_mae")
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = out / ".tvts_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to {out}: {e.strerror or e}; choose another train.out_dir",
                          field="train.out_dir") from None
    for partial in list((out / "checkpoints").glob(".tmp_*")) + list((out / "checkpoints").glob(".step_*.old")):
        shutil.rmtree(partial, ignore_errors=True)  # a checkpoint a crash left half-written (never `latest`)
    return out


def check_dependencies(cfg: RecipeConfig) -> None:
    """Every optional package the recipe needs is importable: one clear line now, not a worker's traceback
    after the data were built."""
    if cfg.model.text.kind == "clip":
        require("open_clip", "the CLIP text encoder", field="model.text.kind")
    if cfg.data.decode_backend == "torchcodec":
        require("torchcodec.decoders", "data.decode_backend=torchcodec", field="data.decode_backend")
    if cfg.train.wandb_project:
        require("wandb", "train.wandb_project", field="train.wandb_project")
    if noun_spec(cfg) is not None:  # S-ViLM's spatial grounding (only it needs spaCy)
        from tvts.data.nouns import load_pipeline

        load_pipeline(cfg.objective.svilm.spacy_model)


def bad_summary(bad: dict[str, int], seen: int, files: list[str]) -> str:
    """One line: how many samples were skipped, by reason, and the first files."""
    n = sum(bad.values())
    if not n:
        return f"no bad samples ({seen} used)"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(bad.items(), key=lambda kv: -kv[1]))
    shown = "; ".join(files[:5]) + (" ..." if len(files) > 5 else "")
    return f"{n} bad samples skipped against {seen} used ({100 * n / (n + seen):.1f} %): {reasons}; files: {shown}"


# ---------------------------------------------------------------------------------------- main
def pretrain(cfg: RecipeConfig, resume: bool = False, on_checkpoint=None, overwrite: bool = False) -> Path:
    """Train ``cfg`` and return the run folder. ``resume``: continue from the newest checkpoint in
    ``train.out_dir`` exactly where it stopped (same data order, optimiser and scheduler state).
    ``on_checkpoint(step, path)``: called on every process after each checkpoint is complete (a hook for
    tools and tests, e.g. to stop a run there). A folder that holds another run is refused unless ``resume``
    or ``overwrite`` (:func:`prepare_out_dir`)."""
    return Pretraining(cfg, resume, overwrite, on_checkpoint).run()


@dataclass
class Tally:
    """What a run has counted so far (saved in every checkpoint): ``step``, clips ``seen``, ``elapsed``
    seconds before this process started, skipped samples by reason (``bad``) and the first of their files."""

    step: int = 0
    seen: int = 0
    elapsed_before: float = 0.0
    bad: dict[str, int] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)


class Pretraining:
    """One pretraining run, in named steps: :meth:`__init__` builds (processes, data, model, objective,
    optimiser), :meth:`resume` restores a checkpoint, :meth:`run` loops over :meth:`step`, :meth:`log`
    and :meth:`checkpoint`, and :meth:`finish` writes the final model and summary."""

    def __init__(self, cfg: RecipeConfig, resume: bool = False, overwrite: bool = False, on_checkpoint=None):
        t = self.t = cfg.train
        self.cfg, self.on_checkpoint = cfg, on_checkpoint
        self.info = info = init_distributed(t.device)
        if t.threads > 0 and info.device.type == "cpu":
            torch.set_num_threads(t.threads)
        check_dependencies(cfg)
        self.out = prepare_out_dir(cfg, resume, overwrite) if info.is_main else Path(t.out_dir)
        reseed(t.seed, info.rank, 0)
        root, train_list, val_list = self._data_paths()
        self.model = model = self._build_model()
        self.streams = train_streams(cfg, root, train_list, info)
        for name, stream in self.streams.items():
            attach_frame_store(cfg, stream.dataset, info, name)
        attach_text_features(cfg, model, self.streams, info)
        # The objective may own parameters and state (CPD's memory bank of every training pair); the Pretrainer
        # runs model and objective as one module, so DDP and the optimiser see both.
        self.objective = build_objective(cfg.objective, model, len(self.streams["main"].dataset.corpus)).to(info.device).train()
        self.net = Pretrainer(model, self.objective)
        self.curriculum = Curriculum(t.curriculum, model, validation_data(cfg, root, val_list, info))
        self.fsdp = t.strategy == "fsdp" and info.world_size > 1
        if self.fsdp:  # before the optimiser, which must hold the sharded parameters
            shard_fsdp(self.net, bf16=uses_bf16(t.precision, info.device))
        self.opt = build_optimizer(model, t, extra=self.objective)
        self.sched = build_scheduler(self.opt, t)
        self.tally = Tally()
        self.resumed_from = self.resume() if resume else None
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "recipe.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        self.metrics = MetricsLog(self.out / "metrics.jsonl", enabled=info.is_main,
                                  truncate_after=self.tally.step if self.resumed_from else 0,
                                  tensorboard_dir=self.out / "tensorboard" if t.tensorboard else None,
                                  wandb_project=t.wandb_project, run_config=to_dict(cfg))
        self.t0 = time.time()

    def _data_paths(self) -> tuple[Path, Path, Path]:
        """Building the embedded dataset (process 0) must finish before any process reads it."""
        if self.info.is_main:
            paths = data_paths(self.cfg)
        if self.info.world_size > 1:
            dist.barrier()
        if not self.info.is_main:
            paths = data_paths(replace(self.cfg, train=replace(self.t, progress=False)))
        return paths

    def _build_model(self) -> torch.nn.Module:
        t = self.t
        model = build_model(self.cfg.model)
        if t.init_from:
            # The recipe's model config decides the architecture and its options (freezing, checkpointing);
            # the folder gives the weights, loaded strictly.
            load_state_strict(model, load_file(str(Path(t.init_from) / WEIGHTS_NAME)), t.init_from)
        if t.init_mae:
            ignored = init_video_from_mae(model, t.init_mae)
            if self.info.is_main:
                print(f"[tvts] video encoder initialised from {t.init_mae} (ignored MAE keys: {len(ignored)})")
        return model.to(self.info.device).train()

    def wrapped(self) -> torch.nn.Module:
        """The module a step runs: the Pretrainer itself (one process, or FSDP), or DDP around it."""
        if self.info.world_size == 1 or self.fsdp:
            return self.net
        # Objectives and caption batches leave some parameters without a gradient in some steps. Buffers
        # are not broadcast: a memory bank is updated identically on every process, and batch-norm
        # statistics stay per process.
        return DistributedDataParallel(self.net, device_ids=[self.info.device.index] if self.info.device.type == "cuda" else None,
                                       find_unused_parameters=True, broadcast_buffers=False)

    # ------------------------------------------------------------------ resume
    def resume(self) -> Path | None:
        """Restore the newest checkpoint of the run folder (weights, optimiser, scheduler, curriculum, counts,
        the data streams' positions); returns it, or None when there is none."""
        t, info = self.t, self.info
        ckpt = latest_checkpoint(self.out)
        if ckpt is None:
            if info.is_main:
                print(f"[tvts] no checkpoint in {self.out}; starting from scratch")
            return None
        state = load_trainer_state(ckpt)
        if is_sharded(ckpt) != self.fsdp:
            raise ConfigError(f"{ckpt} was written {'with' if is_sharded(ckpt) else 'without'} FSDP sharding; resume it "
                              f"with the same train.strategy and several processes", field="train.strategy")
        if self.fsdp:
            load_sharded_checkpoint(ckpt, self.net, self.opt)
        else:
            load_state_strict(self.model, load_file(str(ckpt / WEIGHTS_NAME)), str(ckpt))
            load_objective_state(self.objective, ckpt)
            self.curriculum.load_state_dict(state.get("curriculum", {}), self.opt, self.sched)  # stage II adds a group
            self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.tally = Tally(int(state["step"]), int(state["seen"]), float(state["elapsed"]),
                           {k: int(v) for k, v in state["bad"].items()})
        for name, stream in self.streams.items():
            pos = state["data_position"][name]
            if pos["samples"] != len(stream.dataset) or pos["batch_size"] != t.batch_size or pos["world_size"] != info.world_size:
                raise ValueError(f"{ckpt} was written for {pos} ({name} stream); this run has {len(stream.dataset)} samples, "
                                 f"batch {t.batch_size}, {info.world_size} processes: it cannot resume exactly")
            stream.seek(pos["epoch"], pos["batch"])
        reseed(t.seed, info.rank, self.tally.step)
        return ckpt

    # ------------------------------------------------------------------ the loop
    def run(self) -> Path:
        t, tally = self.t, self.tally
        lines = self.info.is_main and t.progress and not sys.stdout.isatty()  # a log file: plain lines, not a bar
        bar = None
        if self.info.is_main and t.progress and not lines:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.steps, initial=tally.step, desc="pretrain", dynamic_ncols=True)
        self.t0 = time.time()
        self.window, self.window_t, self.window_clips = {}, time.time(), 0
        time_limit = t.time_limit_minutes * 60 if t.time_limit_minutes > 0 else math.inf
        self.ddp_net, self.params = self.wrapped(), [p for p in self.net.parameters() if p.requires_grad]
        while tally.step < t.steps:
            self.step()
            out_of_time = time.time() - self.t0 > time_limit
            if tally.step % t.log_every == 0 or tally.step == t.steps or out_of_time:
                self.log(lines, bar)
            if bar is not None:
                bar.update(1)
            if tally.step % t.ckpt_every == 0 or tally.step == t.steps or out_of_time:
                self.checkpoint()
            if out_of_time:
                if self.info.is_main:
                    print(f"[tvts] time limit of {t.time_limit_minutes} min reached at step {tally.step}")
                break
        if bar is not None:
            bar.close()
        return self.finish()

    def step(self) -> None:
        """One optimisation step on the next batch of its stream, its numbers added to the logging window and
        its skipped samples counted (a run with too much bad data stops here)."""
        cfg, info, tally = self.cfg, self.info, self.tally
        stream = self.streams["captions"] if is_caption_step(tally.step, cfg.data.caption_ratio) else self.streams["main"]
        batch = to_device(stream.next(), info.device)
        loss, losses, metrics, grad_norm = train_step(self.ddp_net, batch, self.opt, self.sched, self.params,
                                                      self.t.precision, self.t.grad_clip, info.device)
        tally.step += 1
        if self.curriculum.advance(tally.step, self.opt, self.sched):
            # Stage II: the text encoder now trains; DDP must be rebuilt to see its parameters.
            self.ddp_net, self.params = self.wrapped(), [p for p in self.net.parameters() if p.requires_grad]
            if info.is_main:
                print(f"[tvts] curriculum stage II from step {tally.step}: text encoder trains at {self.t.curriculum.text_lr:g}")
        clips = len(batch["texts"]) * info.world_size
        self.window_clips += clips
        tally.seen += clips
        # Sums over the logging window (tensors, so a GPU is not synchronised every step); a caption step
        # has no sort terms, so each key keeps its own count.
        for k, v in {"loss": loss, **{f"loss_{n}": x for n, x in losses.items()}, **metrics, "grad_norm": grad_norm}.items():
            total, count = self.window.get(k, (0.0, 0))
            self.window[k] = (total + v.detach().float(), count + 1)
        for k, v in all_reduce_sum(batch["skipped"], info.device).items():
            tally.bad[k] = tally.bad.get(k, 0) + int(v)
        tally.bad_files += batch["bad_paths"][: max(0, 20 - len(tally.bad_files))]
        n_bad = sum(tally.bad.values())
        if (tally.seen >= 100 or tally.step == self.t.steps) and n_bad / (n_bad + tally.seen) > cfg.data.max_bad_fraction:
            # Checked from 100 samples on, and at the last step whatever the count: a short run on bad data
            # does not end quietly.
            raise DataError(f"too much bad data (> data.max_bad_fraction={cfg.data.max_bad_fraction}): "
                            + bad_summary(tally.bad, tally.seen, tally.bad_files) + "; check the corpus with `tvts data check`")

    def log(self, lines: bool, bar) -> None:
        """One metrics row: the means of the logging window, the learning rate, throughput and bad samples."""
        t, tally = self.t, self.tally
        now = time.time()
        row = {"step": tally.step, "epoch": self.streams["main"].position[0], "lr": self.sched.get_last_lr()[0],
               **self.curriculum.log_fields(),
               **{k: total.item() / count for k, (total, count) in self.window.items()},
               "clips_per_s": self.window_clips / max(1e-9, now - self.window_t),
               "bad": dict(tally.bad), "elapsed": tally.elapsed_before + now - self.t0,
               "batch": t.batch_size * self.info.world_size, "num_segments": self.cfg.model.num_segments}
        self.metrics.write(row)
        n_bad, sort_acc = sum(tally.bad.values()), row.get("sort_segment_acc", float("nan"))
        if lines:
            print(f"[tvts] step {tally.step}/{t.steps} loss {row['loss']:.4f} sort_acc {sort_acc:.3f} "
                  f"clips/s {row['clips_per_s']:.1f} bad {n_bad} elapsed {row['elapsed']:.0f} s", flush=True)
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", sort_acc=f"{sort_acc:.2f}", clips_s=f"{row['clips_per_s']:.1f}",
                            bad=n_bad)
        self.window, self.window_t, self.window_clips = {}, time.time(), 0

    # ------------------------------------------------------------------ checkpoints and the end
    def checkpoint(self) -> None:
        """Write a checkpoint of the current step (complete or absent), then call the ``on_checkpoint`` hook."""
        t, info, tally, out = self.t, self.info, self.tally, self.out
        # Where each stream stands (epoch, batches taken in it), and what it was measured against.
        position = {name: {"epoch": st.position[0], "batch": st.position[1], "samples": len(st.dataset),
                           "batch_size": t.batch_size, "world_size": info.world_size} for name, st in self.streams.items()}
        state = {"step": tally.step, "seen": tally.seen, "elapsed": tally.elapsed_before + time.time() - self.t0,
                 "bad": tally.bad, "data_position": position, "scheduler": self.sched.state_dict(),
                 "curriculum": self.curriculum.state_dict()}
        path = None
        try:
            if self.fsdp:
                path = save_sharded_checkpoint(out, tally.step, self.net, self.opt, state,
                                               json.dumps(to_dict(self.model.config), indent=2), info.is_main)
            elif info.is_main:
                path = save_checkpoint(out, tally.step, self.model, {**state, "optimizer": self.opt.state_dict()},
                                       self.objective, preprocessor=processor(self.cfg).to_dict())
        except OSError as e:
            last = latest_checkpoint(out)
            raise DataError(f"cannot write the step-{tally.step} checkpoint into {out / 'checkpoints'}: {e.strerror or e}"
                            f"; {'the previous checkpoint ' + str(last) + ' is intact' if last else 'no earlier checkpoint'}"
                            ) from None
        if info.world_size > 1:
            dist.barrier()
        reseed(t.seed, info.rank, tally.step)
        if self.on_checkpoint is not None:
            self.on_checkpoint(tally.step, path or out / "checkpoints" / f"step_{tally.step:08d}")

    def finish(self) -> Path:
        """The final ``model/`` (with its video processor), ``train_summary.json`` and the curves PNG."""
        info, tally, out = self.info, self.tally, self.out
        self.metrics.close()
        full = full_model_state(self.net) if self.fsdp else None  # collective: gathered onto process 0
        if info.is_main:
            self.model.save_pretrained(out / "model", state_dict=full, preprocessor=processor(self.cfg).to_dict())
            summary = {"steps": tally.step, "seen": tally.seen, "bad": tally.bad, "bad_files": tally.bad_files,
                       "seconds": tally.elapsed_before + time.time() - self.t0, "world_size": info.world_size}
            print(f"[tvts] {bad_summary(tally.bad, tally.seen, tally.bad_files)}")
            table = getattr(self.model.text_model, "feature_table", None)
            if table is not None:  # texts that had to be encoded in a step (this process, since it started)
                summary["text_features"] = {"texts": len(table), "misses": table.misses}
            (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
            plot_training_curves(out / "metrics.jsonl", out / "training_curves.png")
        if info.world_size > 1:
            dist.barrier()
        return out
