"""The mission test: teach 50 facts over 5 sessions and keep them, without forgetting the rest.

``python week12_nanochat/benchmarks/teach.py`` (``make week12-bench``) teaches
``teachdata.make_facts(50, split="test")`` in 5 sessions of 10, each session in a
NEW PROCESS (a restart: the model, every memory and the naive adapter come back
from their folders alone; ``--worker`` is that process's entry point). After
each session it measures three systems IN THE SAME RUN, on the same model:

- ``memory``: week12's ``Memory``: retrieval at once, then a consolidation job
  (shared adapter with self-generated replay and EWC, topic adapters), served
  through ``ChatEngine`` with ``memory.plan`` per request;
- ``retrieval``: the same ``Memory`` never consolidated (retrieval only);
- ``naive``: the facts trained into one LoRA adapter session after session
  (the same training pairs, no replay, no EWC, no retrieval), always on.

Measured after each session (and before any, session 0): recall of every fact
taught so far asked in PARAPHRASE (``fact.paraphrases``, held out of every
training set; ``teachdata.correct``), recall of the session-1 facts, the tool
tasks (week05's arithmetic / string / facts held-out questions, answered with
the tools through the same engine: the routing decides per question; for
``memory`` also the fraction of them its plan sent to retrieval) and pydocs
bits per byte (week09's ``pydocs_bpb``) as served: plain text never reaches a
memory adapter, so for ``memory`` and ``retrieval`` it is the base's; for
``memory`` also with the shared adapter forced on for all text (the
conservative case, ``adapter_bpb``). The mission: recall
>= 90%, and the base abilities (tool accuracy, bpb, the session-1 facts in the
last session) within 1 point of where they started.

Model: ``--model PATH`` or the newest speedrun (``engine.find_model``); with no
speedrun yet, the dev reader (week09 ``run_sft`` from week07's tiny base on
``teachdata.reading_conversations`` + week04 tool data, trained once into
``<runs>/week12-dev-reader``). ``--tiny``: a random tiny model and the hash
encoder, seconds (the test's size; figures meaningless). Writes
``<runs>/bench/week12-teach.json`` and ``.png``.

Left out: the HTTP server itself between the sessions (the processes use the
engine the server wraps) and facts that contradict each other.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from shared import runs_root, write_json_atomic
from week03_training import TrainConfig as TrainConfig3
from week03_training import Trainer
from week05_eval import tool_task
from week05_eval.generative import score
from week06_lora import inject_lora, load_adapter, mark_trainable, save_adapter
from week07_continual import Task
from week07_continual import TrainConfig as TaskConfig
from week07_continual.learner import TaskBatches
from week12_nanochat.consolidate import plain_copy
from week12_nanochat.engine import (
    ChatEngine,
    NoModel,
    Sampling,
    default_tools,
    find_model,
    load_chat,
)
from week12_nanochat.memory import Fact, Memory, MemoryConfig, bank_targets
from week12_nanochat.memorydata import examples_of, fact_conversations
from week12_nanochat.teachdata import correct, make_facts

SYSTEMS = ("memory", "retrieval", "naive")
DEV_READER = "week12-dev-reader"


@dataclass
class BenchConfig:
    facts: int = 50
    sessions: int = 5
    tool_questions: int = 10  # per tool kind
    naive_steps: int = 40  # per session, on the session's facts
    max_tokens: int = 40  # a recall reply
    tool_max_tokens: int = 128  # a tool reply counts its tool's output: call, result, answer
    tiny: bool = False
    seed: int = 0


# ---------------------------------------------------------------- the model


def dev_reader(progress: bool = True) -> Path:
    """The development reader (see the module docstring), trained once and cached."""
    import json

    from week09_alignment.sft import SFTConfig, run_sft
    from week12_nanochat.teachdata import reading_conversations

    out = runs_root() / DEV_READER
    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "reading.jsonl"
    convs = reading_conversations(make_facts(250, seed=0, split="train"), seed=0)
    write_json_atomic(out / "reading.json", {"conversations": len(convs)})
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    cfg = SFTConfig(data=f"default,{data}", mixture={"tools_per_kind": 900, "multi_turn": 300},
                    steps=500, pretrain_mix=0.25, eval_every=250, eval_conversations=64,
                    tool_eval=0)
    run_sft(cfg, init=str(runs_root() / "week07-tiny-base" / "model.safetensors"), out=out,
            progress=progress)
    return out


def tiny_model():
    """A random tiny Llama and a 400-token chat tokenizer (the tests' models)."""
    from week04_modern_arch_tools import Llama, LlamaConfig, fit_tokenizer, make_tool_dataset

    convs = [c for kind in ("arithmetic", "string", "facts") for c in make_tool_dataset(kind, 80)]
    tok = fit_tokenizer(convs, vocab_size=400)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                      block_size=512)  # a 400-token vocabulary spends ~270 tokens on 3 sources
    return Llama(cfg).eval(), tok, "random tiny Llama (2 x 32), --tiny"


