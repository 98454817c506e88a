"""Tool latency: the sandboxed Python REPL per isolation mode, the calculator, search.

    python week04_modern_arch_tools/benchmarks/repl_latency.py

For each isolation mode this machine has (``none``: rlimits and the audit hook, the design
before the kernel layers; ``kernel``: + unprivileged uid, namespaces when root, Landlock,
seccomp; ``bwrap``: + bubblewrap's namespaces and file system), in one run: a fresh
worker's start-up (first call, median of ``--starts``) and the round trip of
``run("x + 1")`` (JSON over a pipe, exec, the reply; median of ``--calls``). The cost of
isolation is each mode minus ``none``, per call and per worker start. For scale: an
in-process ``exec`` of the same code (the floor), the calculator, a BM25 search.
"""

from __future__ import annotations

import argparse
import statistics
import time

from shared import save_benchmark
from week04_modern_arch_tools import Calculator, PythonREPL, Search, make_fact_store


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--starts", type=int, default=5)
    args = p.parse_args()

    from week04_modern_arch_tools.tools.isolation import support

    modes = ["none"] + (["kernel"] if support().kernel else []) + \
        (["bwrap"] if support().bwrap and support().kernel else [])
    per_mode = {}
    for mode in modes:
        starts = []
        for _ in range(args.starts):
            r = PythonREPL(isolation=mode)
            t0 = time.perf_counter()
            r.run("x = 1")
            starts.append(time.perf_counter() - t0)
            r.close()
        with PythonREPL(isolation=mode) as repl:
            repl.run("x = 1")
            assert repl.run("x + 1") == "2\n", mode
            trip = median_ms(lambda: repl.run("x + 1"), args.calls)
            printing = median_ms(lambda: repl.run("for i in range(100): print(i)"), args.calls)
        per_mode[mode] = (statistics.median(starts) * 1e3, trip, printing)
    ns = {"x": 1}
    in_process = median_ms(lambda: exec("x + 1", ns), args.calls)
    calc = Calculator()
    calculator = median_ms(lambda: calc.run("(37 * 48) / 3 + 2 ** 10"), args.calls)
    search = Search(make_fact_store(0), top_k=3)
    search.run("warm up")
    searching = median_ms(lambda: search.run("capital of Zorvania"), args.calls)

    rows = []
    for mode, (start, trip, printing) in per_mode.items():
        rows += [{"what": f"[{mode}] start-up (fresh worker, first call)", "ms": round(start, 2)},
                 {"what": f"[{mode}] round trip: run('x + 1')", "ms": round(trip, 3)},
                 {"what": f"[{mode}] print 100 lines", "ms": round(printing, 3)}]
    rows += [
        {"what": "in-process exec('x + 1') (no sandbox)", "ms": round(in_process, 4)},
        {"what": "Calculator.run('(37 * 48) / 3 + 2 ** 10')", "ms": round(calculator, 4)},
        {"what": "Search.run over 120 fact documents", "ms": round(searching, 3)},
    ]
    print(f"{'what':<50} {'median ms':>10}")
    for r in rows:
        print(f"{r['what']:<50} {r['ms']:>10}")
    best = modes[-1]
    start, trip, _ = per_mode[best]
    summary = {"mode": best, "repl_round_trip_ms": round(trip, 3),
               "repl_startup_ms": round(start, 2),
               "isolation_cost_per_call_ms": round(trip - per_mode["none"][1], 3),
               "isolation_cost_per_start_ms": round(start - per_mode["none"][0], 2),
               "sandbox_overhead_x": round(trip / in_process, 1)}
    print(f"\n[{best}] REPL round trip {summary['repl_round_trip_ms']} ms, start-up "
          f"{summary['repl_startup_ms']} ms; isolation costs "
          f"{summary['isolation_cost_per_call_ms']} ms per call and "
          f"{summary['isolation_cost_per_start_ms']} ms per worker start over 'none'")
    path = save_benchmark("week04_repl_latency", {"rows": rows, "summary": summary})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
