"""Command line for the data pipeline: ``python -m week02_bpe.prepare SOURCE --out DIR ...``.

Tokenizes SOURCE (``pydocs``, ``tinystories``, ``fineweb-edu``,
``hf:<dataset>[:<config>]``, a .parquet/.jsonl file, or a text file/folder)
into sharded token files with a progress bar. The tokenizer is either loaded
(``--tokenizer PATH``) or trained on the source first (``--vocab-size N``, on
at most ``--train-docs`` documents) and saved next to the shards.

    python -m week02_bpe.prepare pydocs --vocab-size 4096 --out data/pydocs

The ``prepare`` function itself lives in ``week02_bpe.data``; this module
only parses arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import types

from week02_bpe.data import HFSource, iter_documents, parse_source, prepare, read_index
from week02_bpe.tokenizer import BPETokenizer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m week02_bpe.prepare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="pydocs | tinystories | fineweb-edu | hf:NAME[:CONFIG] | path")
    ap.add_argument("--out", required=True, help="output folder (index.json + shards)")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--tokenizer", help="a tokenizer saved with BPETokenizer.save")
    group.add_argument("--vocab-size", type=int, help="train a tokenizer of this size first")
    ap.add_argument("--train-docs", type=int, default=100_000,
                    help="documents used to train the tokenizer (default 100000)")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many documents")
    ap.add_argument("--split", default="train", help="dataset split for Hugging Face sources")
    ap.add_argument("--text-field", default="text", help="text column for Hugging Face sources")
    ap.add_argument("--shard-tokens", type=int, default=2**24)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--tiktoken", action="store_true",
                    help="encode with tiktoken (same ids, faster; needs tiktoken)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    source = parse_source(args.source)
    if isinstance(source, HFSource):
        source = dataclasses.replace(source, split=args.split, text_field=args.text_field,
                                     limit=args.limit)
    elif args.limit is not None:
        source = [text for _, text in itertools.islice(iter_documents(source), args.limit)]

    if args.tokenizer:
        tok = BPETokenizer.load(args.tokenizer)
    else:
        docs = (text for _, text in itertools.islice(iter_documents(source), args.train_docs))
        tok = BPETokenizer.train(docs, args.vocab_size, progress=not args.no_progress)
    index_path = prepare(source, tok, args.out, shard_tokens=args.shard_tokens,
                         num_workers=args.workers, val_fraction=args.val_fraction,
                         progress=not args.no_progress,
                         encoder="tiktoken" if args.tiktoken else "python")
    index = read_index(index_path.parent)
    for split, info in index["splits"].items():
        print(f"{split}: {info['documents']} documents, {info['tokens']} tokens, "
              f"{len(info['shards'])} shards")
    print(f"wrote {index_path}")
    return 0


# `import week02_bpe.prepare` makes the package attribute `prepare` this module;
# keep `week02_bpe.prepare(...)` callable either way.
class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return prepare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
