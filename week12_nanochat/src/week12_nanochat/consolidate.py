"""The consolidation job: taught facts trained into LoRA adapters, without forgetting.

A job (``Job.start``, what ``Memory.consolidate`` runs, in a thread or inline)
is a list of phases fixed when it starts and written to ``job/job.json`` with
a snapshot of the facts it trains, so a job killed at any instant resumes the
same plan (``consolidate()`` again, in this process or a new one):

1. ``replay`` (once per memory): SELF-GENERATED REPLAY. The model, before any
   update, answers a fixed set of prompts greedily: week04's tool tasks
   (arithmetic with the calculator, world facts with search, the tools
   really run) and week10 RAG reading prompts over teachdata "train" facts
   (never the user's). Each prompt + the model's own reply (mask 1 on the
   tokens it sampled, 0 on the prompt and on forced tool outputs) goes into a
   week07 ``ReplayBuffer`` (balanced over the kinds), saved on disk. The reading
   prompts (and the facts' own RAG readings) only with ``train_reading``: the
   adapters answer closed-book by default, and long rows cost most of a step.
2. ``shared``: the shared adapter ``memory`` (week06 LoRA over the frozen
   base) trained on the facts taught since its last job, with replayed rows
   mixed into every batch (``replay_ratio``) and week07's online EWC penalty
   anchored at its previous weights (the Fisher of the previous jobs, decayed
   by ``gamma``; ``EWC.penalty`` through week07's ``ewc_loss``). Afterwards
   the Fisher is re-estimated on replay + these facts and stored. After a
   ``forget`` of a fact it was trained on, it is rebuilt from B = 0 on every
   remaining fact (EWC restarts): no trace of the fact stays.
3. ``topic:<key>``: every topic adapter ``memory/<key>`` (a week10 nested
   child of ``memory``, trained over its frozen chain) retrained from B = 0
   on all of its topic's facts + replay (``max(topic_steps, steps_per_fact * facts)``
   steps: a topic that grows gets the epochs it needs). All topics are retrained when the
   shared adapter changed (a child assumes its parent), else only the
   pending ones; a topic with no fact left loses its adapter.
4. ``router``: week10's ``PrototypeRouting`` fitted on each topic adapter's
   training prompts, stored as a blob (what ``route="prototype"`` and Hydra's
   ``adapter="auto"`` use).

Each training phase is one week03 ``Trainer`` (AdamW, constant lr, clipping)
with checkpoints in ``job/<phase>/`` every ``ckpt_every`` steps; a resumed
phase continues bit-exactly, so a killed job ends equal to an uninterrupted
one. An adapter is published (``AdapterLibrary.save``: atomic, the bank's copy
swapped) when its phase ends.

Training pairs from a free-text fact and the replay recording: ``memorydata.py``.

Left out: distillation of the old adapter's outputs (replay is the base's own
replies, EWC the weights), merging adapters into the base, and scheduling
(the job runs when asked).
"""

from __future__ import annotations

import copy
import random
import re
import shutil
import threading
from dataclasses import asdict

import torch

from shared import load_checkpoint, save_checkpoint, write_json_atomic
from week03_training import TrainConfig as TrainConfig3
from week03_training import Trainer
from week06_lora import inject_lora, mark_trainable, set_active_adapters
from week07_continual import EWC, ReplayBuffer, Task, collate
from week07_continual import TrainConfig as TaskConfig
from week07_continual.learner import TaskBatches, ewc_loss
from week10_hydra.library import load_chain
from week12_nanochat.memorydata import (
    examples_of,
    fact_conversations,
    fact_prompts,
    record_replay,
    replay_prompts,
)

SHARED = "memory"
# ---------------------------------------------------------------- the job


