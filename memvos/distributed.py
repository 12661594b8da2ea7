"""Splitting a dataset across processes: ``torchrun`` ranks (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE in the environment), ``--shard K/N`` for the array jobs of a cluster
scheduler, or both (each shard split again across its ranks).

Every process computes the same assignment from the sequence names and frame counts alone
(longest first, each to the least-loaded part), so no process needs to talk to another to know
its share; under ``torchrun`` they talk once, at the end, to merge their summaries on rank 0.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from memvos.errors import InputError


@dataclass(frozen=True)
class Launch:
    """Where this process sits among the processes ``torchrun`` started (1 of 1 without it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> Launch:
        env = os.environ

        def read(name: str, default: int) -> int:
            value = env.get(name, str(default))
            if not value.isdigit():
                raise InputError(None, f"environment variable {name}={value!r} is not a number")
            return int(value)

        world = read("WORLD_SIZE", 1)
        launch = cls(read("RANK", 0), world, read("LOCAL_RANK", 0), read("LOCAL_WORLD_SIZE", world))
        if not 0 <= launch.rank < launch.world_size:
            raise InputError(None, f"RANK={launch.rank} is outside WORLD_SIZE={launch.world_size}")
        return launch


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` -> (K, N): this job's share, K counted from 0 (``--shard $SLURM_ARRAY_TASK_ID/4``
    with ``--array=0-3``). None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(None, f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(None, f"--shard {text!r}: K must be in 0..N-1 and N at least 1")
    return k, n


def part_index(shard: tuple[int, int], launch: Launch) -> tuple[int, int]:
    """(index, count) of this process's part: shard K of N, split again across the ranks."""
    k, n = shard
    return k * launch.world_size + launch.rank, n * launch.world_size


def assign(frames: dict[str, int], count: int) -> list[list[str]]:
    """Split sequences (name -> frame count) into ``count`` parts of near-equal frames: longest
    first, each to the part with the fewest frames (ties: the lower index). Each part keeps
    the sequences in name order. Deterministic: the same input gives the same parts anywhere."""
    parts: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for name in sorted(frames, key=lambda s: (-frames[s], s)):
        i = min(range(count), key=lambda j: (loads[j], j))
        parts[i].append(name)
        loads[i] += frames[name]
    order = {name: i for i, name in enumerate(frames)}
    return [sorted(p, key=order.__getitem__) for p in parts]


def rank_device(device: str, launch: Launch) -> str:
    """``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``) when several processes share a node."""
    if device == "cuda" and launch.local_world_size > 1:
        return f"cuda:{launch.local_rank}"
    return device


def rank_threads(launch: Launch) -> int:
    """CPU threads for this process: the node's cores shared among its ranks."""
    return max(1, (os.cpu_count() or 1) // launch.local_world_size)


@contextlib.contextmanager
def process_group(launch: Launch) -> Iterator[None]:
    """Join the ``torchrun`` process group (gloo: it only carries the summaries) for the block."""
    if launch.world_size == 1:
        yield
        return
    import torch.distributed as dist

    if not {"MASTER_ADDR", "MASTER_PORT"} <= set(os.environ):
        raise InputError(None, "WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set: start with torchrun")
    # A rank with a short share waits for the longest one: allow days, not the default 30 minutes.
    dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size,
                            timeout=datetime.timedelta(days=7))
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather(obj: Any, launch: Launch) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
    if launch.world_size == 1:
        return [obj]
    import torch.distributed as dist

    objects: list[Any] = [None] * launch.world_size
    dist.all_gather_object(objects, obj)
    return objects if launch.rank == 0 else None
