"""The track's strategies and week07's, by name, all run by week07's ``run_stream``.

``run(base, stream, name, cfg, workdir)`` returns week07's ``StreamResult`` (accuracy
matrix, wall time, extra memory) for any of

- week07's strategies, passed through unchanged (``naive``, ``ewc``, ``replay``,
  ``lora`` (an adapter per task + the prototype router), ``shared``, ``ewc+shared``,
  ``replay+shared``, any ``+`` combination ``StrategyConfig.parse`` accepts);
- ``olora``: O-LoRA, an orthogonal adapter per task, all summed (``olora.py``);
- ``inflora``: InfLoRA, designed A, only B trains (``inflora.py``);
- ``ssr`` / ``ssr+shared``: self-generated replay with refinement, on the whole model
  or on one shared adapter (``ssr.py``);
- ``pc``: Progress & Compress (``progress_compress.py``).

A track strategy is a week07 ``StrategyConfig`` (named after it, ``naive`` or ``shared``
underneath) plus a ``StreamHooks`` object: the same runner, evaluation and memory
accounting as week07's rows. ``SETTINGS`` holds the knobs every benchmark row uses
(week07's ``BENCH_OVERRIDES`` for its own strategies).

Left out: combinations of two track strategies (e.g. O-LoRA with SSR), which the hooks
seam allows (one hooks object that calls two) but the table does not need.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from track_continual.inflora import InfLoRAConfig, InfLoRAHooks
from track_continual.olora import OLoRAConfig, OLoRAHooks
from track_continual.progress_compress import PCConfig, PCHooks
from track_continual.ssr import SSRConfig, SSRHooks
from week07_continual import StrategyConfig, StreamResult, TrainConfig, run_stream

TRACK = ("olora", "inflora", "ssr", "ssr+shared", "pc")
WEEK07 = ("naive", "ewc", "replay", "lora", "shared", "ewc+shared", "replay+shared")

# ---------------------------------------------------------------- settings


@dataclass
class Settings:
    """Every knob of every strategy (one object, so a preset can scale them together)."""

    week07: dict = field(default_factory=lambda: {"fisher_examples": 32, "replay_capacity": 120,
                                                  "replay_ratio": 0.3, "ewc_lambda": 2000.0,
                                                  "lora_r": 8, "lora_alpha": 16.0})
    olora: OLoRAConfig = field(default_factory=OLoRAConfig)
    inflora: InfLoRAConfig = field(default_factory=InfLoRAConfig)
    ssr: SSRConfig = field(default_factory=SSRConfig)
    pc: PCConfig = field(default_factory=PCConfig)


def strategy(name: str, cfg: TrainConfig, settings: Settings | None = None,
             seed: int = 0) -> tuple[StrategyConfig, object]:
    """``(StrategyConfig, hooks or None)`` for ``name``."""
    s = settings or Settings()
    w7 = s.week07
    if name == "olora":
        return StrategyConfig.parse("naive", name=name), OLoRAHooks(replace(s.olora))
    if name == "inflora":
        return StrategyConfig.parse("naive", name=name), InfLoRAHooks(replace(s.inflora))
    if name in ("ssr", "ssr+shared"):
        base = "shared" if name == "ssr+shared" else "naive"
        sc = StrategyConfig.parse(base, name=name, lora_r=w7["lora_r"], lora_alpha=w7["lora_alpha"])
        return sc, SSRHooks(replace(s.ssr), seed=seed)
    if name == "pc":
        return StrategyConfig.parse("naive", name=name), PCHooks(cfg, replace(s.pc))
    return StrategyConfig.parse(name, **w7), None


def run(base_model, stream, name: str, cfg: TrainConfig, workdir, settings: Settings | None = None,
        progress: bool = True) -> StreamResult:
    """Run strategy ``name`` over ``stream`` from ``base_model`` with week07's ``run_stream``."""
    sc, hooks = strategy(name, cfg, settings, cfg.seed)
    return run_stream(base_model, stream, sc, cfg, workdir, progress=progress, hooks=hooks)
