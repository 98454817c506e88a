"""Encoding throughput (MB/s): our pure-Python encoder vs the same ranks in tiktoken and rustbpe.

One 4,096-token tokenizer is trained on pydocs; the whole corpus (joined by
blank lines) is then encoded by: our encoder with a cold chunk cache, our
encoder again with the cache warm, ``to_tiktoken()`` (tiktoken's Rust core,
one thread) and rustbpe's ``encode``. All must give the same ids.

    python week02_bpe/benchmarks/bench_encode.py
"""

from __future__ import annotations

import time

import rustbpe

from shared import load_corpus, save_benchmark, smoke
from week02_bpe import SPECIAL_TOKENS, BPETokenizer

VOCAB = smoke(4096, 512)


def timed(fn, text):
    t0 = time.perf_counter()
    ids = fn(text)
    return ids, time.perf_counter() - t0


def main():
    docs = [d.text for d in load_corpus("pydocs").documents]
    tok = BPETokenizer.train(docs, VOCAB)
    text = "\n\n".join(docs)
    mb = len(text.encode()) / 1e6
    print(f"encoding {mb:.2f} MB of pydocs with a {tok.vocab_size}-token vocabulary")

    fresh = BPETokenizer(list(tok.merges), tok.pattern, SPECIAL_TOKENS)  # empty chunk cache
    ids_cold, cold_s = timed(fresh.encode_ordinary, text)
    ids_warm, warm_s = timed(fresh.encode_ordinary, text)
    enc = tok.to_tiktoken()
    ids_tt, tt_s = timed(enc.encode_ordinary, text)
    ref = rustbpe.Tokenizer()
    ref.train_from_iterator(docs, VOCAB - len(SPECIAL_TOKENS))
    ids_rb, rb_s = timed(ref.encode, text)
    same = ids_cold == ids_warm == ids_tt == ids_rb

    rows = [
        {"system": "ours, pure Python (cold cache)", "seconds": cold_s, "mb_per_s": mb / cold_s},
        {"system": "ours, pure Python (warm cache)", "seconds": warm_s, "mb_per_s": mb / warm_s},
        {"system": "to_tiktoken() (Rust)", "seconds": tt_s, "mb_per_s": mb / tt_s},
        {"system": "rustbpe.encode (Rust)", "seconds": rb_s, "mb_per_s": mb / rb_s},
    ]
    print(f"\n{'system':<34} {'seconds':>8} {'MB/s':>8}")
    for r in rows:
        print(f"{r['system']:<34} {r['seconds']:>8.3f} {r['mb_per_s']:>8.2f}")
    ratio = cold_s / tt_s
    print(f"\n{len(ids_tt)} tokens ({len(text.encode()) / len(ids_tt):.2f} bytes/token); "
          f"identical ids across all four: {same}")
    print(f"tiktoken is {ratio:.1f}x faster than our cold encoder, "
          f"{warm_s / tt_s:.1f}x faster than our warm one")
    path = save_benchmark("week02_encode", {
        "rows": rows,
        "summary": {"mb": mb, "tiktoken_over_ours_cold": ratio, "identical_ids": same,
                    "bytes_per_token": len(text.encode()) / len(ids_tt)},
        "target_met": same})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
