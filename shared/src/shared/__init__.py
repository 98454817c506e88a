"""shared: the layer every week of the curriculum builds on.

- protocols: ``LanguageModel``, ``Tokenizer``, ``Tool``
- metrics:   ``MetricsLogger``, ``new_run_dir``, ``read_metrics``, ``best_time``, ``save_benchmark``
- protocols: ``Cache`` (what ``model.new_cache`` returns), ``IGNORE_INDEX`` (-1, the one mask)
- batching:  ``pad_batch``, ``best_fit``, ``pack_batch``, ``pack_documents`` (+ document labels
  for a block-diagonal mask; targets masked with IGNORE_INDEX),
  ``SampledBatches`` (resumable random batches for week03's Trainer)
- checkpoint: ``save_checkpoint`` / ``load_checkpoint`` (atomic safetensors + JSON);
  ``save_model`` / ``load_model(path)`` rebuild any week's model from its import path
- device:    ``pick_device``, ``pick_dtype``, ``seed_everything``, ``add_threads_argument``
- data:      ``load_corpus("pydocs")`` and local text files
- smoke:     ``smoke(full, small)`` for CI-sized notebooks
- dashboard, reflection: behind ``make dashboard`` and ``make reflect``
"""

from shared.batching import SampledBatches, best_fit, pack_batch, pack_documents, pad_batch
from shared.checkpoint import (
    CheckpointError,
    build_model,
    check_state_dict,
    import_path,
    load_checkpoint,
    load_model,
    load_weights,
    model_spec,
    read_meta,
    resolve,
    save_checkpoint,
    save_model,
    write_json_atomic,
)
from shared.data import Corpus, Document, load_corpus
from shared.device import (
    add_threads_argument,
    pick_device,
    pick_dtype,
    seed_everything,
    set_threads,
)
from shared.metrics import (
    MetricsLogger,
    best_time,
    load_benchmarks,
    new_run_dir,
    read_metrics,
    runs_root,
    save_benchmark,
    truncate_metrics,
)
from shared.protocols import IGNORE_INDEX, Cache, LanguageModel, Tokenizer, Tool
from shared.smoke import is_smoke, smoke

__all__ = [
    "CheckpointError", "check_state_dict", "load_checkpoint", "read_meta", "save_checkpoint",
    "write_json_atomic",
    "save_model", "load_model", "load_weights", "model_spec", "build_model", "import_path", "resolve",
    "Corpus", "Document", "load_corpus",
    "pick_device", "pick_dtype", "seed_everything", "add_threads_argument", "set_threads",
    "MetricsLogger", "best_time", "load_benchmarks", "new_run_dir", "read_metrics", "runs_root", "save_benchmark", "truncate_metrics",
    "LanguageModel", "Tokenizer", "Tool", "Cache", "IGNORE_INDEX",
    "is_smoke", "smoke",
    "pad_batch", "best_fit", "pack_batch", "pack_documents", "SampledBatches",
]
