"""The server under load: N concurrent streaming clients, batched server against one at a time.

    python week12_nanochat/benchmarks/load.py                         # 8 clients, 32 requests
    python week12_nanochat/benchmarks/load.py --clients 8 --requests 32 --max-tokens 64
    python week12_nanochat/benchmarks/load.py --model runs/speedrun/rl

Starts the server (``serve.create_app`` under uvicorn on 127.0.0.1, in this process) twice
on the same model: with ``--batch-size`` (default 8) and with ``--batch-size 1`` (one request
at a time). Each time, a child process (the load generator, apart from the server's GIL)
runs ``--clients`` threads that send ``--requests`` streamed chat completions
between them (httpx, SSE; greedy by default, or ``--temperature`` with request i seeded i: the
same settings but the seed, so the requests can share batches) and
the run is bounded by ``--time-limit`` seconds. Measured per server: completion tokens/s and
requests/s over the whole run, time to first token (request sent -> first streamed word or
tool call) and inter-token latency (the gap between streamed chunks) at p50/p95/p99, and the
errors (must be 0), the batches run, the rows that joined a batch already decoding
(the Batcher's continuous batching) and the rows per batch (the rows decoding in the batch a
request entered, itself included; at most ``--batch-size``). Each server runs ``--repeats`` times (default 3), alternated with the
other, and the run of median throughput is reported (the machine is shared). Prints a table and the throughput ratio (target: >= 3x at 8 clients) and
writes the figures to ``<runs>/bench/week12-load.json`` (atomically, ``shared.save_benchmark``).

The model: ``--model``, else the latest speedrun if there is one, else a random model of
week04's ``--preset`` (default ``tiny``) over a small chat tokenizer; the output says which.
A random model writes random words to the token limit, which is the load we want here.

Left out: clients on another machine (the load generator shares this CPU with the server),
open-loop arrival rates (each client sends its next request when the last one ends) and
mixed sampling settings (different temperatures cannot share a batch; different seeds can).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import httpx

PROMPTS = ["What is 12 + 30?", "Tell me about the capital of Zorvania.", "Compute 7 * 6.",
           "Reverse the word apple.", "hi", "What is 144 / 12?", "Write a short poem.",
           "How many legs does a spider have?"]

# ---------------------------------------------------------------- the model


def load_engine(model: str | None, preset: str, seed: int = 0, random: bool = False):
    """``(ChatEngine, description)``: ``model``, the latest speedrun, or (none, or ``random``)
    a random model of week04's ``preset``."""
    from week12_nanochat.engine import ChatEngine, NoModel, default_tools, load_chat

    try:
        if random:
            raise NoModel("a random model was asked for")
        m, tok, path = load_chat(model)
        return ChatEngine(m, tok, tools=default_tools(repl=False)), f"{path} (trained)"
    except NoModel:
        if model is not None:
            raise
    import torch

    from week04_modern_arch_tools import LLAMA_PRESETS, Llama, fit_tokenizer, make_tool_dataset

    convs = [c for kind in ("arithmetic", "string", "facts") for c in make_tool_dataset(kind, 80)]
    tok = fit_tokenizer(convs, vocab_size=400)
    cfg = LLAMA_PRESETS[preset]
    torch.manual_seed(seed)
    m = Llama(type(cfg)(**{**cfg.__dict__, "vocab_size": tok.vocab_size})).eval()
    n = sum(p.numel() for p in m.parameters())
    return ChatEngine(m, tok, tools={}), (f"a random week04 '{preset}' model ({n:,} params, no "
                                          "speedrun found)")


# ---------------------------------------------------------------- the clients


def _one(http: httpx.Client, url: str, prompt: str, max_tokens: int,
         temperature: float = 0.0, seed: int | None = None) -> dict:
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": temperature,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    if seed is not None:
        body["seed"] = seed
    sent = time.perf_counter()
    stamps, tokens, ended = [], 0, False
    with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                ended = True
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for ch in chunk["choices"]:
                d = ch["delta"]
                if d.get("content") or d.get("nanochat_tool_call"):
                    stamps.append(time.perf_counter())
    if not ended:
        raise RuntimeError("the stream ended without data: [DONE]")
    return {"sent": sent, "stamps": stamps, "end": time.perf_counter(), "tokens": tokens}