def pick_model(path: str | None, progress: bool) -> tuple[str, str]:
    """``(model folder, what it is)``: ``path``, the newest speedrun, or the dev reader."""
    if path:
        return str(load_chat(path)[2]), str(path)
    try:
        where = find_model()
        return str(where), f"speedrun {where}"
    except NoModel:
        where = dev_reader(progress)
        return str(where), f"dev reader {where} (no speedrun yet)"


# ---------------------------------------------------------------- measuring


def _facts_of(taught) -> list[Fact]:
    return [Fact(f"f{i}", t.text, t.kind, "", "", list(t.questions)) for i, t in enumerate(taught)]


def recall(engine: ChatEngine, facts, max_tokens: int, misses: list | None = None) -> float:
    """Fraction of ``facts`` answered right when asked in paraphrase (no tools); each miss
    (question, reply, which memory answered) goes into ``misses``."""
    if not facts:
        return 0.0
    qs = [f.paraphrases[0] for f in facts]
    replies = engine.stream(qs, Sampling(max_tokens=max_tokens), tools=False).run()
    ok = [correct(r.text, f) for r, f in zip(replies, facts)]
    if misses is not None:
        misses += [{"question": q, "reply": r.text, "memory": r.memory, "fact": f.text}
                   for q, r, f, good in zip(qs, replies, facts, ok) if not good]
    return sum(ok) / len(facts)


def tool_scores(engine: ChatEngine, n: int, max_tokens: int, misses: list | None = None
                ) -> dict:
    """week05's held-out tool questions answered through ``engine`` with its tools; the wrong
    replies go to ``misses``."""
    out = {}
    for kind in ("arithmetic", "string", "facts"):
        exs = tool_task(kind, n=n, seed=0).examples
        replies = engine.stream([e.question for e in exs], Sampling(max_tokens=max_tokens)).run()
        ok = [score(e, r.text) for e, r in zip(exs, replies)]
        out[kind] = sum(ok) / len(exs)
        if misses is not None:
            misses += [{"question": e.question, "reply": r.text, "memory": r.memory}
                       for e, r, good in zip(exs, replies, ok) if not good]
    return out


def routed(mem: Memory, n: int) -> float:
    """Fraction of the tool questions the memory's plan sends to retrieval or an adapter."""
    qs = [e.question for kind in ("arithmetic", "string", "facts")
          for e in tool_task(kind, n=n, seed=0).examples]
    plans = [mem.plan(q) for q in qs]
    return sum(p.rag or p.adapter is not None for p in plans) / len(qs)


def bpb(model, tok, tiny: bool) -> float:
    from week09_alignment.sft import pydocs_bpb

    return pydocs_bpb(model, tok, max_tokens=2000 if tiny else 5000)


def with_shared(mem: Memory):
    """A week06 copy of the model with the shared memory adapter on (the base if none)."""
    from week10_hydra.library import load_chain
    twin = plain_copy(mem.model).eval()
    if "memory" in mem.library:
        load_chain(mem.library, twin, "memory", activate=True)
    return twin


