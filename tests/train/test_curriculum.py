"""CPD's two-stage curriculum (tvts.train.curriculum): when stage II starts, what it does to the optimiser
and the scheduler, that it survives a checkpoint, and that a run killed in stage II resumes exactly."""

import copy
import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tvts.config import CurriculumConfig, TrainConfig, validate_recipe
from tvts.models import build_model
from tvts.testing import assert_same_weights, kill_and_resume, make_tiny_bert, tiny_model_config, tiny_recipe
from tvts.train.trainer import pretrain
from tvts.train import curriculum as curriculum_mod
from tvts.train.curriculum import Curriculum
from tvts.train.optim import build_optimizer, build_scheduler, warmup_cosine


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return {"bert": make_tiny_bert(root / "bert"), "data": root / "shapes"}


TRAIN = TrainConfig(lr=1e-3, weight_decay=0.05, warmup_steps=2, steps=20, min_lr_ratio=0.01)


def _setup(bert, trigger="steps", at_step=3, text_layers=1, **cur):
    """A tiny TVTS model with a frozen text encoder, its optimiser and scheduler, and a curriculum."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config(bert, trainable_layers=0)).train()
    opt = build_optimizer(model, TRAIN)
    sched = build_scheduler(opt, TRAIN)
    cfg = CurriculumConfig(trigger=trigger, at_step=at_step, text_trainable_layers=text_layers, text_lr=3e-5,
                           lr_scale=0.1, **cur)
    return model, opt, sched, Curriculum(cfg, model, validation=(None, 4, "cpu"))


def _train_step(model, opt, sched, seed):
    """One optimiser step on a loss that reaches every trainable part (the text encoder too, once it trains)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(2, 4, 3, 16, 16, generator=g)
    video = model.encode_video(frames)
    text = model.encode_text(["the red circle moves left", "a blue square grows"])
    loss = (video - text).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def _assert_scheduler_consistent(opt, sched):
    multiplier = sched.lr_lambdas[0](sched.last_epoch)
    assert len(sched.base_lrs) == len(sched.lr_lambdas) == len(opt.param_groups)
    for group, base in zip(opt.param_groups, sched.base_lrs):
        assert group["lr"] == pytest.approx(base * multiplier, rel=1e-12)
    assert sched.get_last_lr() == [group["lr"] for group in opt.param_groups]


def test_steps_trigger_switches_exactly_at_at_step(assets):
    model, opt, sched, cur = _setup(assets["bert"], at_step=3)
    text = model.text_model
    layers = text.model.encoder.layer
    assert not any(p.requires_grad for p in text.parameters())
    names_before = [g["name"] for g in opt.param_groups]
    for step in (1, 2):
        _train_step(model, opt, sched, step)
        assert not cur.advance(step, opt, sched)
        assert cur.stage == 1
    _train_step(model, opt, sched, 3)
    lrs_before = [g["lr"] for g in opt.param_groups]

    assert cur.advance(3, opt, sched)
    assert cur.stage == 2 and cur.log_fields() == {"stage": 2}
    # Only the last text layer trains now, in new groups at text_lr (biases and norms without decay).
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert not any(p.requires_grad for p in text.model.embeddings.parameters())
    new = opt.param_groups[len(names_before):]
    assert [g["name"] for g in new] == ["text_stage2_decay", "text_stage2_no_decay"]
    assert {id(p) for g in new for p in g["params"]} == {id(p) for p in layers[1].parameters()}
    assert all(g["lr"] == 3e-5 for g in new)
    assert new[0]["weight_decay"] == 0.05 and new[1]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in new[1]["params"]) and all(p.ndim == 2 for p in new[0]["params"])
    # Every other lr drops tenfold; the scheduler goes on from there, the text groups with it.
    for group, lr in zip(opt.param_groups, lrs_before):
        assert group["lr"] == pytest.approx(0.1 * lr, rel=1e-12)
    _assert_scheduler_consistent(opt, sched)
    ratio = opt.param_groups[0]["lr"] / new[0]["lr"]
    for step in (4, 5, 6):
        _train_step(model, opt, sched, step)  # no error: every group has a multiplier
        assert not cur.advance(step, opt, sched)
        _assert_scheduler_consistent(opt, sched)
    assert opt.param_groups[0]["lr"] / new[0]["lr"] == pytest.approx(ratio)
    assert new[0]["lr"] < 3e-5  # the cosine decay applies to the text groups too
    assert opt.state[next(iter(layers[1].parameters()))]  # and the text layer is being trained


