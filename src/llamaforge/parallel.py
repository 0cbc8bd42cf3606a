"""Scale, applied to a model from outside: process group, device mesh, FSDP2, compile, checkpointing.

One process by default. Under ``torchrun --nproc_per_node N`` the same loop runs on N ranks: NCCL on
GPUs, gloo on CPUs, and every TransformerBlock plus the root is sharded with FSDP2's
``fully_shard`` over a 1-D mesh (torchtitan's layout). Order per block: activation checkpointing,
then torch.compile, then sharding. Models are built on the meta device, parallelized, then
materialised (``to_empty``) and initialised, so no rank ever holds the full model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Dist", "init_distributed", "parallelize", "all_reduce_mean", "all_reduce_max", "barrier",
           "all_gather_object", "gather_rows", "broadcast_object", "full_state_dict", "clean_key"]


@dataclass
class Dist:
    """Where this process runs: rank, world size and device (a 1-D mesh when world_size > 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    mesh: Optional[object] = None  # torch.distributed.device_mesh.DeviceMesh

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: Optional[str] = None) -> Dist:
    """Join the process group that torchrun describes in the environment (if any).

    Args:
        device: "cpu", "cuda" or None (cuda when available). Under torchrun each rank takes
            ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
        dev = torch.device("cuda", local_rank if world_size > 1 else torch.device(kind).index or 0)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(kind)
    if world_size == 1:
        return Dist(device=dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(dev.type, (world_size,), mesh_dim_names=("dp",))
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, mesh=mesh)


def parallelize(model: nn.Module, d: Dist, *, activation_checkpointing: bool = False,
                compile: bool = False, param_dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Apply activation checkpointing, torch.compile and FSDP2 to a Transformer, block by block.

    Args:
        model: a Transformer, usually still on the meta device.
        d: from ``init_distributed``; sharding is applied only when ``d.world_size > 1``.
        activation_checkpointing: recompute each block's activations in backward (less memory,
            ~1/3 more compute).
        compile: torch.compile each block (and the root's loss path stays eager: its fused
            cross-entropy already keeps one logits buffer).
        param_dtype: FSDP2 mixed precision: gather parameters in this dtype (e.g. bf16 on GPUs),
            reduce gradients in fp32. None keeps fp32 parameters (bf16 then comes from autocast).
    Returns:
        the same model, modified in place.
    """
    blocks = model.layers
    for i, block in enumerate(blocks):
        if activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if compile:
            block.compile()
        blocks[i] = block
    if d.world_size > 1:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
        kwargs = {"mesh": d.mesh, **({"mp_policy": mp} if mp else {})}
        for i, block in enumerate(blocks):
            # the last block's parameters are needed again right away by backward: keep them gathered
            fully_shard(block, reshard_after_forward=i < len(blocks) - 1, **kwargs)
        fully_shard(model, **kwargs)
    return model


def all_reduce_mean(value: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= d.world_size
    return value


def all_reduce_max(value: float, d: Dist) -> float:
    """The maximum of a Python number over ranks (e.g. a stop flag every rank must agree on)."""
    if d.world_size == 1:
        return value
    t = torch.tensor([float(value)], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(d: Dist) -> None:
    if d.world_size > 1:
        dist.barrier()


def broadcast_object(obj, d: Dist):
    """Rank 0's ``obj`` on every rank (pickled)."""
    if d.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj, d: Dist) -> list:
    """Every rank's ``obj``, in rank order, on every rank (pickled)."""
    if d.world_size == 1:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_rows(t: torch.Tensor, d: Dist, fill=0) -> torch.Tensor:
    """Rank r's rows are global rows r, r + W, r + 2W, ...: every rank's [n, ...] tensor gathered
    into the global [n * W, ...] (dim 1 padded with ``fill`` to the widest rank's first)."""
    if d.world_size == 1:
        return t
    if t.dim() > 1:
        width = int(all_reduce_max(t.shape[1], d))
        if t.shape[1] < width:
            pad = torch.full((t.shape[0], width - t.shape[1], *t.shape[2:]), fill, dtype=t.dtype, device=t.device)
            t = torch.cat([t, pad], dim=1)
    flag = t.dtype == torch.bool  # gloo gathers no bools
    t = t.to(torch.uint8) if flag else t
    parts = [torch.empty_like(t) for _ in range(d.world_size)]
    dist.all_gather(parts, t.contiguous())
    out = torch.stack(parts, dim=1).flatten(0, 1)  # [n, W, ...] -> row j * W + r
    return out.bool() if flag else out


def full_state_dict(model: nn.Module, d: Dist) -> dict:
    """The unsharded model state dict on CPU, on rank 0 (an empty dict on other ranks)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if d.world_size == 1:
        return {k: v.detach().cpu() for k, v in _unwrapped_state_dict(model).items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sd = get_model_state_dict(model, options=options)
    return {clean_key(k): v for k, v in sd.items()} if d.is_main else {}


def _unwrapped_state_dict(model: nn.Module) -> dict:
    return {clean_key(k): v for k, v in model.state_dict().items()}


def clean_key(key: str) -> str:
    """Parameter names without the wrappers' prefixes (checkpoint_wrapper, torch.compile)."""
    for prefix in ("_checkpoint_wrapped_module.", "_orig_mod."):
        key = key.replace(prefix, "")
    return key