def drive(url: str, clients: int, requests: int, max_tokens: int, time_limit: float,
          temperature: float = 0.0) -> dict:
    """``clients`` threads send ``requests`` requests between them (sampled at
    ``temperature`` > 0, request i with seed i); the raw records."""
    lock, counter = threading.Lock(), iter(range(requests))
    records, errors = [], []
    ready = threading.Barrier(clients + 1)  # every client connected, then all start at once
    deadline = time.perf_counter() + time_limit

    def client():
        with httpx.Client(timeout=max(30.0, time_limit)) as http:
            http.get(url + "/v1/models").raise_for_status()  # the connection, made up front
            ready.wait()
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    rec = _one(http, url, PROMPTS[i % len(PROMPTS)], max_tokens,
                               temperature, i if temperature > 0 else None)
                    with lock:
                        records.append(rec)
                except Exception as exc:  # counted, reported, never hidden
                    with lock:
                        errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait(timeout=60)
    start = time.perf_counter()
    for t in threads:
        t.join()
    return {"records": records, "errors": errors, "wall": time.perf_counter() - start}


def drive_apart(url: str, clients: int, requests: int, max_tokens: int,
                time_limit: float, temperature: float = 0.0) -> dict:
    """``drive`` in a child process (the clients do not share this process's GIL with the
    server's decoding and its event loop)."""
    cmd = [sys.executable, __file__, "--drive", url, "--clients", str(clients), "--requests",
           str(requests), "--max-tokens", str(max_tokens), "--time-limit", str(time_limit),
           "--temperature", str(temperature)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=time_limit + 120)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def figures(run: dict) -> dict:
    recs = run["records"]
    ttft = [r["stamps"][0] - r["sent"] for r in recs if r["stamps"]]
    gaps = [b - a for r in recs for a, b in zip(r["stamps"], r["stamps"][1:])]
    tokens = sum(r["tokens"] for r in recs)
    out = {"requests": len(recs), "errors": len(run["errors"]), "completion_tokens": tokens,
           "wall_s": run["wall"], "tokens_per_s": tokens / run["wall"],
           "requests_per_s": len(recs) / run["wall"], "error_samples": run["errors"][:3]}
    for name, xs in (("ttft_ms", ttft), ("itl_ms", gaps)):
        for q in (50, 95, 99):
            v = _pct(xs, q)
            out[f"{name}_p{q}"] = None if v is None else 1000 * v
    return out


# ---------------------------------------------------------------- the benchmark


def measure(engine, batch_size: int, args) -> dict:
    from week12_nanochat.serve import ServeConfig, create_app, running

    config = ServeConfig(batch_size=batch_size, gather_ms=args.gather_ms,
                         stream_interval_ms=args.stream_interval_ms,
                         max_tokens=max(args.max_tokens, 16), max_queue=4 * args.clients)
    app = create_app(engine, config, model_id="bench")
    with running(app) as url:
        with httpx.Client(timeout=60) as http:  # warm up: the first request pays for setup
            _one(http, url, PROMPTS[0], 4)
        b = app.state.batcher
        before = (b.batches, b.joined, b.tickets, b.beside)
        run = drive_apart(url, args.clients, args.requests, args.max_tokens, args.time_limit,
                          args.temperature)
        batches, joined, tickets, beside = (now - then for now, then in zip(
            (b.batches, b.joined, b.tickets, b.beside), before))
    # rows per batch: the rows decoding in the batch a request entered (joined ones included)
    return {"batch_size": batch_size, **figures(run), "batches": batches, "joined": joined,
            "rows_per_batch": beside / tickets if tickets else 0.0}