def test_plateau_trigger_switches_after_patience_validations_without_a_new_best(assets, monkeypatch):
    model, opt, sched, cur = _setup(assets["bert"], trigger="plateau", val_every=2, patience=2)
    recalls, calls = iter([10.0, 12.0, 11.0, 12.0, 50.0]), []

    def fake_recall(model_, dataset, batch_size, device):
        calls.append(batch_size)
        return next(recalls)

    monkeypatch.setattr(curriculum_mod, "validation_recall", fake_recall)
    switched = []
    for step in range(1, 13):
        opt.step()  # no gradients: a no-op, but the scheduler expects it first
        sched.step()
        if cur.advance(step, opt, sched):
            switched.append(step)
    # Validations at steps 2, 4, 6, 8: best 10, best 12, then 11 and 12 (not better): stage II at step 8.
    assert switched == [8] and len(calls) == 4
    assert cur.stage == 2 and cur.best == 12.0 and cur.log_fields() == {"stage": 2, "val_t2v_r1": 12.0}
    assert [g["name"] for g in opt.param_groups][-2:] == ["text_stage2_decay", "text_stage2_no_decay"]


def test_plateau_bookkeeping_survives_a_checkpoint(assets, monkeypatch):
    model, opt, sched, cur = _setup(assets["bert"], trigger="plateau", val_every=1, patience=3)
    recalls = iter([5.0, 4.0, 7.0, 6.0, 6.5, 1.0])
    monkeypatch.setattr(curriculum_mod, "validation_recall", lambda *a: next(recalls))
    for step in (1, 2, 3, 4):
        assert not cur.advance(step, opt, sched)
    state = cur.state_dict()
    _, opt2, sched2, resumed = _setup(assets["bert"], trigger="plateau", val_every=1, patience=3)
    resumed.load_state_dict(state, opt2, sched2)
    assert (resumed.stage, resumed.best, resumed.since_best, resumed.log_fields()) == (1, 7.0, 1, {"stage": 1, "val_t2v_r1": 6.0})
    assert not resumed.advance(5, opt2, sched2)  # 6.5: second without a new best
    assert resumed.advance(6, opt2, sched2)  # 1.0: third, patience reached


def test_stage_two_state_loads_into_a_fresh_optimiser(assets):
    """An optimiser state saved in stage II has the text groups; loading the curriculum first rebuilds
    them, so the state loads and training continues exactly."""
    model, opt, sched, cur = _setup(assets["bert"], at_step=2, text_layers=-1)
    for step in (1, 2, 3):
        _train_step(model, opt, sched, step)
        cur.advance(step, opt, sched)
    saved = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                           "cur": cur.state_dict()})  # as written to disk: no tensor shared with the live run

    model2, opt2, sched2, cur2 = _setup(assets["bert"], at_step=2, text_layers=-1)
    model2.load_state_dict(saved["model"])
    with pytest.raises(ValueError):  # without the curriculum the groups do not match
        opt2.load_state_dict(saved["opt"])
    cur2.load_state_dict(saved["cur"], opt2, sched2)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert cur2.stage == 2 and all(p.requires_grad for p in model2.text_model.parameters())
    assert [g["name"] for g in opt2.param_groups] == [g["name"] for g in opt.param_groups]

    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        torch.manual_seed(7)  # the same dropout masks in both
        _train_step(m, o, s, 4)
        _train_step(m, o, s, 5)
    _assert_scheduler_consistent(opt2, sched2)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name