# ---------------------------------------------------------------- naive fine-tuning


class Naive:
    """One LoRA adapter trained on each session's facts in turn: no replay, no EWC."""

    def __init__(self, model, tok, cfg: MemoryConfig, steps: int):
        self.tok, self.cfg, self.steps = tok, cfg, steps
        self.model = plain_copy(model)
        torch.manual_seed(cfg.seed)
        inject_lora(self.model, targets=[f"^{re.escape(t)}$" for t in bank_targets(self.model)],
                    r=cfg.lora_r, alpha=cfg.lora_alpha, adapter="naive")
        mark_trainable(self.model, "naive")
        self.session = 0

    def learn(self, facts: list[Fact], progress: bool) -> None:
        block = self.model.config.block_size
        exs = examples_of(fact_conversations(facts, self.cfg.seed, self.cfg.train_reading),
                          self.tok, block)
        batches = TaskBatches(Task("naive", exs, exs[:1]),
                              TaskConfig(batch_size=self.cfg.batch_size, max_len=block),
                              random.Random(self.session))
        tc = TrainConfig3(steps=self.steps, batch_size=self.cfg.batch_size, block_size=block,
                          optimizer="adamw", lr=self.cfg.lr, weight_decay=0.0,
                          schedule="constant", warmup_steps=0, grad_clip=1.0, eval_every=0,
                          ckpt_every=0, save_final=False, write_metrics=False,
                          progress=progress, seed=self.session)
        self.model.train()
        from week07_continual.learner import ewc_loss

        Trainer(self.model, batches, tc, loss_fn=ewc_loss(None),
                params=[p for p in self.model.parameters() if p.requires_grad],
                desc=f"naive: session {self.session + 1}").fit()
        self.model.eval()
        self.session += 1


# ---------------------------------------------------------------- the run


