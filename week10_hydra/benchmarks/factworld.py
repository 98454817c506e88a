"""The fact-world table: questions about facts the base never saw, five ways, one Hydra.

    python week10_hydra/benchmarks/factworld.py                  # the tiny preset (CPU)
    python week10_hydra/benchmarks/factworld.py --smoke          # seconds: the plumbing
    python week10_hydra/benchmarks/factworld.py --preset gpu

Builds ``week10_hydra.factworld`` (the reader base is trained once and cached
under ``runs/week10-factworld/``; the fact adapter trains each run), serves the
new world's questions through ``Hydra.serve`` in batches under each condition
(base, +RAG, +search, +fact adapter, everything) and prints the exact-match
table (EM: the gold value is a whole word of the reply's final text; see the
module). ``--train-eval N`` adds N train-world questions per condition (what
the reader was taught: a reader that cannot read shows up there too). Writes
``runs/bench/week10_factworld.json`` (``shared.save_benchmark``; not in a smoke run, which
measures nothing).

Left out: timing the conditions against each other (the table is about
answers; week10's serving benchmark measures speed).
"""

from __future__ import annotations

import argparse
import time

from shared import add_threads_argument, is_smoke, save_benchmark, set_threads
from week10_hydra.factworld import CONDITIONS, PRESETS, markdown_table, preset, run


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", choices=list(PRESETS))
    p.add_argument("--smoke", action="store_true", help="the smoke preset (overrides --preset)")
    p.add_argument("--train-eval", type=int, default=40,
                   help="train-world questions per condition too (0: none)")
    p.add_argument("--no-cache", action="store_true", help="retrain the reader base")
    p.add_argument("--no-progress", action="store_true")
    add_threads_argument(p, default=2)
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    smoke = args.smoke or is_smoke()
    cfg = preset("smoke" if smoke else args.preset, progress=not args.no_progress)
    t0 = time.time()
    result = run(cfg, cache=not args.no_cache, n_train_eval=args.train_eval)
    minutes = (time.time() - t0) / 60
    print(f"\nfact world, preset {cfg.preset}: {cfg.n_new} new countries x "
          f"{len(cfg.attributes)} attributes, reader {cfg.n_layer}x{cfg.n_embd} "
          f"({result['reader']}), {threads} threads, {minutes:.1f} min\n")
    print(markdown_table(result))
    rows = [{"condition": k, **{f: v for f, v in r.items() if f != "examples"}}
            for k, r in result["rows"].items()]
    if not smoke:  # a smoke run measures nothing: it must not replace the real figures
        path = save_benchmark("week10_factworld", {
            "preset": cfg.preset, "config": result["config"], "reader": result["reader"],
            "rows": rows, "examples": {k: r["examples"] for k, r in result["rows"].items()},
            "minutes": minutes, "threads": threads, "conditions": list(CONDITIONS)})
        print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