def _plateau_worker(rank, world, port, bert, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, opt, sched, cur = _setup(bert, trigger="plateau", val_every=1, patience=1)
    # Per-process batch-norm statistics can make the processes measure different recalls.
    recalls = iter([[10.0, 9.0, 8.0], [10.0, 20.0, 30.0]][rank])
    curriculum_mod.validation_recall = lambda *a: next(recalls)
    switched = [step for step in (1, 2, 3) if cur.advance(step, opt, sched)]
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({"switched": switched, "r1": cur.last_r1}))
    dist.destroy_process_group()


def test_every_process_switches_at_the_same_step(assets, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_plateau_worker, args=(2, port, str(assets["bert"]), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1] == {"switched": [2], "r1": 9.0}  # rank 0's measurements decide


# ------------------------------------------------------------------------------------ end to end
def _curriculum_recipe(assets, out, **cur):
    cfg = tiny_recipe(assets["bert"], assets["data"], out, steps=6)
    cfg.model.text.trainable_layers = 0  # stage I: frozen
    cfg.train.curriculum = CurriculumConfig(text_trainable_layers=1, text_lr=1e-3, lr_scale=0.1, **cur)
    validate_recipe(cfg)
    return cfg


def _text_weights(path):
    return {k: v for k, v in load_file(str(path / "model.safetensors")).items() if k.startswith("text_model.")}


@pytest.mark.parametrize("kill_step", [2, 4])  # before and after the switch at step 3
def test_killed_run_resumes_exactly_across_the_switch(assets, tmp_path, monkeypatch, kill_step):
    recipe = lambda out: _curriculum_recipe(assets, out, trigger="steps", at_step=3)  # noqa: E731
    straight = pretrain(recipe(tmp_path / "straight"))
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1, 1, 2, 2, 2, 2]
    factor = warmup_cosine(1, 6, 0.01)  # the tiny recipe's schedule: lr 1e-3, 1 warmup step, 6 steps
    assert rows[1]["lr"] == pytest.approx(1e-3 * factor(2)) and rows[2]["lr"] == pytest.approx(0.1 * 1e-3 * factor(3))

    state, resumed = kill_and_resume(recipe, tmp_path / "resumed", kill_step)
    assert state["curriculum"]["stage"] == (1 if kill_step < 3 else 2)
    assert_same_weights(straight, resumed)
    assert [json.loads(x)["stage"] for x in (resumed / "metrics.jsonl").read_text().splitlines()] == [1, 1, 2, 2, 2, 2]

    # Stage I left the text encoder as it was; stage II trained its last layer only.
    first = _text_weights(straight / "checkpoints" / "step_00000004")
    final = _text_weights(straight / "model")
    fresh = {f"text_model.{k}": v for k, v in build_model(recipe(tmp_path / "unused").model).text_model.state_dict().items()}
    changed = {k for k in final if not torch.equal(final[k], fresh[k])}
    assert changed and all(".encoder.layer.1." in k for k in changed)
    assert any(not torch.equal(first[k], final[k]) for k in changed)


def test_plateau_trigger_runs_in_a_pretraining_run(assets, tmp_path):
    cfg = _curriculum_recipe(assets, tmp_path / "run", trigger="plateau", val_every=1, patience=1)
    rows = [json.loads(x) for x in (pretrain(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["val_t2v_r1"] <= 100.0 for r in rows)
    best, stage = -math.inf, 1
    for r in rows:  # patience 1: stage II right after the first validation without a new best
        if stage == 1 and r["val_t2v_r1"] <= best:
            stage = 2
        best = max(best, r["val_t2v_r1"]) if stage == 1 else best
        assert r["stage"] == stage, rows