def _sessions(cfg: BenchConfig) -> list[list]:
    taught = make_facts(cfg.facts, seed=cfg.seed, split="test")
    per = max(1, -(-cfg.facts // cfg.sessions))
    return [taught[i:i + per] for i in range(0, cfg.facts, per)][:cfg.sessions]


def session_worker(folder: Path, session: int, progress: bool = False) -> dict:
    """Session ``session`` in this (new) process: reopen every system from ``folder``, teach
    the session's facts (none in session 0), consolidate, measure; the rows, also written to
    ``folder/rows-<session>.json``."""
    spec = json.loads((folder / "bench.json").read_text())
    cfg, mcfg = BenchConfig(**spec["config"]), MemoryConfig(**spec["memory"])
    if cfg.tiny:
        model, tok, _ = tiny_model()
        encoder = None
    else:
        from week10_hydra.encoders import MiniLMEncoder

        model, tok, _ = load_chat(spec["model"])
        encoder = MiniLMEncoder()
    sessions, tools = _sessions(cfg), default_tools()
    naive = Naive(model, tok, mcfg, cfg.naive_steps)
    naive_file = folder / "naive.safetensors"
    if naive_file.exists():  # what the earlier sessions' processes trained
        load_adapter(naive_file, naive.model, "naive")
        mark_trainable(naive.model, "naive")
    naive.session = max(session - 1, 0)
    seen = [f for batch in sessions[:session] for f in batch]
    mems = {n: Memory(folder / n, model, tok, mcfg, encoder=encoder)  # reopened: a restart
            for n in ("memory", "retrieval")} if session else {}
    took = 0.0
    if session:
        batch = sessions[session - 1]
        for mem in mems.values():
            for f in batch:
                mem.teach(f.text, topic=f.kind, questions=f.questions)
        t0 = time.perf_counter()
        mems["memory"].consolidate(background=False)
        if mems["memory"].status()["state"] != "done":
            raise RuntimeError(f"consolidation failed: {mems['memory'].status()['error']}")
        took = time.perf_counter() - t0
        naive.learn(_facts_of(batch), progress)
        save_adapter(naive_file, naive.model, "naive")
    engines = {n: ChatEngine(model, tok, tools, memory=mems.get(n))
               for n in ("memory", "retrieval")}
    engines["naive"] = ChatEngine(naive.model, tok, tools)
    models = {"memory": model, "retrieval": model, "naive": naive.model}
    rows = {}
    for name in SYSTEMS:
        e, misses, tool_misses = engines[name], [], []
        row = {"session": session, "recall": recall(e, seen, cfg.max_tokens, misses),
               "recall_session1": recall(e, sessions[0], cfg.max_tokens) if session else 0.0,
               "tools": tool_scores(e, cfg.tool_questions, cfg.tool_max_tokens, tool_misses),
               "pydocs_bpb": bpb(models[name], tok, cfg.tiny),  # as served: see adapter_bpb
               "consolidate_s": took if name == "memory" else 0.0, "misses": misses,
               "tool_misses": tool_misses,
               "pid": os.getpid()}
        row["tool_mean"] = sum(row["tools"].values()) / len(row["tools"])
        if name == "memory" and e.memory is not None:
            mem = e.memory
            row["adapters"] = mem.library.names()
            row["adapter_bpb"] = bpb(with_shared(mem), tok, cfg.tiny)
            row["routed_tools"] = routed(mem, cfg.tool_questions)
        rows[name] = row
    for mem in mems.values():
        mem.close()
    for tool in tools.values():
        getattr(tool, "close", lambda: None)()
    write_json_atomic(folder / f"rows-{session}.json", rows)
    return rows


def run(cfg: BenchConfig, model: str | None, mcfg: MemoryConfig, folder: Path,
        progress: bool = True) -> dict:
    """Session 0 (nothing taught) and every teaching session, each in a NEW PROCESS
    (``--worker``): the memories, the naive adapter and the facts come back from ``folder``
    alone, as after a server restart."""
    write_json_atomic(folder / "bench.json", {"config": asdict(cfg), "memory": asdict(mcfg),
                                              "model": model})
    rows = {s: [] for s in SYSTEMS}
    for session in tqdm(range(cfg.sessions + 1), desc="sessions", disable=not progress):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(folder),
               "--session", str(session)] + ([] if progress else ["--no-progress"])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"session {session}'s process failed:\n{done.stderr[-3000:]}")
        got = json.loads((folder / f"rows-{session}.json").read_text())
        for name in SYSTEMS:
            rows[name].append(got[name])
    return {"rows": rows, "checks": checks(rows)}


def checks(rows: dict) -> dict:
    """The mission's pass/fail per system: recall >= 0.9 in every session, and the tool mean,
    bpb and the session-1 facts in the last session within 1 point of their start."""
    out = {}
    for name, rs in rows.items():
        first, last = rs[0], rs[-1]
        s1 = rs[1]["recall_session1"] if len(rs) > 1 else 0.0
        out[name] = {
            "recall_min": min(r["recall"] for r in rs[1:]) if len(rs) > 1 else 0.0,
            "tool_drop": first["tool_mean"] - last["tool_mean"],
            "bpb_rise": last["pydocs_bpb"] - first["pydocs_bpb"],
            "session1_drop": s1 - last["recall_session1"]}
        c = out[name]
        c["pass"] = (c["recall_min"] >= 0.9 and c["tool_drop"] <= 0.01
                     and c["bpb_rise"] <= 0.01 and c["session1_drop"] <= 0.01)
    return out


