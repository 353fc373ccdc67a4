"""Batch streams: the batches of one dataset in an order fixed by (seed, epoch), which can be started at
any (epoch, batch) position, so that a resumed run reads exactly the batches the interrupted one would
have read. Several streams (a transcript corpus and a caption corpus) are interleaved by a fixed
schedule of steps (:func:`is_caption_step`)."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler


class ResumableSampler(Sampler[int]):
    """A seeded permutation per epoch, split across processes, that can start mid-epoch.

    The permutation is over groups of ``group_size`` consecutive indices (1: single indices), each group
    kept whole and in order, so a batch of a multiple of ``group_size`` holds whole groups (e.g. a
    direction pair of the embedded dataset: each other's hardest negative). Process ``r`` of ``W`` takes
    every W-th group of the (padded) permutation, like ``DistributedSampler``; ``start`` skips the first
    indices of this process's share on resume.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, group_size: int = 1):
        if group_size < 1 or n % group_size:
            raise ValueError(f"{n} samples do not split into groups of {group_size} (data.group_size)")
        self.n, self.seed, self.rank, self.world, self.group = n, seed, rank, world_size, group_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return math.ceil(self.n // self.group / self.world) * self.group

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        groups = self.n // self.group
        perm = torch.randperm(groups, generator=g).tolist()
        perm += perm[: math.ceil(groups / self.world) * self.world - groups]
        mine = [j * self.group + i for j in perm[self.rank :: self.world] for i in range(self.group)]
        return iter(mine[self.start :])


class BatchStream:
    """Endless batches of ``dataset`` (a map-style dataset, or an iterable one with ``set_position(epoch,
    samples_to_skip)`` and ``block_size == batch_size`` such as :class:`~tvts.data.shards.ShardDataset`),
    epoch after epoch. ``position`` = (epoch, batches already taken in it) is all a checkpoint needs."""

    def __init__(self, dataset: Dataset, batch_size: int, collate_fn, workers: int, seed: int,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False, group_size: int = 1):
        self.dataset, self.batch_size, self.collate_fn = dataset, batch_size, collate_fn
        self.workers, self.seed, self.pin_memory = workers, seed, pin_memory
        self.iterable = isinstance(dataset, IterableDataset)
        self.sampler = None if self.iterable else ResumableSampler(len(dataset), seed, rank, world_size, group_size)
        if self.batches_per_epoch() == 0:
            raise ValueError(f"{len(dataset)} samples cannot fill one batch of {batch_size} per process")
        self.epoch, self.batch = 0, 0
        self._it = None

    def batches_per_epoch(self) -> int:
        return len(self.dataset if self.iterable else self.sampler) // self.batch_size

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.batch

    def seek(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch, self._it = int(epoch), int(batch), None

    def _start(self) -> None:
        skip = self.batch * self.batch_size
        if self.iterable:
            self.dataset.set_position(self.epoch, skip)
            sampler = None
        else:
            self.dataset.set_epoch(self.epoch)
            self.sampler.set_position(self.epoch, skip)
            sampler = self.sampler
        # Its own generator, so that creating the loader draws nothing from the global RNG (which dropout
        # uses): a resumed run then draws the same numbers as an uninterrupted one.
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.workers,
                            collate_fn=self.collate_fn, drop_last=True, pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(self.seed + self.epoch))
        self._it = iter(loader)

    def next(self) -> dict:
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            self.seek(self.epoch + 1, 0)
            self._start()
            batch = next(self._it)
        self.batch += 1
        return batch


def is_caption_step(step: int, caption_ratio: float) -> bool:
    """Whether 0-based ``step`` trains on a caption batch: the caption steps are spread evenly, a fraction
    ``caption_ratio`` of all steps (0.5 alternates, as TVTSv2 does; 0 never)."""
    return math.floor((step + 1) * caption_ratio) > math.floor(step * caption_ratio)
