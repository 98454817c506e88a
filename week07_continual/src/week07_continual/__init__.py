"""week07_continual: continual learning that does not forget.

- ``AccuracyMatrix``, ``plot_heatmap``: R[i][j], ACC / BWT / FWT / forgetting (GEM, Avalanche)
- ``fisher_diagonal``, ``EWC``: true or empirical diagonal Fisher, (online) EWC penalty
- ``ReplayBuffer``: reservoir or task-balanced rehearsal buffer, saved on disk
- ``AdapterStore``: LoRA adapters on disk behind an atomically replaced manifest
- ``PrototypeRouter``, ``embed_sequences``: pick the adapter for an input, no task label needed
- ``Task``, ``Stream``, ``make_skills_stream``, ``make_domains_stream``, ``load_stream``,
  ``score_examples``: task streams and their metrics (exact match, bits per byte)
- ``StrategyConfig``, ``TrainConfig``, ``run_stream``, ``train_separately``: strategies
  (naive, ewc, online-ewc, replay, lora, shared and their ``+`` combinations) run over a stream;
  ``StreamHooks``: the seam through which strategies defined elsewhere run in ``run_stream``
- ``load_base``: the week05 baseline, or a tiny model trained here when there is none
- ``python -m week07_continual.run``: the command line (``--help``)
"""

from week07_continual.ewc import EWC, fisher_diagonal
from week07_continual.learner import (
    StrategyConfig,
    StreamHooks,
    StreamResult,
    TrainConfig,
    run_stream,
    train_separately,
    train_task,
)
from week07_continual.metrics import AccuracyMatrix, plot_heatmap
from week07_continual.replay import ReplayBuffer
from week07_continual.router import PrototypeRouter, base_only, embed_sequences
from week07_continual.store import AdapterStore
from week07_continual.tasks import (
    Stream,
    Task,
    collate,
    lm_loss,
    load_stream,
    make_domains_stream,
    make_skills_stream,
    score_examples,
)

__all__ = [
    "AccuracyMatrix", "plot_heatmap",
    "EWC", "fisher_diagonal",
    "ReplayBuffer", "AdapterStore", "PrototypeRouter", "embed_sequences", "base_only",
    "Task", "Stream", "collate", "lm_loss", "load_stream", "make_skills_stream",
    "make_domains_stream", "score_examples",
    "StrategyConfig", "TrainConfig", "StreamResult", "StreamHooks", "run_stream", "train_separately",
    "train_task",
]