def table(result: dict) -> str:
    lines = ["| system | session | recall | session-1 facts | arithmetic | string | facts "
             "| pydocs bpb | bpb, shared adapter on | consolidate s |", "|---" * 10 + "|"]
    for name, rs in result["rows"].items():
        for r in rs:
            t = r["tools"]
            lines.append(f"| {name} | {r['session']} | {r['recall']:.2f} | "
                         f"{r['recall_session1']:.2f} | {t['arithmetic']:.2f} | "
                         f"{t['string']:.2f} | {t['facts']:.2f} | {r['pydocs_bpb']:.3f} | "
                         + (f"{r['adapter_bpb']:.3f}" if "adapter_bpb" in r else "-")
                         + f" | {r['consolidate_s']:.0f} |")
    lines.append("")
    for name, c in result["checks"].items():
        lines.append(f"{name}: min recall {c['recall_min']:.2f}, tool drop {c['tool_drop']:+.3f}, "
                     f"bpb rise {c['bpb_rise']:+.3f}, session-1 drop {c['session1_drop']:+.2f}: "
                     f"{'PASS' if c['pass'] else 'FAIL'}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    fig = Figure(figsize=(13, 3.8))
    panels = (("recall", "recall (paraphrase)"), ("recall_session1", "session-1 facts"),
              ("tool_mean", "tool tasks (mean EM)"), ("pydocs_bpb", "pydocs bpb"))
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        for name, rs in result["rows"].items():
            ax.plot([r["session"] for r in rs], [r[key] for r in rs], marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("session")
        ax.grid(alpha=0.3)
    fig.axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _overrides(p: argparse.ArgumentParser, pairs: list[str]) -> dict:
    """``--set FIELD=VALUE`` pairs as MemoryConfig keyword arguments (typed like the field)."""
    from dataclasses import fields

    types = {f.name: type(getattr(MemoryConfig(), f.name)) for f in fields(MemoryConfig)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types or not value:
            p.error(f"--set {pair!r}: give FIELD=VALUE with FIELD one of {', '.join(types)}")
        kind = types[key]
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--facts", type=int, default=50)
    p.add_argument("--sessions", type=int, default=5)
    p.add_argument("--model", default=None, help="a chat model folder (default: the speedrun)")
    p.add_argument("--tool-questions", type=int, default=10, help="per tool kind")
    p.add_argument("--tiny", action="store_true", help="random tiny model, hash encoder: seconds")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a MemoryConfig field for the memory (e.g. --set lora_r=16); repeatable")
    p.add_argument("--worker", metavar="FOLDER", help=argparse.SUPPRESS)  # one session's process
    p.add_argument("--session", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        from shared import set_threads

        set_threads(1)
        session_worker(Path(a.worker), a.session, not a.no_progress)
        return {}
    if a.facts < 1 or a.sessions < 1 or a.sessions > a.facts or a.tool_questions < 1:
        p.error("need --facts >= --sessions >= 1 and --tool-questions >= 1")
    progress = not a.no_progress
    if a.tiny:
        cfg = BenchConfig(min(a.facts, 6), min(a.sessions, 2), min(a.tool_questions, 2), 4,
                          max_tokens=8, tool_max_tokens=8, tiny=True)
        where, model = tiny_model()[2], None
        mcfg = MemoryConfig(encoder="hash", min_score=0.25, progress=False, shared_steps=2,
                            topic_steps=2, replay_prompts=3, replay_tokens=8, batch_size=4,
                            fisher_examples=4, ckpt_every=2)
    else:
        cfg = BenchConfig(a.facts, a.sessions, a.tool_questions)
        model, where = pick_model(a.model, progress)
        mcfg = MemoryConfig(progress=progress, **_overrides(p, a.set))
    out = runs_root() / "bench"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="week12-teach-") as tmp:
        result = run(cfg, model, mcfg, Path(tmp), progress)
    result.update(model=where, config=asdict(cfg), memory=asdict(mcfg))
    print(f"model: {where}; {cfg.facts} facts over {cfg.sessions} sessions, recall asked in "
          f"paraphrase; {cfg.tool_questions} tool questions per kind\n")
    print(table(result))
    out.mkdir(parents=True, exist_ok=True)
    path = write_json_atomic(out / "week12-teach.json", result)
    png = plot(result, out / "week12-teach.png")
    print(f"\nsaved {path} and {png}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
