"""train.strategy=fsdp (PyTorch FSDP2) on 2 gloo processes: one step equals a DDP step on the same global
batch, and a run killed after a sharded checkpoint resumes to bit-identical weights, exported as one file."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from tvts.config import ObjectiveConfig, TrainConfig
from tvts.models import build_model, load_model
from tvts.objectives import Pretrainer
from tvts.objectives.tvts import TVTSObjective
from tvts.testing import tiny_batch, assert_same_weights, make_tiny_bert, tiny_model_config, tiny_recipe
from tvts.train.checkpoint import SHARDED_NAME, full_model_state, latest_checkpoint
from tvts.train.distributed import init_distributed, shard_fsdp
from tvts.train.optim import build_optimizer, build_scheduler
from tvts.train.trainer import train_step

B = 4


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _global_batch():
    return tiny_batch(B, seed=5)


def _one_step(bert_dir, rank, world, strategy):
    """Full gradients and parameters after one train_step of the global batch split over the processes."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config(bert_dir, sort_head="transformer")).eval()  # eval: no dropout
    net = Pretrainer(model, TVTSObjective(ObjectiveConfig(), model, B))
    if strategy == "fsdp":
        shard_fsdp(net, bf16=False)
        runner = net
    else:
        runner = DistributedDataParallel(net)
    cfg = TrainConfig(lr=1e-3, warmup_steps=0, steps=10, grad_clip=1.0)
    opt = build_optimizer(model, cfg, extra=net.objective)
    sched = build_scheduler(opt, cfg)
    per = B // world
    local = {k: v[rank * per:(rank + 1) * per] for k, v in _global_batch().items()}
    params = [p for p in net.parameters() if p.requires_grad]
    loss, *_ = train_step(runner, local, opt, sched, params, "fp32", cfg.grad_clip, torch.device("cpu"))
    grads = {n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).detach().clone()
             for n, p in model.named_parameters() if p.grad is not None}
    weights = full_model_state(net) if strategy == "fsdp" else {k: v.detach().clone() for k, v in model.state_dict().items()}
    return grads, weights


def _step_worker(rank, world, port, bert_dir, out_dir):
    _env(rank, world, port)
    init_distributed("cpu")
    results = {s: _one_step(bert_dir, rank, world, s) for s in ("ddp", "fsdp")}
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "steps.pt"))
    dist.destroy_process_group()


def _scaled_error(got, ref, floor):
    return (got - ref).abs().max().item() / max(ref.abs().max().item(), floor)


def test_fsdp_step_equals_ddp_step(tmp_path):
    bert_dir = make_tiny_bert(tmp_path / "bert")
    mp.spawn(_step_worker, args=(2, _port(), str(bert_dir), str(tmp_path)), nprocs=2, join=True)
    res = torch.load(tmp_path / "steps.pt", weights_only=True)
    (g_ddp, w_ddp), (g_fsdp, w_fsdp) = res["ddp"], res["fsdp"]
    torch.manual_seed(0)
    init = build_model(tiny_model_config(bert_dir, sort_head="transformer")).state_dict()
    assert set(g_fsdp) == set(g_ddp) and set(w_fsdp) == set(w_ddp) == set(init)
    # Gradients: each tensor against its own scale (see test_ddp), floored at 1e-5 of the largest gradient.
    floor = 1e-5 * max(g.abs().max().item() for g in g_ddp.values())
    worst = max(_scaled_error(g_fsdp[n], g, floor) for n, g in g_ddp.items())
    assert worst < 1e-4, worst
    assert min(_scaled_error(2 * g, g, floor) for g in g_ddp.values() if g.abs().max() > floor) > 0.5  # can fail
    # Weights after AdamW: identical up to float rounding, and the step did move them.
    moved = max((w_ddp[k].float() - init[k].float()).abs().max().item() for k in init)
    assert moved > 1e-4
    for k in init:
        torch.testing.assert_close(w_fsdp[k], w_ddp[k], rtol=1e-5, atol=1e-6)


def _resume_worker(rank, world, port, bert_dir, data_dir, out_root):
    _env(rank, world, port)
    from pathlib import Path

    from tvts.train import trainer

    def recipe(out):
        return tiny_recipe(bert_dir, data_dir, out, steps=4, model=tiny_model_config(bert_dir, sort_head="transformer"),
                           strategy="fsdp", device="cpu", threads=1)

    out = Path(out_root)
    trainer.pretrain(recipe(out / "straight"))

    def die(step, path):
        if step == 2:
            raise KeyboardInterrupt

    try:
        trainer.pretrain(recipe(out / "resumed"), on_checkpoint=die)
    except KeyboardInterrupt:
        pass
    steps = []
    trainer.pretrain(recipe(out / "resumed"), resume=True, on_checkpoint=lambda step, path: steps.append(step))
    if rank == 0:
        (out / "resumed_checkpoints.txt").write_text(" ".join(map(str, steps)))
    dist.destroy_process_group()


def test_fsdp_sharded_checkpoint_resumes_exactly_and_exports_one_file(tmp_path):
    bert_dir = make_tiny_bert(tmp_path / "bert")
    mp.spawn(_resume_worker, args=(2, _port(), str(bert_dir), str(tmp_path / "data"), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "resumed_checkpoints.txt").read_text() == "4"  # it went on from step 2, not from scratch
    ckpt = latest_checkpoint(tmp_path / "resumed")
    assert ckpt.name == "step_00000004"
    assert (ckpt / SHARDED_NAME).is_dir() and not (ckpt / "model.safetensors").exists()
    assert len(list((ckpt / SHARDED_NAME).glob("*.distcp"))) == 2  # one shard file per process
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    exported = load_model(tmp_path / "resumed" / "model")  # one model.safetensors, loaded strictly
    assert sorted(p.name for p in (tmp_path / "resumed" / "model").glob("*.safetensors")) == ["model.safetensors"]
    torch.manual_seed(0)
    fresh = build_model(tiny_model_config(bert_dir, sort_head="transformer"))
    assert any(not torch.equal(a, b) for a, b in zip(exported.state_dict().values(), fresh.state_dict().values()))