def step_ceiling(engine, batch_size: int, prompt: int = 48, steps: int = 64,
                 repeats: int = 5) -> dict:
    """The model's one-token step alone at batch 1 and at ``batch_size`` (a cache of the
    block, the clock from ``prompt`` on; the median of ``repeats`` timings of ``steps``
    steps): ``batch_size x t1 / tB`` is the most any batching server can gain over one at a
    time with this model on this machine, before every cost outside the model."""
    import statistics

    import torch

    m = engine.model
    prompt = min(prompt, m.config.block_size // 2)
    out = {}
    for B in (1, batch_size):
        times = []
        for r in range(repeats):
            cache = m.new_cache(B, m.config.block_size)
            x = torch.randint(0, m.config.vocab_size, (B, prompt),
                              generator=torch.Generator().manual_seed(r))
            with torch.no_grad():
                m.run(x, cache, last_only=True)
                col = x[:, -1:]
                t = time.perf_counter()
                for _ in range(min(steps, m.config.block_size - prompt)):
                    m.step(col, cache)
                times.append((time.perf_counter() - t) / min(steps, m.config.block_size - prompt))
        out[B] = statistics.median(times)
    return {"step_ms_1": 1000 * out[1], f"step_ms_{batch_size}": 1000 * out[batch_size],
            "ceiling": batch_size * out[1] / out[batch_size]}


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (its own latencies with it), all errors counted."""
    mid = sorted(runs, key=lambda r: r["tokens_per_s"])[(len(runs) - 1) // 2]
    return {**mid, "errors": sum(r["errors"] for r in runs), "repeats": len(runs)}


def table(rows: list[dict]) -> str:
    cols = [("batch", "batch_size", "{}"), ("reqs", "requests", "{}"), ("err", "errors", "{}"),
            ("tok/s", "tokens_per_s", "{:.1f}"), ("req/s", "requests_per_s", "{:.2f}"),
            ("rows/batch", "rows_per_batch", "{:.2f}"), ("joined", "joined", "{}"),
            *[(f"ttft p{q} ms", f"ttft_ms_p{q}", "{:.0f}") for q in (50, 95, 99)],
            *[(f"itl p{q} ms", f"itl_ms_p{q}", "{:.1f}") for q in (50, 95, 99)]]
    lines = ["| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("-" if r[k] is None else f.format(r[k])
                                       for _, k, f in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--gather-ms", type=float, default=5.0)
    p.add_argument("--stream-interval-ms", type=float, default=10.0,
                   help="the servers' stream interval (both the same; 0: a write per token)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="> 0: sampled replies, request i with seed i (seeds share batches)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per server run")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per server, alternated; the median run is reported")
    p.add_argument("--model", help="a stage folder (default: the latest speedrun, else random)")
    p.add_argument("--preset", default="tiny", choices=["test", "tiny", "small", "d8"],
                   help="the random model's size (when there is no speedrun, or --random)")
    p.add_argument("--random", action="store_true",
                   help="a random model of --preset even when a speedrun exists")
    p.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)  # the child's job
    a = p.parse_known_args(argv)[0] if "--drive" in (argv or sys.argv) else None
    if a is not None and a.drive:
        print(json.dumps(drive(a.drive, a.clients, a.requests, a.max_tokens, a.time_limit,
                               a.temperature)))
        return {}
    from shared import add_threads_argument, save_benchmark, set_threads

    add_threads_argument(p, default=1)
    a = p.parse_args(argv)
    for name in ("clients", "requests", "max_tokens", "batch_size", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.time_limit <= 0 or a.gather_ms < 0:
        p.error("--time-limit must be > 0 and --gather-ms >= 0")
    threads = set_threads(a.threads)
    if a.random and a.model:
        p.error("--random and --model exclude each other")
    engine, which = load_engine(a.model, a.preset, random=a.random)
    print(f"model: {which}; {a.clients} clients, {a.requests} requests of {a.max_tokens} "
          f"tokens, {threads} torch thread(s)", flush=True)
    runs = {a.batch_size: [], 1: []}
    for i in range(a.repeats):  # alternated, so a busy moment on the machine hits both
        for bs in ((a.batch_size, 1) if i % 2 == 0 else (1, a.batch_size)):
            runs[bs].append(measure(engine, bs, a))
    rows = [median_run(runs[a.batch_size]), median_run(runs[1])]
    ceiling = step_ceiling(engine, a.batch_size)
    ratio = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"] if rows[1]["tokens_per_s"] \
        else None
    errors = sum(r["errors"] for r in rows)
    print(table(rows))
    print(f"\nthroughput, batch {a.batch_size} / one at a time: "
          f"{'-' if ratio is None else f'{ratio:.2f}x'} (target >= 3x at 8 clients); "
          f"errors: {errors}")
    print(f"the model's step alone: {ceiling['step_ms_1']:.2f} ms at batch 1, "
          f"{ceiling[f'step_ms_{a.batch_size}']:.2f} ms at batch {a.batch_size}: no server "
          f"can gain more than {ceiling['ceiling']:.2f}x here (batch x t1 / t{a.batch_size})")
    result = {"model": which, "config": {k: v for k, v in vars(a).items()}, "threads": threads,
              "rows": rows, "runs": runs[a.batch_size] + runs[1], "step": ceiling,
              "summary": {"throughput_ratio": ratio, "errors": errors,
                          "ceiling": ceiling["ceiling"]},
              "target_met": bool(ratio is not None and ratio >= 3 and errors == 0)}
    path = save_benchmark("week12-load", result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result and result["summary"]["errors"] else 0)
