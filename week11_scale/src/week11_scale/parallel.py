"""How the model is spread over the ranks: DDP, FSDP2, ZeRO-1, activation checkpointing.

``ParallelConfig.strategy``:

- ``"none"``: one process, the model as it is;
- ``"ddp"``: ``torch.nn.parallel.DistributedDataParallel``. Every rank holds
  the whole model and optimizer; after the backward of a step's last
  micro-batch the gradients are all-reduced (averaged) in buckets, overlapped
  with the rest of the backward. Inner micro-batches run under ``no_sync()``;
- ``"zero1"``: DDP for the gradients, and
  ``torch.distributed.optim.ZeroRedundancyOptimizer`` around the optimizer:
  each rank keeps the optimizer state of its share of the parameters, steps
  only those, and broadcasts the updated values (ZeRO stage 1);
- ``"fsdp"``: FSDP2, ``torch.distributed.fsdp.fully_shard`` on every block
  and then on the root. Parameters, gradients and optimizer state are sharded
  (each rank owns 1/W of every tensor, dim 0, as DTensors); a block's
  parameters are all-gathered just before its forward and again before its
  backward, and its gradients reduce-scattered after. ``MixedPrecisionPolicy``
  sets the dtype of the gathered copies (``param_dtype``, bf16 for speed) and
  of the gradient reduction (``reduce_dtype``, fp32); the sharded master
  weights stay fp32.

``activation_checkpointing=True`` applies PyTorch's composable
``torch.distributed._composable.checkpoint`` to every block: a block keeps
only its input and recomputes its activations in the backward. It leaves the
parameter names unchanged (so checkpoints load either way) and goes on before
``fully_shard``, as PyTorch composes them.

The CPU uses an explicit CPU device mesh (``init_device_mesh("cpu", (W,))``)
over gloo; a GPU run the CUDA mesh over NCCL.

Left out: tensor, pipeline and context parallelism (one mesh dimension, data
only), HSDP (a 2-D replicate x shard mesh), CPU offload and FP8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from week11_scale.launch import DistEnv

__all__ = ["ParallelConfig", "STRATEGIES", "model_blocks", "checkpoint_blocks", "shard_model",
           "wrap_model"]

STRATEGIES = ("none", "ddp", "zero1", "fsdp")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class ParallelConfig:
    strategy: str = "ddp"                    # none | ddp | zero1 | fsdp
    activation_checkpointing: bool = False   # recompute each block in the backward
    param_dtype: str | None = None           # fsdp: dtype of gathered params; None: from TrainConfig.dtype
    reduce_dtype: str = "fp32"               # fsdp: dtype of the gradient reduce-scatter
    reshard_after_forward: bool = True       # fsdp: free gathered params after each forward

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        for name in ("param_dtype", "reduce_dtype"):
            v = getattr(self, name)
            if v is not None and v not in _DTYPES:
                raise ValueError(f"ParallelConfig.{name} must be one of {sorted(_DTYPES)} "
                                 f"(or None for param_dtype), got {v!r}")

    def policy(self, train_dtype: str = "fp32"):
        """The FSDP2 ``MixedPrecisionPolicy``: gathered params in ``param_dtype`` (default:
        bf16 when the run trains in bf16), gradients reduced in ``reduce_dtype``."""
        from torch.distributed.fsdp import MixedPrecisionPolicy
        param = self.param_dtype or ("bf16" if train_dtype == "bf16" else "fp32")
        return MixedPrecisionPolicy(param_dtype=_DTYPES[param],
                                    reduce_dtype=_DTYPES[self.reduce_dtype])


# ----------------------------------------------------------------------------- blocks


def model_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: ``model.blocks`` (every week's GPT/Llama) or ``model.layers``."""
    for name in ("blocks", "layers"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return blocks
    raise ValueError(f"{type(model).__name__} has no 'blocks' or 'layers' ModuleList: FSDP2 and "
                     "activation checkpointing wrap one block at a time")


def checkpoint_blocks(model: nn.Module) -> nn.Module:
    """Activation checkpointing on every block (in place; names unchanged); returns ``model``."""
    from torch.distributed._composable import checkpoint
    for block in model_blocks(model):
        checkpoint(block)
    return model


def shard_model(model: nn.Module, env: DistEnv, cfg: ParallelConfig,
                train_dtype: str = "fp32") -> nn.Module:
    """FSDP2: ``fully_shard`` each block, then the root (embeddings, final norm, head), over a
    1-D device mesh of every rank. In place; returns ``model`` (now also an ``FSDPModule``)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    policy = cfg.policy(train_dtype)
    blocks = model_blocks(model)
    for i, block in enumerate(blocks):
        # the last block is gathered again at once by the backward: keep it after the forward
        keep = not cfg.reshard_after_forward or i == len(blocks) - 1
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=not keep)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)
    return model


def wrap_model(model: nn.Module, env: DistEnv, cfg: ParallelConfig,
               train_dtype: str = "fp32") -> nn.Module:
    """The module the forward goes through under ``cfg.strategy`` (after moving ``model`` to
    ``env.device``). ddp / zero1 / fsdp need a joined process group (torchrun)."""
    model = model.to(env.device)
    if cfg.activation_checkpointing:
        checkpoint_blocks(model)
    if cfg.strategy == "none":
        return model
    if not env.distributed:
        raise ValueError(f"strategy {cfg.strategy!r} needs a process group: launch with torchrun "
                         "(python -m torch.distributed.run --nproc_per_node=N ...), or use "
                         "strategy 'none' in one process")
    if cfg.strategy == "fsdp":
        return shard_model(model, env, cfg, train_dtype)
    from torch.nn.parallel import DistributedDataParallel
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
