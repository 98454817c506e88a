"""track_moe: Mixture-of-Experts beyond one process, built on week08's MoE.

- expert parallelism (``expert_parallel.py``): ``ExpertParallelMoE`` (week08's ``MoE`` with
  this rank's slice of the routed experts; ``from_moe``), ``shard_experts(model, rank, world)``
  (every MoE of a model, in place), ``dispatch_plan`` / ``DispatchPlan`` (the token
  permutation and counts for the all-to-all), ``all_to_all`` (differentiable uneven exchange),
  ``expert_slice``
- ``spawn(fn, world_size=2)`` (``launch.py``): ``fn(rank, world)`` on gloo CPU ranks
- ``parity.check``: the sharded layer and model against week08's single-process MoE
  (outputs, input / router / shared / expert gradients, loss, load); ``python -m track_moe.parity``
- sparse upcycling (``upcycle.py``): ``UpcycleConfig``, ``upcycle(dense_llama)``,
  ``upcycle_checkpoint(path)``, ``copy_mlp_into_experts``, ``moe_config_from_dense``
- specialisation (``specialise.py``): ``routing_counts``, ``topic_routing``,
  ``routing_entropy``, ``topic_specialisation``, ``LoadRecorder`` (a Trainer hook), ``plot_topic_heatmap``, ``plot_collapse``
- ``python -m track_moe.experiments --preset tiny|full``: upcycled vs scratch vs dense at equal
  extra tokens, the topic x expert tables, routing collapse and its two cures
"""

from track_moe.expert_parallel import (
    DispatchPlan,
    ExpertParallelMoE,
    all_to_all,
    dispatch_plan,
    expert_slice,
    shard_experts,
)
from track_moe.launch import spawn
from track_moe.specialise import (
    LoadRecorder,
    plot_collapse,
    plot_topic_heatmap,
    routing_counts,
    routing_entropy,
    topic_routing,
    topic_specialisation,
)
from track_moe.upcycle import (
    UpcycleConfig,
    copy_mlp_into_experts,
    moe_config_from_dense,
    upcycle,
    upcycle_checkpoint,
)

__all__ = [
    "ExpertParallelMoE", "shard_experts", "dispatch_plan", "DispatchPlan", "all_to_all",
    "expert_slice", "spawn", "UpcycleConfig", "upcycle", "upcycle_checkpoint",
    "copy_mlp_into_experts", "moe_config_from_dense", "routing_counts", "topic_routing",
    "routing_entropy", "topic_specialisation", "LoadRecorder", "plot_topic_heatmap", "plot_collapse",
]
