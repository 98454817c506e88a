"""track_continual: continual learning beyond week07, run by week07's own stream runner.

- ``orthogonality_loss``, ``orthogonality_grad``, ``OLoRAHooks``, ``OLoRAConfig``: O-LoRA
  (an adapter per task, kept orthogonal to the earlier adapters' A matrices)
- ``collect_inputs``, ``inflora_subspace``, ``update_memory``, ``InfLoRAHooks``,
  ``InfLoRAConfig``: InfLoRA (A designed outside the old tasks' input subspace, B trains)
- ``Template``, ``task_template``, ``synthesize``, ``refine``, ``refine_buffer``,
  ``prompt_targets``, ``SSRHooks``, ``SSRConfig``: self-generated replay with SSR's refinement,
  into week07's ``ReplayBuffer``
- ``distill_loss``, ``kl_to``, ``PCHooks``, ``PCConfig``: Progress & Compress (active column,
  distillation into the knowledge base, online EWC)
- ``strategy``, ``run``, ``Settings``, ``TRACK``, ``WEEK07``: every strategy by name, through
  week07's ``run_stream`` (its ``StreamHooks`` seam)
- ``arithmetic_task``: windows of worked arithmetic, the frontier's far target
- ``make_taught_stream``: week12's taught facts as a stream of tasks; ``make_conflict_stream``,
  ``toy_base``: the lesson's toy stream and model
- ``FrontierConfig``, ``run_frontier``, ``plot_frontier``, ``forgetting_at_gain``: the
  learning-forgetting frontier of LoRA ranks against full fine-tuning
- ``python -m track_continual.experiments --preset tiny|full``: the tables and figures
"""

from track_continual.common import (
    adapter_bytes,
    add_task_adapter,
    arithmetic_task,
    lora_targets,
    make_conflict_stream,
    make_taught_stream,
    toy_base,
)
from track_continual.frontier import FrontierConfig, forgetting_at_gain, plot_frontier, run_frontier
from track_continual.inflora import (
    InfLoRAConfig,
    InfLoRAHooks,
    collect_inputs,
    inflora_subspace,
    update_memory,
)
from track_continual.olora import OLoRAConfig, OLoRAHooks, orthogonality_grad, orthogonality_loss
from track_continual.progress_compress import PCConfig, PCHooks, distill_loss, kl_to
from track_continual.ssr import (
    SSRConfig,
    SSRHooks,
    Template,
    prompt_targets,
    refine,
    refine_buffer,
    synthesize,
    task_template,
)
from track_continual.strategies import TRACK, WEEK07, Settings, run, strategy

__all__ = [
    "orthogonality_loss", "orthogonality_grad", "OLoRAHooks", "OLoRAConfig",
    "collect_inputs", "inflora_subspace", "update_memory", "InfLoRAHooks", "InfLoRAConfig",
    "Template", "task_template", "synthesize", "refine", "refine_buffer", "prompt_targets",
    "SSRHooks", "SSRConfig",
    "distill_loss", "kl_to", "PCHooks", "PCConfig",
    "strategy", "run", "Settings", "TRACK", "WEEK07",
    "make_taught_stream", "make_conflict_stream", "toy_base", "lora_targets", "add_task_adapter", "adapter_bytes",
    "arithmetic_task",
    "FrontierConfig", "run_frontier", "plot_frontier", "forgetting_at_gain",
]
