"""CPD: cross-modal pair discrimination (CPD Section 3), with a memory bank and NCE (Section 3.2).

Each of the N training video-text pairs (v_i, t_i) is a class i. The model maps a clip to f^v and its
text to f^t, both l2-normalised (``vid_proj``, and ``txt_proj`` = two FC layers with batch norm and ReLU
on the mean-pooled word embeddings). ``objective.cpd.loss`` picks one of the three objectives of
Section 3.1:

- ``cross_pair`` (Eq. 3): p(i_t|v) = exp(f_i^t·f^v/τ) / Σ_j exp(f_j^t·f^v/τ) and p(i_v|t) likewise;
- ``self_instance`` (Eq. 2): p(i|(v,t)) with the score f_i^v·f^v/τ + f_i^t·f^t/τ;
- ``ranking`` (Eq. 4): in-batch hinge loss, (1/(n−1)) Σ_{j≠i} max(0, δ + S(t_j, v_i) − S(t_i, v_i)).

The N-way softmaxes are approximated by noise-contrastive estimation (Eq. 5) as in the instance
discrimination of Wu et al. (2018), which CPD follows: f_j^t, f_j^v of every pair j come from a memory
bank, p(i|·) = exp(score_i)/Z with a constant Z, h(i) = p(i)/(p(i) + m·P_n) with P_n = 1/N, and

    L = −[ log h(i) + Σ_{k=1..m} log(1 − h(j_k)) ],   j_1..j_m drawn uniformly from the N pairs,

averaged over the batch; for ``cross_pair`` the loss is L(v→t) + L(t→v).

``objective.cpd.positive: current`` (``cross_pair`` only) scores the positive pair as f_i^t·f^v of this
batch in both directions instead of against the bank, so both towers train on it; the noise pairs stay the
bank's. (A way to take CPD apart, not the paper's choice.)

``objective.cpd.estimator: softmax`` replaces Eq. 5 by the cross-entropy of the positive among itself and
the same m noise pairs, −log exp(score_i) / (exp(score_i) + Σ_k exp(score_{j_k})) (CMC's softmax
alternative to NCE; no Z): the bank, the noise and the updates stay as they are, so the two estimators
can be told apart.

Decisions where the paper is silent (Wu et al.'s convention unless said otherwise):

- Positives are scored against the *memory* entry of their own index (f_i^t from the bank against the
  current f^v), not against the current embedding of the other modality. So the v→t term trains the
  video side only and the t→v term the text side only; the bank never receives a gradient.
- The bank starts as random unit vectors (a ``torch.Generator`` seeded with :data:`BANK_SEED`, so building
  the objective draws nothing from the global RNG), and after each training step the rows of the batch
  become f_i ← normalise(momentum·f_i + (1 − momentum)·f) (momentum 0.5 as Wu et al.); the loss uses the
  bank as it was before the step. A pair index that occurs twice in one (global) batch is updated once,
  from its first occurrence, so the update is deterministic.
- Noise indices are uniform over all N pairs, the positive included (plain NCE with a uniform noise
  distribution, as Wu et al.); both directions of ``cross_pair`` use the same m indices per sample;
  m = min(``num_noise``, N − 1). They come from the global RNG of the batch's device, which the trainer
  re-seeds at every checkpoint, so a resumed run draws the same indices.
- ``objective.cpd.noise=batch`` (not the paper's; with the softmax estimator) takes the noise from the batch
  instead: each sample's other B − 1 pairs of this process's batch, scored by their bank entries as the
  uniform draws are. The negatives are then M_base's (the direction twin among them when the batch holds the
  pairs), and only the scores' source, the bank, differs from an in-batch contrastive loss.
- ``objective.cpd.keys=batch`` (not the paper's; with ``noise=batch``, so the softmax, and ``cross_pair``)
  scores each query against the other tower's embeddings of this batch, detached, instead of their bank
  entries: the keys are as fresh as M_base's, and each term still trains only its query's tower (v→t the
  video, t→v the text), as with the bank. The loss then has the value of M_base's InfoNCE and, per tower,
  the gradient of its own direction only; it tells stale keys from one-sided gradients. The bank is still
  updated, so that the state stays the same.
- ``objective.cpd.keys=queue`` (not the paper's either; MoCo's queue, without its momentum encoder) scores
  against the batch's keys as ``batch`` does and against the ``queue_size`` most recent keys of earlier
  batches (all processes' pairs, detached, first in first out): negatives as many as a bank's noise draws,
  none older than ``queue_size / global batch`` steps. A queued key of the query's own pair (another window
  of the same video) and an empty slot are left out of its softmax. The queue (``queue_video``,
  ``queue_text`` ``[Q, D]``, ``queue_index`` ``[Q]`` with −1 for empty, ``queue_next``) is saved with the
  bank, so a resumed run goes on with the same keys.
- Z is estimated once, from the first training batch: Z = N · mean over the batch and its noise samples
  of exp(score/τ); one Z per distribution (buffer ``z``: [Z of p(i_t|v), Z of p(i_v|t)] for
  ``cross_pair``; [Z of p(i|(v,t)), unused] for ``self_instance``). It stays fixed afterwards and is saved
  with the bank, so a resumed run keeps it.
- In a distributed run every process scores its own samples against its copy of the bank, then the
  detached embeddings and indices of all processes are all-gathered so that every copy gets the same
  update, and the first Z is the mean of the processes' estimates. Batches have the same size on every
  process (the trainer drops the last incomplete batch).
- The ranking loss takes its negatives from the global batch (texts all-gathered with gradients, as
  :func:`tvts.objectives.contrastive.info_nce`); it uses no bank, but the buffers exist for every loss so
  that the state layout of a checkpoint does not depend on ``objective.cpd.loss``.
- The NCE terms are computed in float32 outside autocast, in log space: log h = log σ(log p − log(m·P_n)),
  the same quantity without the overflow of exp(score/τ).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from tvts.config import ObjectiveConfig
from tvts.objectives.contrastive import clip_text_embedding, gather_with_grad

BANK_SEED = 0  # the memory bank's initial random unit vectors come from this seed, not from the global RNG
BANK_PRODUCT_RATIO = 8  # bank_logits scores the whole bank at once when m * this >= N (same values, less copying)


# ---------------------------------------------------------------------------------------- memory bank
def random_unit_rows(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, d]`` rows drawn uniformly on the unit sphere (normalised Gaussians)."""
    return F.normalize(torch.randn(n, d, generator=generator), dim=-1)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_all(features: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The detached ``features`` ``[b, D]`` and ``index`` ``[b]`` of every process, concatenated in rank
    order: ``[W*b, D]``, ``[W*b]`` (the inputs themselves outside a distributed run)."""
    features = features.detach()
    if not _distributed():
        return features, index
    world = dist.get_world_size()
    all_features = features.new_empty(world * features.shape[0], *features.shape[1:])
    all_index = index.new_empty(world * index.shape[0])
    dist.all_gather_into_tensor(all_features, features.contiguous())
    dist.all_gather_into_tensor(all_index, index.contiguous())
    return all_features, all_index


@torch.no_grad()
def momentum_update(memory: torch.Tensor, index: torch.Tensor, features: torch.Tensor, momentum: float) -> None:
    """In place: ``memory[i] ← normalise(momentum·memory[i] + (1 − momentum)·f)`` for each row f of
    ``features`` ``[b, D]`` and its pair index i of ``index`` ``[b]``; the other rows are untouched. An index
    that occurs more than once is updated once, from its first occurrence."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(len(index), device=index.device)
    first = torch.full((len(unique),), len(index), device=index.device, dtype=positions.dtype)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")  # first position of each unique index
    rows = index[first]
    new = momentum * memory[rows] + (1.0 - momentum) * features[first].to(memory.dtype)
    memory.index_copy_(0, rows, F.normalize(new, dim=-1))


# ---------------------------------------------------------------------------------------- NCE (Eq. 5)
def queue_logits(query: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, queue_index: torch.Tensor,
                 index: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of ``query`` ``[B, D]`` against this batch's keys ``keys`` ``[B, D]`` (row b's positive is
    ``keys[b]``) and a queue of earlier keys ``queue`` ``[Q, D]`` of the pairs ``queue_index`` ``[Q]``: the
    positive → ``[B]`` and the noise → ``[B, B − 1 + Q]`` (the batch's other keys, then the queue, with −inf
    where a slot is empty (index −1) or holds the row's own pair ``index[b]``)."""
    rows = torch.arange(len(query), device=query.device)
    pos, batch_neg = bank_logits(query, keys, rows, batch_noise(rows), temperature)
    queued = (query @ queue.T) / temperature
    left_out = (queue_index[None, :] < 0) | (queue_index[None, :] == index[:, None])
    return pos, torch.cat([batch_neg, queued.masked_fill(left_out, float("-inf"))], 1)


@torch.no_grad()
def enqueue(queues: list[torch.Tensor], queue_index: torch.Tensor, next_slot: torch.Tensor,
            rows: list[torch.Tensor], index: torch.Tensor) -> None:
    """In place, first in first out: ``rows[k]`` ``[n, D]`` go into ``queues[k]`` ``[Q, D]`` and ``index`` ``[n]``
    into ``queue_index`` from slot ``next_slot`` on (wrapping); ``next_slot`` (a 0-d tensor) moves on by n.
    With n > Q only the last Q rows are kept."""
    q = len(queue_index)
    first = max(0, len(index) - q)
    slots = (next_slot + torch.arange(len(index) - first, device=queue_index.device)) % q
    for queue, r in zip(queues, rows):
        queue[slots] = r[first:].to(queue.dtype)
    queue_index[slots] = index[first:]
    next_slot.copy_((next_slot + len(index)) % q)


def sample_noise(batch: int, m: int, num_samples: int, device: torch.device | str) -> torch.Tensor:
    """``[batch, m]`` noise pair indices, uniform over the ``num_samples`` pairs (global RNG of ``device``)."""
    return torch.randint(num_samples, (batch, m), device=device)


def batch_noise(index: torch.Tensor) -> torch.Tensor:
    """``[B, B - 1]``: for each row of the batch ``index`` ``[B]``, the pair indices of the other rows (in batch
    order), so the noise is the batch's own pairs, as an in-batch contrastive loss has them."""
    b = len(index)
    others = ~torch.eye(b, dtype=torch.bool, device=index.device)
    return index.expand(b, b)[others].view(b, b - 1)


def bank_logits(query: torch.Tensor, memory: torch.Tensor, positive: torch.Tensor, noise: torch.Tensor,
                temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of ``query`` ``[B, D]`` against bank rows: the positive ``memory[positive]`` → ``[B]``
    (f_i·f/τ) and the noise ``memory[noise]`` (``noise`` ``[B, m]``) → ``[B, m]`` (f_j·f/τ)."""
    pos = (memory[positive] * query).sum(-1) / temperature
    if noise.shape[1] * BANK_PRODUCT_RATIO >= memory.shape[0]:
        # m close to N: one [B, N] product with the whole bank, then pick the noise columns (the [B, m, D]
        # gather below would copy the bank B/8 times or more). The product's backward needs the bank as it is
        # now, and the step updates it in place: so a copy, once.
        neg = (query @ memory.clone().T).gather(1, noise) / temperature
    else:
        neg = torch.einsum("bd,bmd->bm", query, memory[noise]) / temperature
    return pos, neg


def estimate_z(noise_logits: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Z ≈ Σ_{j=1..N} exp(score_j) estimated from uniform noise samples: N · mean(exp(``noise_logits``))."""
    return num_samples * noise_logits.detach().float().exp().mean()


def nce_loss(pos_logits: torch.Tensor, noise_logits: torch.Tensor, z: torch.Tensor,
             num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 for one conditional distribution. ``pos_logits`` ``[B]`` (score of the true pair / τ),
    ``noise_logits`` ``[B, m]``, ``z`` the normaliser Z, ``num_samples`` N (P_n = 1/N).

    With p = exp(logit)/Z and h = p / (p + m·P_n): returns the loss
    mean_b −[log h(pos_b) + Σ_k log(1 − h(noise_bk))] and h of the positives ``[B]`` (detached)."""
    m = noise_logits.shape[1]
    log_m_pn = math.log(m / num_samples)
    log_z = torch.log(z)
    pos = pos_logits - log_z - log_m_pn  # log(p / (m·P_n)), so h = σ(pos)
    neg = noise_logits - log_z - log_m_pn
    loss = -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(1)).mean()
    return loss, torch.sigmoid(pos).detach()


def softmax_loss(pos_logits: torch.Tensor, noise_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The softmax estimator: mean_b −log softmax([pos_b, noise_b1..noise_bm])_0 for ``pos_logits`` ``[B]`` and
    ``noise_logits`` ``[B, m]``; returns the loss and the positive's probability ``[B]`` (detached)."""
    logp = torch.cat([pos_logits[:, None], noise_logits], 1).log_softmax(1)[:, 0]
    return -logp.mean(), logp.exp().detach()


# ---------------------------------------------------------------------------------------- ranking (Eq. 4)
def ranking_loss(video: torch.Tensor, text: torch.Tensor, positive: torch.Tensor, margin: float) -> torch.Tensor:
    """Eq. 4, averaged over the videos: ``video`` ``[b, D]`` and ``text`` ``[n, D]`` unit vectors (n ≥ b: the
    texts of the whole batch), ``positive`` ``[b]`` the column of each video's own text. For video i:
    (1/(n−1)) Σ_{j≠i} max(0, δ + S(t_j, v_i) − S(t_i, v_i)) with S the cosine similarity."""
    n = text.shape[0]
    sim = video @ text.T  # [b, n], S(t_j, v_i)
    rows = torch.arange(video.shape[0], device=video.device)
    pos = sim[rows, positive]
    hinge = (margin + sim - pos[:, None]).clamp_min(0.0)
    hinge = hinge.masked_fill(F.one_hot(positive, n).bool(), 0.0)  # j ≠ i
    return (hinge.sum(1) / (n - 1)).mean()


# ---------------------------------------------------------------------------------------- objective
class CPDObjective(nn.Module):
    """CPD's loss (``objective.cpd``) and its memory bank of all ``num_samples`` training pairs.

    Buffers (saved in every checkpoint, restored on resume): ``memory_video`` ``[N, D]``, ``memory_text``
    ``[N, D]`` (unit rows) and ``z`` ``[2]`` (0 until estimated from the first training batch).
    A batch needs ``frames`` ``[B, T, 3, H, W]``, ``captions`` (B strings: t_i) and ``index`` ``[B]`` (i).
    """

    def __init__(self, cfg: ObjectiveConfig, model: nn.Module, num_samples: int):
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"CPD discriminates between the training pairs; it needs at least 2, not {num_samples}")
        self.cfg = cfg.cpd
        self.clip_text = cfg.clip_text
        self.num_samples = num_samples
        self.num_noise = min(self.cfg.num_noise, num_samples - 1)  # m
        d = model.config.embed_dim
        g = torch.Generator().manual_seed(BANK_SEED)
        self.register_buffer("memory_video", random_unit_rows(num_samples, d, g))
        self.register_buffer("memory_text", random_unit_rows(num_samples, d, g))
        self.register_buffer("z", torch.zeros(2))
        if self.cfg.keys == "queue":  # only then, so that checkpoints of the other settings keep their layout
            q = self.cfg.queue_size
            self.register_buffer("queue_video", torch.zeros(q, d))
            self.register_buffer("queue_text", torch.zeros(q, d))
            self.register_buffer("queue_index", torch.full((q,), -1, dtype=torch.long))  # -1: empty slot
            self.register_buffer("queue_next", torch.zeros((), dtype=torch.long))
        self._z_known: bool | None = None  # None: look at the buffer (it may have just been loaded)
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_z_known", None))

    def embed(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """f^v ``[B, D]`` of the clips and f^t ``[B, D]`` of their texts (``objective.clip_text``), l2-normalised, float32."""
        f_v = model.encode_video(batch["frames"], batch.get("keep"))
        f_t = clip_text_embedding(model, batch, self.clip_text)
        return F.normalize(f_v.float(), dim=-1), F.normalize(f_t.float(), dim=-1)

    def forward(self, model: nn.Module, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        f_v, f_t = self.embed(model, batch)
        index = batch["index"].to(f_v.device)
        with torch.autocast(f_v.device.type, enabled=False):
            if self.cfg.loss == "ranking":
                t_all, offset = gather_with_grad(f_t)
                rows = torch.arange(len(f_v), device=f_v.device) + offset
                losses = {"cpd_ranking": ranking_loss(f_v, t_all, rows, self.cfg.margin)}
                metrics = {}
            else:
                losses, metrics = self._nce(f_v, f_t, index)
            with torch.no_grad():
                sim = f_v @ f_t.T  # in-batch cosine similarities, video i against caption j
                target = torch.arange(len(sim), device=sim.device)
                metrics["v2t_acc"] = (sim.argmax(1) == target).float().mean()
                metrics["t2v_acc"] = (sim.argmax(0) == target).float().mean()
        return losses, metrics

    def _nce(self, f_v: torch.Tensor, f_t: torch.Tensor, index: torch.Tensor):
        """NCE losses of ``cross_pair`` (v→t and t→v) or ``self_instance``, then the bank update."""
        c, n = self.cfg, self.num_samples
        if c.noise == "batch":
            noise = batch_noise(index)
        else:
            noise = sample_noise(len(index), self.num_noise, n, index.device)
        if c.loss == "cross_pair":
            if c.keys == "queue":  # this batch's keys, detached, then the queue of earlier ones; the queue is
                # read through a copy because enqueue() below overwrites it before backward needs it
                queue_v, queue_t = self.queue_video.clone(), self.queue_text.clone()
                logits = {"v2t": queue_logits(f_v, f_t.detach(), queue_t, self.queue_index, index, c.temperature),
                          "t2v": queue_logits(f_t, f_v.detach(), queue_v, self.queue_index, index, c.temperature)}
            else:
                if c.keys == "batch":  # the other tower's embeddings in this batch, detached; rows by batch position
                    keys_v, keys_t = f_v.detach(), f_t.detach()
                    positive = torch.arange(len(index), device=index.device)
                    noise = batch_noise(positive)
                else:
                    keys_v, keys_t, positive = self.memory_video, self.memory_text, index
                logits = {"v2t": bank_logits(f_v, keys_t, positive, noise, c.temperature),   # p(i_t | v)
                          "t2v": bank_logits(f_t, keys_v, positive, noise, c.temperature)}  # p(i_v | t)
            if c.positive == "current":  # the pair scored as it is now, in both directions
                pos = (f_v * f_t).sum(-1) / c.temperature
                logits = {name: (pos, neg) for name, (_, neg) in logits.items()}
        else:
            pos_v, neg_v = bank_logits(f_v, self.memory_video, index, noise, c.temperature)
            pos_t, neg_t = bank_logits(f_t, self.memory_text, index, noise, c.temperature)
            logits = {"self": (pos_v + pos_t, neg_v + neg_t)}  # p(i | (v, t))
        losses, metrics = {}, {}
        if c.estimator == "softmax":
            for name, (pos, neg) in logits.items():
                losses[f"cpd_{name}"], p = softmax_loss(pos, neg)
                metrics[f"p_pos_{name}"] = p.mean()
        else:
            z = self._normalisers([neg for _, neg in logits.values()])
            for k, (name, (pos, neg)) in enumerate(logits.items()):
                losses[f"cpd_{name}"], h = nce_loss(pos, neg, z[k], n)
                metrics[f"nce_h_{name}"] = h.mean()
        if self.training:
            all_v, all_index = gather_all(f_v, index)
            all_t, _ = gather_all(f_t, index)
            momentum_update(self.memory_video, all_index, all_v, c.momentum)
            momentum_update(self.memory_text, all_index, all_t, c.momentum)
            if c.keys == "queue":  # after the loss: a batch is never its own queued negative
                enqueue([self.queue_video, self.queue_text], self.queue_index, self.queue_next, [all_v, all_t], all_index)
        return losses, metrics

    def _normalisers(self, noise_logits: list[torch.Tensor]) -> torch.Tensor:
        """The constants Z ``[2]``: estimated from this batch's noise scores the first time (stored when
        training, averaged over the processes of a distributed run), the stored ones afterwards."""
        if self._z_known is None:
            self._z_known = bool((self.z[: len(noise_logits)] > 0).all())
        if self._z_known:
            return self.z
        z = self.z.clone()
        for k, neg in enumerate(noise_logits):
            z[k] = estimate_z(neg, self.num_samples)
        if _distributed():
            dist.all_reduce(z)
            z /= dist.get_world_size()
        if self.training:
            self.z.copy_(z)
            self._z_known = True
        return z
