"""Training-set order that does not depend on the number of processes.

Under DDP, Lightning gives each rank a `DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED)`;
rank r takes every W-th index of one seeded permutation. A single process that draws the
same permutation (a DistributedSampler with one replica) then sees, at every step, exactly
the union of what W ranks see with a W-times smaller batch: one run on 1 or W processes is
the same run, and the order follows `seed=` and the epoch (Lightning calls `set_epoch`).
"""
from __future__ import annotations

import os

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


def train_sampler(dataset: Dataset) -> Sampler | None:
    """The shuffling sampler of a training DataLoader (None: let Lightning's DDP install its own)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return None
    return DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True,
                              seed=int(os.getenv("PL_GLOBAL_SEED", 0)))
