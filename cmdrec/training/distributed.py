"""Data-parallel training across processes: one per GPU (NCCL) or N on a CPU (gloo).

`cmdrec train --nproc N` (or `training.devices: [0, 1, 2]` on a GPU box) relaunches the same command
under torch's elastic launcher (`torch.distributed.run`, as `torchrun` does), one process per rank;
`torchrun --nproc_per_node=N -m cmdrec train ...` works the same, and `--nnodes`/`--rdzv-endpoint`
spread it over machines. Each rank reads its share of every global batch (so the global batch is
`training.batch_size` whatever the world size), gradients are averaged by DDP, and rank 0 alone
writes logs, checkpoints and results."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cmdrec.errors import InputError

log = logging.getLogger(__name__)

LAUNCHED = "CMDREC_DISTRIBUTED_CHILD"  # set for the ranks a launch started, so they do not launch again


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_environment() -> World:
    """The world a launcher described (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(world: World, device: torch.device) -> None:
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """Each rank's own GPU (the launcher set CUDA_VISIBLE_DEVICES or LOCAL_RANK picks one)."""
    return torch.device("cuda", world.local_rank) if device.type == "cuda" and world.distributed else device


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def gather(world: World, value):
    """Every rank's `value`, in rank order (on every rank)."""
    if not world.distributed:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def broadcast(world: World, value):
    """Rank 0's `value` on every rank."""
    if not world.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shard(indices, world: World):
    """A rank's share of one global batch and its loss weight. DDP averages the ranks' gradients with
    equal weight, so each rank's mean loss is weighted by its share of the batch (x world size); a rank
    left with nothing (a last batch smaller than the world) repeats a window at weight 0, since every
    rank must step."""
    mine = indices[world.rank :: world.size]
    if not len(mine):
        return indices[:1], 0.0
    return mine, len(mine) * world.size / len(indices)


def launch(argv: list[str], nproc: int, devices: tuple[int, ...] = ()) -> int:
    """Run `cmdrec <argv>` as `nproc` ranks under torch's elastic launcher; returns its exit status."""
    if os.environ.get(LAUNCHED):
        raise InputError("already a rank of a distributed run; --nproc / training.devices cannot launch again")
    env = {**os.environ, LAUNCHED: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if devices:
        if not torch.cuda.is_available():
            raise InputError(f"training.devices={list(devices)} names GPUs and none is available; on a CPU use --nproc")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "cmdrec", *argv]  # fmt: skip
    return subprocess.call(command, env=env)


def restore_rng(saved: dict, world: World) -> None:
    """This rank's random state from a checkpoint's (each rank's own when the world size is the same)."""
    per_rank = saved.get("torch_per_rank")
    same_world = per_rank is not None and len(per_rank) == world.size
    if world.distributed and not same_world:
        log.warning("resuming on %d ranks from a checkpoint of another world size: dropout draws differ", world.size)
    torch.set_rng_state(per_rank[world.rank] if same_world else saved["torch"])
    if "cuda" in saved and torch.cuda.is_available():
        cuda_states = saved.get("cuda_per_rank")
        same = cuda_states is not None and len(cuda_states) == world.size
        torch.cuda.set_rng_state(cuda_states[world.rank] if same else saved["cuda"])
