"""Tool latency: the sandboxed Python REPL's start-up and round trip, the calculator, search.

    python week04_modern_arch_tools/benchmarks/repl_latency.py

Round trip = ``PythonREPL.run("x + 1")`` from the parent: JSON over a pipe to
the worker, exec under the audit hook, the reply back (median of
``--calls``). For scale it also times a fresh worker's start-up, an
in-process ``exec`` of the same code (no sandbox: the floor), the
calculator, and a BM25 search over the synthetic fact store.
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

    starts = []
    for _ in range(args.starts):
        r = PythonREPL()
        t0 = time.perf_counter()
        r.run("x = 1")
        starts.append(time.perf_counter() - t0)
        r.close()
    with PythonREPL() as repl:
        repl.run("x = 1")
        assert repl.run("x + 1") == "2\n"
        round_trip = median_ms(lambda: repl.run("x + 1"), args.calls)
        printing = median_ms(lambda: repl.run("for i in range(100): print(i)"), args.calls)
    ns = {"x": 1}
    in_process = median_ms(lambda: exec("x + 1", ns), args.calls)
    calc = Calculator()
    calculator = median_ms(lambda: calc.run("(37 * 48) / 3 + 2 ** 10"), args.calls)
    search = Search(make_fact_store(0), top_k=3)
    search.run("warm up")
    searching = median_ms(lambda: search.run("capital of Zorvania"), args.calls)

    rows = [
        {"what": "PythonREPL start-up (fresh worker, first call)",
         "ms": round(statistics.median(starts) * 1e3, 2)},
        {"what": "PythonREPL round trip: run('x + 1')", "ms": round(round_trip, 3)},
        {"what": "PythonREPL: print 100 lines", "ms": round(printing, 3)},
        {"what": "in-process exec('x + 1') (no sandbox)", "ms": round(in_process, 4)},
        {"what": "Calculator.run('(37 * 48) / 3 + 2 ** 10')", "ms": round(calculator, 4)},
        {"what": "Search.run over 120 fact documents", "ms": round(searching, 3)},
    ]
    print(f"{'what':<50} {'median ms':>10}")
    for r in rows:
        print(f"{r['what']:<50} {r['ms']:>10}")
    summary = {"repl_round_trip_ms": rows[1]["ms"], "repl_startup_ms": rows[0]["ms"],
               "sandbox_overhead_x": round(round_trip / in_process, 1)}
    print(f"\nREPL round trip {summary['repl_round_trip_ms']} ms; "
          f"start-up {summary['repl_startup_ms']} ms")
    path = save_benchmark("week04_repl_latency", {"rows": rows, "summary": summary})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
