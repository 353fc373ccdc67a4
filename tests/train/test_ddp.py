"""A 2-process (gloo, CPU) step must give the loss and gradients of a 1-process step on the same
global batch: the contrastive negatives are the global batch and DDP averages the gradients."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from tvts.config import ObjectiveConfig
from tvts.models import build_model
from tvts.objectives.tvts import TVTSObjective
from tvts.testing import tiny_batch, make_tiny_bert, tiny_model_config
from tvts.train.distributed import init_distributed

B = 4


def _global_batch():
    return tiny_batch(B, seed=3)


def _model(bert_dir):
    torch.manual_seed(0)
    return build_model(tiny_model_config(bert_dir)).eval()  # eval: no dropout, so both runs are deterministic


def _scaled_error(got: torch.Tensor, ref: torch.Tensor, floor: float) -> float:
    """max |got - ref| over max(max |ref|, floor)."""
    return (got - ref).abs().max().item() / max(ref.abs().max().item(), floor)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank, world, port, bert_dir, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    model = _model(bert_dir)
    ddp = DistributedDataParallel(model)
    batch = _global_batch()
    per = B // world
    local = {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}
    losses, _ = TVTSObjective(ObjectiveConfig())(ddp, local)
    loss = sum(losses.values())
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    if info.rank == 0:
        torch.save({"loss": total / world, "grads": _grads(model)}, os.path.join(out_dir, "ddp.pt"))
    dist.destroy_process_group()


def test_two_process_step_equals_one_process_step(tmp_path):
    bert_dir = make_tiny_bert(tmp_path / "bert")
    model = _model(bert_dir)
    losses, _ = TVTSObjective(ObjectiveConfig())(model, _global_batch())
    loss = sum(losses.values())
    loss.backward()
    ref = _grads(model)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(bert_dir), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)

    assert torch.allclose(got["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    assert set(got["grads"]) == set(ref)
    # 1 and 2 processes sum in different orders: float32 rounding differs by ~1e-6 of a tensor's largest
    # element, and an element near zero has no relative precision of its own. So each error is measured
    # against the tensor's scale, floored at 1e-5 of the largest gradient (a key bias's gradient is zero in
    # exact arithmetic: what is left is rounding noise). A wrong average (x2) or a missing all-gather
    # (negatives from the local half only) moves the gradients by a large fraction of that scale.
    floor = 1e-5 * max(g.abs().max().item() for g in ref.values())
    errors = {name: _scaled_error(got["grads"][name], g, floor) for name, g in ref.items()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-4, (worst, errors[worst])
    assert min(_scaled_error(2 * g, g, floor) for g in ref.values() if g.abs().max() > floor) > 0.5  # the check can fail
    # The text encoder receives contrastive gradient (and only that), so it must be in the comparison.
    assert any(n.startswith("text_model.") for n in ref)
