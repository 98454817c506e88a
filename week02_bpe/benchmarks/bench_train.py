"""Tokenizer training speed: ours vs rustbpe vs HF tokenizers vs a naive re-scan trainer.

All four learn a 4,096-token vocabulary (4,087 ordinary + 9 specials) on the
pydocs corpus, in one run on the same machine. The naive baseline is the
minbpe approach written here: every merge re-counts the pairs of every chunk
of the corpus and rewrites every chunk. It would take many minutes, so it runs
for a time budget and its full time is modelled from what it measured: a
merge costs time proportional to the tokens it scans, and the incremental
trainer tells us exactly how many tokens remain after every merge.

Also printed: where our time goes (the regex pre-split versus the merge
loop, and the top functions of a cProfile run of the merge loop).

    python week02_bpe/benchmarks/bench_train.py
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time

import regex

from shared import load_corpus, save_benchmark, smoke
from week02_bpe import GPT4_SPLIT_PATTERN, SPECIAL_TOKENS, BPETokenizer, count_chunks, learn_merges

VOCAB = smoke(4096, 512)
NAIVE_BUDGET_S = float(os.environ.get("NAIVE_BUDGET_S", smoke(45, 5)))


# ---------------------------------------------------------------------------
# The naive baseline (minbpe's RegexTokenizer.train, same tie-breaking rule)
# ---------------------------------------------------------------------------


def naive_train(texts, num_merges, pattern=GPT4_SPLIT_PATTERN, budget_s=None):
    """Re-scan training; stops after ``budget_s`` seconds of merging.

    Returns (merges, seconds of the regex split, seconds of the merges).
    """
    t0 = time.perf_counter()
    compiled = regex.compile(pattern)
    ids = [list(ch.encode("utf-8")) for text in texts for ch in compiled.findall(text)]
    t_split = time.perf_counter() - t0
    t0 = time.perf_counter()
    merges = []
    for k in range(num_merges):
        stats: dict[tuple[int, int], int] = {}
        for chunk in ids:
            for pair in zip(chunk, chunk[1:]):
                stats[pair] = stats.get(pair, 0) + 1
        if not stats:
            break
        best = max(stats.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))[0]
        new_id = 256 + k
        a, b = best
        for j, chunk in enumerate(ids):
            if len(chunk) < 2:
                continue
            out, i, n = [], 0, len(chunk)
            while i < n:
                if i + 1 < n and chunk[i] == a and chunk[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(chunk[i])
                    i += 1
            ids[j] = out
        merges.append(best)
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
    return merges, t_split, time.perf_counter() - t0


# ---------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------


def train_rustbpe(texts, vocab):
    import rustbpe
    t0 = time.perf_counter()
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(texts, vocab - len(SPECIAL_TOKENS), pattern=GPT4_SPLIT_PATTERN)
    return tok, time.perf_counter() - t0


def train_hf(texts, vocab):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    t0 = time.perf_counter()
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False, min_frequency=0,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=list(SPECIAL_TOKENS))
    tok.train_from_iterator(texts, trainer)
    return tok, time.perf_counter() - t0


# ---------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------


def main():
    texts = [d.text for d in load_corpus("pydocs").documents]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    num_merges = VOCAB - 256 - len(SPECIAL_TOKENS)
    print(f"pydocs: {len(texts)} documents, {mb:.2f} MB; vocab {VOCAB} = 256 + {num_merges} "
          f"merges + {len(SPECIAL_TOKENS)} specials; {os.cpu_count()} CPUs")

    # ours, with the two phases timed separately
    t0 = time.perf_counter()
    counts = count_chunks(texts)
    t_split = time.perf_counter() - t0
    history: list = []
    t1 = time.perf_counter()
    merges = learn_merges(counts, num_merges, history=history)
    t_merge = time.perf_counter() - t1
    ours_s = t_split + t_merge
    ours = BPETokenizer(merges)
    # the end-to-end classmethod too, for the record
    t2 = time.perf_counter()
    BPETokenizer.train(texts, VOCAB)
    ours_train_s = time.perf_counter() - t2

    rust, rust_s = train_rustbpe(texts, VOCAB)
    rust_equal = rust.get_mergeable_ranks() == ours.mergeable_ranks()
    hf, hf_s = train_hf(texts, VOCAB)
    hf_vocab = set(hf.get_vocab())
    byte_chars = _bytes_to_unicode()
    ours_strings = {"".join(byte_chars[b] for b in tok) for tok in ours.vocab}
    hf_overlap = len(ours_strings & hf_vocab) / len(ours_strings)

    # naive: measured for a budget, then modelled to the full run
    naive_merges, naive_split_s, naive_merge_s = naive_train(texts, num_merges,
                                                             budget_s=NAIVE_BUDGET_S)
    naive_s = naive_split_s + naive_merge_s
    k = len(naive_merges)
    naive_equal_prefix = naive_merges == merges[:k]
    total0 = sum(len(c.encode()) * n for c, n in counts.items())
    remaining = [total0]
    for _, _, removed in history:
        remaining.append(remaining[-1] - removed)
    # a merge scans the tokens present before it (twice: count, then rewrite)
    per_token = naive_merge_s / sum(remaining[:k])
    naive_full_s = naive_s if k == len(merges) else \
        naive_split_s + per_token * sum(remaining[:len(merges)])

    rows = [
        {"system": "ours (pure Python, incremental + heap)", "seconds": ours_s,
         "split_s": t_split, "merge_s": t_merge, "train_classmethod_s": ours_train_s},
        {"system": "rustbpe (Rust, 2 threads)", "seconds": rust_s, "same_merges": rust_equal},
        {"system": "HF tokenizers (Rust)", "seconds": hf_s, "vocab_overlap_with_ours": hf_overlap},
        {"system": f"naive re-scan (minbpe), {k} merges measured", "seconds": naive_s,
         "same_merges_as_ours": naive_equal_prefix},
        {"system": "naive re-scan, modelled full run", "seconds": naive_full_s,
         "modelled": k < len(merges)},
    ]
    print(f"\n{'system':<45} {'seconds':>9} {'vs ours':>9}")
    for r in rows:
        print(f"{r['system']:<45} {r['seconds']:>9.2f} {r['seconds'] / ours_s:>8.2f}x")
    print(f"\nours: regex split + chunk count {t_split:.2f}s, merge loop {t_merge:.2f}s "
          f"({len(counts)} unique chunks, {total0 / 1e6:.2f}M byte tokens)")
    print(f"ours == rustbpe merges: {rust_equal}; naive's first {k} merges == ours: "
          f"{naive_equal_prefix}; HF vocab overlap with ours: {hf_overlap:.1%}")

    speedup_naive = naive_full_s / ours_s
    vs_rust = ours_s / rust_s
    print(f"\nspeed-up over the naive re-scan: {speedup_naive:.0f}x (target >= 50x)")
    print(f"ours / rustbpe: {vs_rust:.1f}x slower (target <= 10x)")

    # where the merge loop spends its time
    prof = cProfile.Profile()
    prof.enable()
    learn_merges(counts, num_merges)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(6)
    print("\nprofile of the merge loop (tottime):")
    print("\n".join(line for line in buf.getvalue().splitlines()
                    if line.strip() and ("{" in line or "tokenizer.py" in line or "ncalls" in line)))

    summary = {"vocab_size": VOCAB, "corpus_mb": mb, "ours_s": ours_s, "rustbpe_s": rust_s,
               "hf_tokenizers_s": hf_s, "naive_full_s": naive_full_s,
               "naive_measured_merges": k, "speedup_vs_naive": speedup_naive,
               "ours_over_rustbpe": vs_rust, "same_merges_as_rustbpe": rust_equal,
               "split_fraction": t_split / ours_s}
    target = speedup_naive >= 50 and vs_rust <= 10 and rust_equal
    path = save_benchmark("week02_train", {"rows": rows, "summary": summary, "target_met": target})
    print(f"\ntarget met: {target}; saved {path}")


def _bytes_to_unicode():
    """GPT-2's byte -> printable character map (HF ByteLevel stores tokens this way)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


if __name__ == "__main__":
    main()
