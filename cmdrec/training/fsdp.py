"""Fully sharded data parallel training (`training.fsdp.enabled`) with torch's `fully_shard`: each rank
holds a shard of every wrapped module's parameters, gradients and optimizer state, and gathers a
module's parameters only while it runs.

Checkpoints are by default the ordinary single-file kind: the full weights and the full optimizer
state are gathered (every rank takes part) and rank 0 writes them, so an FSDP run resumes exactly,
evaluates, and exports to a bundle like any other, and resuming on another number of ranks is
possible. With `sharded_checkpoints`, each rank writes its own shards through
torch.distributed.checkpoint instead (nothing is gathered); such a checkpoint resumes on any number
of ranks, and evaluation and export assemble its shards in one process. With
gloo on torch 2.13 the reduce-scatter averages gradients, as DDP does (checked by the 2-process test
against one process); older torches summed them (pytorch issue 162338)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule  # asked at every training step: imported once

from cmdrec.config import FsdpConfig
from cmdrec.errors import InputError
from cmdrec.training.distributed import World

# the classes whose instances are a backbone's repeated blocks, by the end of their name
BLOCK_SUFFIXES = ("Block", "DecoderLayer", "Layer")


def check(config: FsdpConfig, device: torch.device, world: World, ema: bool) -> None:
    if not world.distributed:
        raise InputError("training.fsdp shards a model across ranks: launch with --nproc N or torchrun")
    if config.cpu_offload and device.type != "cuda":
        raise InputError("training.fsdp.cpu_offload moves GPU memory to the CPU: it needs CUDA GPUs")
    if ema:
        raise InputError("training.ema_decay is not supported with training.fsdp (the average would be unsharded)")


def shard(model: nn.Module, config: FsdpConfig, device: torch.device) -> nn.Module:
    """Wrap the model's blocks (or its large modules) and then the model itself, in place."""
    from torch.distributed import get_world_size
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    # an explicit mesh on the device the ranks train on: with gloo, never the CUDA one a GPU machine has
    mesh = init_device_mesh(device.type, (get_world_size(),))
    options = {"mesh": mesh, "reshard_after_forward": config.reshard_after_forward}
    if config.cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy()
    for module in wrapped_modules(model, config):
        fully_shard(module, **options)
    fully_shard(model, **options)
    return model


def wrapped_modules(model: nn.Module, config: FsdpConfig) -> list[nn.Module]:
    """The modules sharded on their own, innermost first, before the whole model. A module holding a
    tied weight (the item embedding shared with the output layer) stays with the whole model: a tied
    weight must live in one sharded unit."""
    owners: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        owners[id(parameter)] = owners.get(id(parameter), 0) + 1
    tied = {key for key, count in owners.items() if count > 1}
    candidates = [m for m in model.modules() if m is not model and not any(id(p) in tied for p in m.parameters())]
    if config.wrap_policy == "transformer_block":
        blocks = set(map(id, getattr(model, "backbone", model).modules()))  # the backbone's, not the input block
        return [m for m in candidates if id(m) in blocks and type(m).__name__.endswith(BLOCK_SUFFIXES)]
    chosen, covered = [], set()
    for module in reversed(candidates):  # children before their parents
        own = sum(p.numel() for p in module.parameters() if id(p) not in covered)
        if own >= config.min_num_params:
            chosen.append(module)
            covered |= {id(p) for p in module.parameters()}
    return chosen


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, gathered to CPU (a collective: every rank calls it). A tied weight is
    written under each of its names, as copies, so the file loads into the unsharded model too."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    seen, kept = set(), {}
    for name, tensor in state.items():
        kept[name] = tensor.clone() if tensor.data_ptr() in seen else tensor.contiguous()
        seen.add(tensor.data_ptr())
    return kept


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


@torch.no_grad()
def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], partial: bool = False) -> None:
    """Full weights (as checkpoints hold them) into the sharded
    model, each parameter scattered to its shards; `partial`: the trainable part of an adapter run,
    its frozen base loaded already."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    persistent = set(model.state_dict())  # a non-persistent buffer (a rotary table, a fixed zero bias) is rebuilt
    buffers = [(name, buffer) for name, buffer in model.named_buffers() if name in persistent]
    targets = [*((names[id(p)][0], p) for p in model.parameters()), *buffers]
    for name, target in targets:
        aliases = names.get(id(target), [name])
        value = next((state[n] for n in aliases if n in state), None)
        if value is None:
            if partial:
                continue
            raise InputError(f"the checkpoint lacks {name!r}: it is not this model's")
        value = value.to(target.dtype)
        if isinstance(target, DTensor):
            value = distribute_tensor(value.to(target.device), target.device_mesh, target.placements)
        target.copy_(value)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    # strict=False: a parameter that never had a gradient (a decoder's unused token table) has no state
    # in the checkpoint, as in the run that wrote it
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True, strict=False))


def save_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, directory) -> None:
    """Every rank writes its shards of the weights and of the optimizer state (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(directory))


def load_sharded_model(model: nn.Module, directory) -> None:
    """A sharded checkpoint's weights into the sharded model, each rank reading its own shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(directory))
    set_model_state_dict(model, state["model"])


def load_sharded_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, directory) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    state = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    # partial: a parameter that never had a gradient has no state in the checkpoint (see load_optimizer_state)
    dcp.load(state, checkpoint_id=str(directory), planner=DefaultLoadPlanner(allow_partial_load=True))
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)
