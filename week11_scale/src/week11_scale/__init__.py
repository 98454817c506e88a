"""week11_scale: the same training code on one CPU process or many GPUs, and its plan.

- launching: ``init_distributed`` / ``DistEnv`` (torchrun's environment, gloo on the CPU, NCCL
  on CUDA), ``all_mean``, ``any_rank``, ``cleanup``
- ``ParallelConfig`` + ``wrap_model``: DDP, ZeRO-1, FSDP2 (``fully_shard`` per block and the
  root, ``MixedPrecisionPolicy``), activation checkpointing per block
- ``DistributedTrainer``: week03's Trainer under torchrun (no sync on inner micro-batches,
  losses averaged over ranks, ZeRO-1's optimizer, ``ShardedMuon`` for FSDP2, Distributed
  Checkpoint folders, resume at another world size); ``python -m week11_scale.train``
- Distributed Checkpoint: ``save_sharded`` / ``load_sharded`` / ``latest_sharded``,
  ``sharded_to_single`` / ``single_to_sharded`` (week03's one-file checkpoint)
- the planner: ``plan`` / ``memory_plan`` / ``PlanConfig`` (memory per GPU, FLOPs, time,
  cost), ``measure_peak_memory``, ``GPUS``; ``python -m week11_scale.plan``
- scaling laws: ``sweep`` / ``ScalingConfig``, ``fit_power_law`` / ``LossFit``, ``load_fit``,
  ``plot_fit``; ``python -m week11_scale.scaling``
"""

# Imported on first use, so ``import week11_scale`` stays light.
_EXPORTS = {
    "launch": ["DistEnv", "init_distributed", "current_env", "cleanup", "barrier", "all_mean",
               "any_rank", "launched"],
    "parallel": ["ParallelConfig", "STRATEGIES", "wrap_model", "shard_model",
                 "checkpoint_blocks"],
    "trainer": ["DistributedTrainer", "ShardedMuon"],
    "dcp": ["save_sharded", "load_sharded", "latest_sharded", "sharded_to_single",
            "single_to_sharded"],
    "plan": ["PlanConfig", "MemoryPlan", "RunPlan", "plan", "memory_plan", "render"],
    "memory": ["measure_peak_memory", "MeasuredMemory", "param_counts"],
    "gpus": ["GPU", "GPUS", "gpu"],
    "scaling": ["ScalingConfig", "SCALING_PRESETS", "Point", "sweep", "plot_fit", "load_points"],
    "lossfit": ["LossFit", "fit_power_law", "load_fit", "count_for_fit"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"week11_scale.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'week11_scale' has no attribute {name!r}")


def __dir__():
    return __all__