def plain_copy(model):
    """A trainable copy of the base with no forward hooks (the bank's stay on the original)."""
    twin = copy.deepcopy(model)
    for m in twin.modules():
        m._forward_hooks.clear()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class Job:
    """One memory's consolidation job: its plan on disk, its thread, its status."""

    def __init__(self, memory):
        self.memory, self.cfg = memory, memory.config
        self.dir = memory.folder / "job"
        self._thread: threading.Thread | None = None
        self._status = {"state": "idle", "step": 0, "steps": 0, "topic": None, "error": None}
        saved = self._read()
        if saved is not None:
            state = saved["state"]
            self._status.update(state="idle" if state == "running" else state,
                                steps=saved["steps"], error=saved.get("error"),
                                step=saved["steps"] if state == "done" else 0)
            self._status["resumable"] = state in ("running", "failed")

    # -- plan on disk
    def _read(self) -> dict | None:
        import json

        path = self.dir / "job.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _write(self, plan: dict) -> None:
        write_json_atomic(self.dir / "job.json", plan)

    def _new_plan(self) -> dict:
        mem = self.memory
        facts = [asdict(f) for f in mem.facts()]
        lib = mem.library
        fresh = SHARED not in lib or mem.shared_stale
        new = facts if fresh else [f for f in facts if f["id"] in mem.taught]
        phases = [{"kind": "replay", "steps": 0}]
        if facts and (fresh or new):
            phases.append({"kind": "shared", "facts": new, "fresh": fresh,
                           "steps": self.cfg.shared_steps})
        keys = sorted({mem_key(f) for f in facts} | set(mem.pending))
        if not (fresh or new):
            keys = [k for k in keys if k in mem.pending]
        for key in keys:
            mine = [f for f in facts if mem_key(f) == key]
            steps = max(self.cfg.topic_steps, self.cfg.steps_per_fact * len(mine))
            phases.append({"kind": "topic", "key": key, "facts": mine,
                           "steps": steps if mine else 0})
        if not facts:
            phases.append({"kind": "clear", "steps": 0})
        phases.append({"kind": "router", "facts": facts, "steps": 0})
        return {"state": "running", "phases": phases, "done": 0, "error": None,
                "steps": sum(p["steps"] for p in phases),
                "trained": [f["id"] for f in new], "fresh": fresh}

    # -- running
    def status(self) -> dict:
        return dict(self._status)

    def start(self, background: bool = True):
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._status.update(state="running", error=None)
        if background:
            self._thread = threading.Thread(target=self._run, name="memory-consolidate",
                                            daemon=True)
            self._thread.start()
            return self._thread
        self._run()
        return self.status()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        plan = self._read()
        if plan is None or plan["state"] not in ("running", "failed"):
            if self.dir.exists():
                shutil.rmtree(self.dir)
            plan = self._new_plan()
        plan.update(state="running", error=None)
        self._write(plan)
        done_steps = sum(p["steps"] for p in plan["phases"][:plan["done"]])
        self._status.update(state="running", step=done_steps, steps=plan["steps"], error=None)
        try:
            for i in range(plan["done"], len(plan["phases"])):
                phase = plan["phases"][i]
                self._status["topic"] = phase.get("key", phase["kind"])
                getattr(self, f"_{phase['kind']}")(phase, i, done_steps)
                done_steps += phase["steps"]
                plan["done"] = i + 1
                self._write(plan)
            self._finish(plan)
            plan["state"] = "done"
            self._write(plan)
            self._status.update(state="done", step=plan["steps"], topic=None, resumable=False)
        except BaseException as e:  # the plan stays: consolidate() again resumes it
            plan.update(state="failed", error=f"{type(e).__name__}: {e}")
            self._write(plan)
            self._status.update(state="failed", error=plan["error"], resumable=True)
            if not isinstance(e, Exception):
                raise

    def _finish(self, plan: dict) -> None:
        mem = self.memory
        with mem.lock:
            now = {f.id: f for f in mem.facts()}
            for phase in plan["phases"]:
                if phase["kind"] == "topic":
                    ids = {f["id"] for f in phase["facts"]}
                    if ids == {i for i, f in now.items() if f.key == phase["key"]}:
                        mem.pending = [k for k in mem.pending if k != phase["key"]]
            mem.taught = [i for i in mem.taught if i not in set(plan["trained"])]
            if plan["fresh"]:
                mem.shared_stale = False
            mem.save()

    # -- phases
    def _replay(self, phase, i, step0) -> None:
        from week12_nanochat.engine import default_tools

        buf_dir = self.memory.folder / "replay"
        if (buf_dir / "buffer.json").exists():
            self.buffer = ReplayBuffer.load(buf_dir)
            return
        model = plain_copy(self.memory.model).eval()
        recorded = record_replay(model, self.memory.tokenizer,
                                 replay_prompts(self.cfg.replay_prompts, self.cfg.seed,
                                                self.cfg.train_reading),
                                 default_tools(repl=False), self.cfg.replay_tokens)
        buf = ReplayBuffer(self.cfg.replay_capacity, "balanced", buf_dir, seed=self.cfg.seed)
        for kind, exs in recorded.items():
            buf.add_many(exs, kind)
        buf.save()
        self.buffer = buf

    def _targets(self) -> list[str]:
        return [f"^{re.escape(t)}$" for t in self.memory.library.bank.layers]

    def _train(self, model, examples: list[dict], phase: dict, i: int, step0: int,
               ewc: EWC | None = None) -> None:
        """One week03 Trainer over ``examples`` + replay, resumed from ``job/<i>``."""
        cfg, block = self.cfg, self.memory.model.config.block_size
        if getattr(self, "buffer", None) is None:  # a resumed job: the replay phase is done
            self.buffer = ReplayBuffer.load(self.memory.folder / "replay")
        task = Task(f"phase{i}", examples, examples[:1])
        batches = TaskBatches(task, TaskConfig(batch_size=cfg.batch_size, max_len=block),
                              random.Random(cfg.seed + i), self.buffer, cfg.replay_ratio)
        tc = TrainConfig3(steps=phase["steps"], batch_size=cfg.batch_size, block_size=block,
                          optimizer="adamw", lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.999),
                          schedule="constant", warmup_steps=0, grad_clip=1.0, eval_every=0,
                          log_every=10, ckpt_every=cfg.ckpt_every, save_final=True,
                          write_metrics=False, progress=cfg.progress, keep_last=1,
                          device=str(next(model.parameters()).device), seed=cfg.seed + i)

        def progress(trainer, info):
            self._status["step"] = step0 + trainer.step

        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        trainer = Trainer(model, batches, tc, loss_fn=ewc_loss(ewc), params=params,
                          hooks=[progress], run_dir=self.dir / f"phase{i}",
                          desc=f"memory: {phase.get('key', phase['kind'])}")
        if trainer.latest() is not None:
            trainer.resume()
        trainer.fit()
        model.eval()

    def _shared(self, phase, i, step0) -> None:
        mem, cfg = self.memory, self.cfg
        model = plain_copy(mem.model)
        torch.manual_seed(cfg.seed + i)
        ewc = EWC(cfg.ewc_lambda, online=True, gamma=0.9, max_examples=cfg.fisher_examples)
        if phase["fresh"]:
            inject_lora(model, targets=self._targets(), r=cfg.lora_r, alpha=cfg.lora_alpha,
                        adapter=SHARED, freeze_base=False, activate=True)
        else:
            load_chain(mem.library, model, SHARED, activate=True)
            prior = self.dir / f"phase{i}" / "ewc-prior.safetensors"
            if not prior.exists() and "ewc" in mem.library.store.manifest["blobs"]:
                save_checkpoint(prior, mem.library.store.load_blob("ewc")[0])
            if prior.exists():
                state, _ = load_checkpoint(prior)
                ewc.terms = [(state["fisher"], state["anchor"])]
        mark_trainable(model, SHARED)
        facts = [_Fact(f) for f in phase["facts"]]
        block = mem.model.config.block_size
        exs = examples_of(fact_conversations(facts, cfg.seed, cfg.train_reading),
                          mem.tokenizer, block)
        self._train(model, exs, phase, i, step0, ewc)
        mix = exs + self.buffer.examples()  # the Fisher of facts and replay
        gen = torch.Generator().manual_seed(cfg.seed + i)
        order = random.Random(cfg.seed + i).sample(mix, min(len(mix), cfg.fisher_examples))
        batches = (collate(order[s:s + 8], block) for s in range(0, len(order), 8))
        fisher = ewc.consolidate(model, batches, gen)
        with mem.publishing():  # plan() sees the old adapter or the new one, never mid-reply
            mem.library.save(SHARED, model, adapter=SHARED, meta={"kind": "memory-shared"})
            mem.library.store.save_blob("ewc", {"fisher": fisher, "anchor": ewc.terms[0][1]})

    def _topic(self, phase, i, step0) -> None:
        mem, cfg = self.memory, self.cfg
        name = f"{SHARED}/{phase['key']}"
        if not phase["facts"]:
            with mem.publishing():
                if name in mem.library:
                    mem.library.delete(name)
            return
        model = plain_copy(mem.model)
        chain = load_chain(mem.library, model, SHARED, activate=False)
        torch.manual_seed(cfg.seed + i)
        inject_lora(model, targets=self._targets(), r=cfg.lora_r, alpha=cfg.lora_alpha,
                    adapter=name, freeze_base=False, activate=False)
        set_active_adapters(model, [*chain, name])
        mark_trainable(model, name)
        facts = [_Fact(f) for f in phase["facts"]]
        exs = examples_of(fact_conversations(facts, cfg.seed, cfg.train_reading), mem.tokenizer,
                          mem.model.config.block_size)
        self._train(model, exs, phase, i, step0)
        with mem.publishing():
            mem.library.save(name, model, adapter=name, parent=SHARED,
                             meta={"kind": "memory-topic", "facts": [f.id for f in facts]})

    def _clear(self, phase, i, step0) -> None:
        with self.memory.publishing():
            if SHARED in self.memory.library:
                self.memory.library.delete(SHARED, recursive=True)

    def _router(self, phase, i, step0) -> None:
        from week10_hydra.routing import PrototypeRouting, RoutingConfig

        mem = self.memory
        prompts = {}
        for f in phase["facts"]:
            name = f"{SHARED}/{mem_key(f)}"
            if name in mem.library:
                prompts.setdefault(name, []).extend(fact_prompts(_Fact(f)))
        if not prompts:
            with mem.lock:
                mem.routing = None
            return
        routing = PrototypeRouting.fit(plain_copy(mem.model).eval(), mem.tokenizer, prompts,
                                       RoutingConfig(self.cfg.router_threshold))
        with mem.lock:
            mem.library.store.save_blob("router", routing.state())
            mem._load_router()


def mem_key(fact: dict) -> str:
    return fact["topic"] if not fact["user"] else f"{fact['user']}-{fact['topic']}"


def _Fact(d: dict):
    from week12_nanochat.memory import Fact

    return Fact(**d)


__all__ = ["Job", "plain_copy", "mem_key"]
