"""week02_bpe: a fast byte-level BPE tokenizer and the token data pipeline.

Tokenizer (``week02_bpe.tokenizer``): ``BPETokenizer.train`` learns exactly the
merges of rustbpe (same tie-breaking rule) with incremental pair counts;
``encode``/``decode``/``save``/``load``/``to_tiktoken``; the chat and tool
``SPECIAL_TOKENS`` are reserved from the start.

Data (``week02_bpe.data``): ``prepare`` tokenizes a source (``"pydocs"``, local
files, strings, Hugging Face corpora) into sharded token files; ``TokenLoader``
serves resumable (B, T) batches from them; ``token_bytes`` and
``bits_per_byte`` give a tokenizer-independent loss.

>>> from week02_bpe import BPETokenizer
>>> tok = BPETokenizer.train("hello hello hello", vocab_size=256 + 9 + 3)
>>> tok.decode(tok.encode("hello there"))
'hello there'
"""

from week02_bpe.data import (
    HFSource,
    TokenLoader,
    bits_per_byte,
    iter_documents,
    parse_source,
    prepare,
    read_index,
    token_bytes,
)
from week02_bpe.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    SPECIAL_TOKENS,
    BPETokenizer,
    StreamDecoder,
    TokenizerFileError,
    count_chunks,
    learn_merges,
)

__all__ = [
    "BPETokenizer", "SPECIAL_TOKENS", "GPT4_SPLIT_PATTERN", "GPT2_SPLIT_PATTERN", "StreamDecoder",
    "TokenizerFileError", "count_chunks", "learn_merges",
    "prepare", "TokenLoader", "token_bytes", "bits_per_byte", "HFSource", "iter_documents",
    "parse_source", "read_index",
]
