"""Shared fixtures: small corpora and tokenizers, and a hermetic Hugging Face setup."""

import atexit
import os
import shutil
import tempfile

import pytest

# Hugging Face libraries read these at import time: never touch the network or ~/.cache.
_HF_HOME = tempfile.mkdtemp(prefix="week02-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
for key, value in {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": _HF_HOME,
                   "HF_DATASETS_CACHE": os.path.join(_HF_HOME, "datasets"),
                   "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ[key] = value


@pytest.fixture(scope="session")
def pydocs_texts():
    from shared import load_corpus
    return [d.text for d in load_corpus("pydocs").documents]


@pytest.fixture(scope="session")
def train_texts(pydocs_texts):
    """About 0.4 MB of pydocs: enough for 1,000 merges in about a second."""
    return pydocs_texts[:1200]


@pytest.fixture(scope="session")
def tok1k(train_texts):
    from week02_bpe import BPETokenizer
    return BPETokenizer.train(train_texts, vocab_size=1024)


@pytest.fixture(scope="session")
def tiny_tok():
    from week02_bpe import BPETokenizer
    text = "the cat sat on the mat. the dog sat on the log. " * 20
    return BPETokenizer.train(text, vocab_size=300)


@pytest.fixture
def samples():
    """A broad set of texts: prose, code, unicode, emoji, whitespace, specials-like text."""
    return [
        "",
        " ",
        "hello world",
        "Hello, World! It's a test; isn't it? We'll see, they've gone, I'd say.",
        "héllo wörld — ça va? ½ × 3 ≥ 1",
        "日本語のテキストと中文文本，한국어 텍스트",
        "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم שלום עולם",
        "emoji: 🙂🚀👩‍👩‍👧‍👦🏳️‍🌈 and flags 🇩🇪🇯🇵",
        "def f(x):\n    return x ** 2  # square\n\n\tif x:\n\t\tpass\r\n",
        "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
        "numbers 1234567890 3.14159 1e-9 0x1F 100,000,000",
        "a" * 1000,
        "ab" * 500 + " " * 300 + "\n" * 50,
        "    leading and trailing spaces    \n\n\n",
        "<|bos|>not special<|user_start|>hi<|user_end|><|assistant_start|>",
        "<|endoftext|> <|bos <|bos|x",
        "mixed\x00control\x1bchars\u200bzero\u00a0width",
        "\ufffd replacement char and surrogates-free text",
    ]
